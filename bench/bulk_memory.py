"""Bulk point-in-time recovery on a real moto server: peak memory for 1,000 vs 10,000 versions.

    .venv/bin/python bench/bulk_memory.py [--keys 2500]

Two prefixes in one versioned bucket: `small/` with keys/10 keys and `big/` with `--keys` keys, four
versions each (the fourth written after T). `bulk_recover` restores both prefixes in place as of T
(every key goes back to its third version: one server-side copy per key) under tracemalloc, and the
peak of each run is printed with the ratio, together with the most copies seen in flight at once.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "plugins"), str(REPO)]

from dataprotection import pointintime as pit  # noqa: E402
from dataprotection.s3client import make_client  # noqa: E402
from devstack import services  # noqa: E402

BUCKET = "bench-versions"


def _put_versions(s3, keys: list[str], version: int) -> None:
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=BUCKET, Key=k, Body=f"{k} v{version}".encode()), keys))


def _run(s3, prefix: str, as_of: datetime) -> tuple[int, pit.BulkResult, int]:
    in_flight = {"now": 0, "max": 0}
    lock = threading.Lock()

    def before(**_):
        with lock:
            in_flight["now"] += 1
            in_flight["max"] = max(in_flight["max"], in_flight["now"])

    def after(**_):
        with lock:
            in_flight["now"] -= 1

    s3.meta.events.register("before-call.s3.CopyObject", before)
    s3.meta.events.register("after-call.s3.CopyObject", after)
    tracemalloc.start()
    try:
        result = pit.bulk_recover(s3, pit.BulkRequest(BUCKET, prefix, as_of, dry_run=False, concurrency=16))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        s3.meta.events.unregister("before-call.s3.CopyObject", before)
        s3.meta.events.unregister("after-call.s3.CopyObject", after)
    return peak, result, in_flight["max"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=2500)
    args = parser.parse_args()
    proc, url = services.start_moto()
    try:
        s3 = make_client("eu-central-1", endpoint_url=url)
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        small = [f"small/{i:06d}" for i in range(args.keys // 10)]
        big = [f"big/{i:06d}" for i in range(args.keys)]
        started = time.monotonic()
        for version in (1, 2, 3):
            _put_versions(s3, small + big, version)
        time.sleep(1.2)
        as_of = datetime.now(UTC).replace(microsecond=0)
        time.sleep(1.2)
        _put_versions(s3, small + big, 4)
        print(f"wrote {4 * len(small)} + {4 * len(big)} versions in {time.monotonic() - started:.0f} s")
        for prefix in ("small/", "big/"):
            t0 = time.monotonic()
            peak, result, most = _run(s3, prefix, as_of)
            listed = result.versions_listed + result.delete_markers_listed
            print(f"{prefix:7} {listed:6d} versions listed, {result.counts.get('restore', 0):5d} restored "
                  f"in {time.monotonic() - t0:5.1f} s; tracemalloc peak {peak / 1024:7.0f} KiB; "
                  f"copies in flight at most {most}")
            if prefix == "small/":
                small_peak = peak
        print(f"peak ratio 10k/1k: {peak / small_peak:.2f}x")
    finally:
        proc.terminate()


if __name__ == "__main__":
    main()
