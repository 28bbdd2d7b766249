"""Point-in-time resolution and recovery (dataprotection.pointintime) against the moto server.

Regressions of the runbook's recovery bugs (DESIGN §8): `--prefix "$KEY"` matching `a.txt.bak` for
`a.txt`; bulk as-of writing every older version in turn so the OLDEST won; delete markers ignored;
nested folders failing. S3 (and moto) timestamps have one-second resolution, so timelines are built in
ticks at least 1.1 s apart and T is taken from the LastModified values S3 actually returned.
"""

from __future__ import annotations

import gc
import hashlib
import threading
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from dataprotection import pointintime as pit
from dataprotection.config import load_plan

BUCKET = "pit-bucket"
OTHER = "pit-other-bucket"
REGION = "eu-central-1"
TICK_GAP = 1.1


def make_bucket(s3, name: str, versioned: bool = True) -> None:
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
    if versioned:
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})


def sha(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


class Timeline:
    """Applies S3 events in ticks at least 1.1 s apart (one event per key per tick) and keeps the model
    state after each tick. `as_of(i)` is the newest LastModified S3 returned for tick i's events, checked
    to be older than every event of the next tick: the state at that time is exactly `state(i)`."""

    def __init__(self, s3, bucket: str) -> None:
        self.s3, self.bucket = s3, bucket
        self.model: dict[str, bytes] = {}
        self.states: list[dict[str, bytes]] = []
        self.version_ids: list[list[str]] = []
        self._last_end = 0.0

    def tick(self, puts: dict[str, bytes] | None = None, deletes: list[str] | tuple = ()) -> int:
        puts = puts or {}
        assert not set(puts) & set(deletes), "one event per key per tick"
        wait = self._last_end + TICK_GAP - time.time()
        if self.states and wait > 0:
            time.sleep(wait)

        def put(item):
            return self.s3.put_object(Bucket=self.bucket, Key=item[0], Body=item[1])["VersionId"]

        def delete(key):
            return self.s3.delete_object(Bucket=self.bucket, Key=key)["VersionId"]

        with ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(put, puts.items())) + list(pool.map(delete, deletes))
        self._last_end = time.time()
        self.model.update(puts)
        for key in deletes:
            self.model.pop(key, None)
        self.states.append(dict(self.model))
        self.version_ids.append(ids)
        return len(self.states) - 1

    def state(self, i: int, prefix: str = "") -> dict[str, bytes]:
        return {k: v for k, v in self.states[i].items() if k.startswith(prefix)}

    def as_of(self, i: int) -> datetime:
        times = {}
        for page in self.s3.get_paginator("list_object_versions").paginate(Bucket=self.bucket):
            for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
                times[v["VersionId"]] = v["LastModified"]
        t = max(times[v] for v in self.version_ids[i])
        if i + 1 < len(self.version_ids):
            assert min(times[v] for v in self.version_ids[i + 1]) > t, "ticks must not share a second"
        return t.astimezone(UTC)


def live(s3, bucket: str, prefix: str = "") -> dict[str, bytes]:
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            out[o["Key"]] = s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
    return out


def version_count(s3, bucket: str, prefix: str = "") -> int:
    n = 0
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        n += len(page.get("Versions", [])) + len(page.get("DeleteMarkers", []))
    return n


# --------------------------------------------------------------------------- pure resolution
T0 = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)


def _v(key, vid, sec, latest=False, body=b"x"):
    return {"Key": key, "VersionId": vid, "LastModified": T0 + timedelta(seconds=sec), "IsLatest": latest,
            "Size": len(body), "ETag": f'"{hashlib.md5(body).hexdigest()}"', "StorageClass": "STANDARD"}


def _dm(key, vid, sec, latest=False):
    return {"Key": key, "VersionId": vid, "LastModified": T0 + timedelta(seconds=sec), "IsLatest": latest}


def test_resolution_merges_the_separate_arrays_and_pages():
    # "k" spans two pages; page 1 holds its newest entries: a delete marker (latest) and v3
    pages = [
        {"Versions": [_v("a", "a2", 30, True), _v("a", "a1", 10), _v("k", "k3", 40)],
         "DeleteMarkers": [_dm("b", "b-dm", 25, True), _dm("k", "k-dm", 50, True)]},
        {"Versions": [_v("k", "k2", 20), _v("k", "k1", 5)], "DeleteMarkers": [_dm("k", "k-dm0", 15)]},
        {"Versions": [_v("z", "z1", 1, True)]},
    ]
    stats = pit.ListingStats()
    states = {s.key: s for s in pit.resolve_pages(iter(pages), T0 + timedelta(seconds=22), stats=stats)}
    assert list(states) == ["a", "b", "k", "z"]
    assert states["a"].at.version_id == "a1" and states["a"].current.version_id == "a2"
    assert states["b"].at is None and states["b"].current.delete_marker  # created (and deleted) after T
    k = states["k"]
    assert (k.versions, k.delete_markers) == (3, 2)
    assert k.at.version_id == "k2" and k.existed_at and not k.live
    assert k.newest_data.version_id == "k3" and k.oldest.version_id == "k1"
    at_16 = next(s for s in pit.resolve_pages(iter(pages), T0 + timedelta(seconds=16)) if s.key == "k")
    assert at_16.at.version_id == "k-dm0" and not at_16.existed_at  # deleted at T: not restorable
    assert states["z"].at.version_id == "z1"
    assert (stats.pages, stats.keys, stats.versions, stats.delete_markers) == (3, 4, 6, 3)


def test_same_second_ties_prefer_is_latest_and_are_flagged_otherwise():
    latest_marker = [{"Versions": [_v("k", "v1", 10)], "DeleteMarkers": [_dm("k", "dm", 10, True)]}]
    (s,) = pit.resolve_pages(iter(latest_marker), T0 + timedelta(seconds=10))
    assert s.at.version_id == "dm" and not s.ambiguous
    tie = [{"Versions": [_v("k", "v3", 30, True), _v("k", "v1", 10)], "DeleteMarkers": [_dm("k", "dm", 10)]}]
    (s,) = pit.resolve_pages(iter(tie), T0 + timedelta(seconds=12))
    assert s.at.version_id == "v1" and s.ambiguous  # restoring is undoable, so the version wins the tie
    (s,) = pit.resolve_pages(iter(tie), T0 + timedelta(seconds=31))
    assert s.at.version_id == "v3" and not s.ambiguous


def test_exact_key_stops_after_the_key():
    pages = iter([{"Versions": [_v("a.txt", "1", 1, True), _v("a.txt.bak", "2", 2, True)]},
                  {"Versions": [_v("a.txt.bak", "3", 1)]}])
    (s,) = pit.resolve_pages(pages, None, exact_key="a.txt")
    assert s.key == "a.txt" and s.versions == 1
    assert next(pages, None) is not None, "the listing stopped without reading the next page"


@pytest.mark.parametrize("text", ["2026-12-01T10:00:00Z", "2026-12-01T12:00:00+02:00", "2026-12-01T10:00:00.5Z"])
def test_parse_as_of(text):
    assert pit.parse_as_of(text).replace(microsecond=0) == T0


@pytest.mark.parametrize("text", ["", None, "yesterday", "2026-12-01", "2026-12-01T10:00:00", "2026-13-01T10:00:00Z",
                                  "2026-12-01 10:00:00Z", "2026-12-01T10:00Z"])
def test_parse_as_of_rejects(text):
    with pytest.raises(pit.PointInTimeError, match="as_of"):
        pit.parse_as_of(text)


def test_requests_that_would_overwrite_the_source_are_refused():
    plan = load_plan()
    src = plan.bucket_names[0]
    ok = {"bucket": src, "prefix": "user-uploads/u1002/", "delete_newer": False}
    pit.check_bulk_request(plan, destination="in_place", target_bucket=None, target_prefix="", **ok)
    pit.check_bulk_request(plan, destination="other_location", target_bucket=None, target_prefix="recovered/", **ok)
    pit.check_bulk_request(plan, destination="other_location", target_bucket=plan.bucket_names[1], target_prefix="",
                           **ok)
    refused = [
        ({"target_bucket": None, "target_prefix": ""}, "use destination=in_place"),  # the same keys
        ({"target_bucket": src, "target_prefix": ""}, "use destination=in_place"),
        ({"target_bucket": None, "target_prefix": "user-uploads/u1002/"}, "overwrite or mix"),  # inside the source
        ({"target_bucket": plan.backup.bucket, "target_prefix": ""}, "backup bucket"),
        ({"target_bucket": plan.compliance_bucket, "target_prefix": "x/"}, "compliance bucket"),
        ({"target_bucket": plan.source_buckets[0].replica, "target_prefix": "x/"}, "replica"),
        ({"target_bucket": None, "target_prefix": "../etc/"}, "target_prefix"),
    ]
    for kwargs, message in refused:
        with pytest.raises(pit.PointInTimeError, match=message):
            pit.check_bulk_request(plan, destination="other_location", **kwargs, **ok)
    with pytest.raises(pit.PointInTimeError, match="delete_newer"):
        pit.check_bulk_request(plan, destination="other_location", target_bucket=None, target_prefix="r/",
                               **{**ok, "delete_newer": True})
    with pytest.raises(pit.PointInTimeError, match="only used with destination=other_location"):
        pit.check_bulk_request(plan, destination="in_place", target_bucket=None, target_prefix="r/", **ok)
    with pytest.raises(pit.PointInTimeError, match="not a source bucket"):
        pit.check_bulk_request(plan, destination="in_place", target_bucket=None, target_prefix="",
                               **{**ok, "bucket": plan.backup.bucket})
    assert pit.file_destination(plan, bucket=src, key="a.txt", destination="recovery_prefix",
                                recovery_prefix="recovered/") == "recovered/a.txt"
    with pytest.raises(pit.PointInTimeError, match="recovery_prefix"):
        pit.file_destination(plan, bucket=src, key="a.txt", destination="recovery_prefix", recovery_prefix="")
    with pytest.raises(pit.PointInTimeError, match="after this run was triggered"):
        pit.check_not_after(datetime(2030, 1, 1, tzinfo=UTC), datetime(2026, 12, 3, tzinfo=UTC))


# --------------------------------------------------------------------------- against moto
def test_single_file_is_an_exact_key_match(s3):
    """The runbook's `--prefix "$KEY"` also matched a.txt.bak (and a.txt/...): only a.txt counts here."""
    make_bucket(s3, BUCKET)
    a1 = s3.put_object(Bucket=BUCKET, Key="a.txt", Body=b"a v1")["VersionId"]
    s3.put_object(Bucket=BUCKET, Key="a.txt", Body=b"a v2")
    bak = [s3.put_object(Bucket=BUCKET, Key="a.txt.bak", Body=b"bak %d" % i)["VersionId"] for i in range(3)]
    s3.put_object(Bucket=BUCKET, Key="a.txt/child", Body=b"child")
    s3.delete_object(Bucket=BUCKET, Key="a.txt")

    state = pit.key_state(s3, BUCKET, "a.txt", page_size=2)
    assert (state.key, state.versions, state.delete_markers) == ("a.txt", 2, 1)
    assert not state.live and state.newest_data.size == len(b"a v2")
    assert pit.key_state(s3, BUCKET, "a.tx") is None

    latest = pit.resolve_file(s3, s3, bucket=BUCKET, key="a.txt", mode="latest")
    assert latest["status"] == "found" and latest["current"]["delete_marker"]
    done = pit.restore_file(s3, latest, dest_bucket=BUCKET, dest_key="a.txt")
    assert done["action"] == "restored" and done["size"] == 4 and done["checksum"].startswith("sha256:")
    assert s3.get_object(Bucket=BUCKET, Key="a.txt")["Body"].read() == b"a v2"
    assert done["new_version_id"] == s3.head_object(Bucket=BUCKET, Key="a.txt")["VersionId"]
    # again: the destination already holds it, nothing copied
    assert pit.restore_file(s3, latest, dest_bucket=BUCKET, dest_key="a.txt")["action"] == "unchanged"

    v1 = pit.resolve_file(s3, s3, bucket=BUCKET, key="a.txt", mode="version", version_id=a1)
    assert v1["origin"]["source_version_id"] == a1
    pit.restore_file(s3, v1, dest_bucket=BUCKET, dest_key="recovered/a.txt")
    assert live(s3, BUCKET, "recovered/") == {"recovered/a.txt": b"a v1"}
    assert live(s3, BUCKET, "a.txt.bak") == {"a.txt.bak": b"bak 2"}
    with pytest.raises(pit.PointInTimeError, match="is not a version of"):
        pit.resolve_file(s3, s3, bucket=BUCKET, key="a.txt", mode="version", version_id=bak[0])
    with pytest.raises(pit.PointInTimeError, match="only used with mode=version"):
        pit.resolve_file(s3, s3, bucket=BUCKET, key="a.txt", mode="latest", version_id=a1)


def test_bulk_as_of_picks_the_newest_version_and_respects_delete_markers(s3):
    make_bucket(s3, BUCKET)
    tl = Timeline(s3, BUCKET)
    tl.tick({"k/hot.txt": b"hot 1", "k/nested/deep/er/leaf.txt": b"leaf 1", "k/del-before.txt": b"db 1",
             "k/del-after.txt": b"da 1", "k/same.txt": b"same", "k-sibling.txt": b"sib 1"})
    tl.tick({"k/hot.txt": b"hot 2", "k/nested/deep/er/leaf.txt": b"leaf 2"}, deletes=["k/del-before.txt"])
    t = tl.tick({"k/hot.txt": b"hot 3"})
    tl.tick({"k/hot.txt": b"hot 4", "k/nested/deep/er/leaf.txt": b"leaf 3", "k/new.txt": b"new",
             "k/del-before.txt": b"db again", "k-sibling.txt": b"sib 2"}, deletes=["k/del-after.txt"])
    as_of = tl.as_of(t)

    plan_only = pit.bulk_recover(s3, pit.BulkRequest(BUCKET, "k/", as_of, delete_newer=True, dry_run=True))
    assert live(s3, BUCKET) == tl.states[-1], "a dry run changes nothing"
    assert {k: v for k, v in plan_only.counts.items() if v} == {"restore": 3, "delete": 2, "unchanged": 1}
    decisions = {d["key"]: d for d in plan_only.sample}
    assert decisions["k/hot.txt"]["version_last_modified"] == pit.iso(as_of)  # v3, not v1 (runbook: oldest won)
    assert decisions["k/del-before.txt"]["reason"].startswith("re-created after a deletion")
    assert decisions["k/del-after.txt"]["reason"] == "deleted after as_of"

    result = pit.bulk_recover(s3, pit.BulkRequest(BUCKET, "k/", as_of, delete_newer=True, dry_run=False,
                                                  concurrency=4))
    assert result.counts == plan_only.counts and result.bytes_restored == len(b"hot 3leaf 2da 1")
    assert live(s3, BUCKET, "k/") == tl.state(t, "k/") == {
        "k/hot.txt": b"hot 3", "k/nested/deep/er/leaf.txt": b"leaf 2", "k/del-after.txt": b"da 1",
        "k/same.txt": b"same"}
    assert live(s3, BUCKET, "k-sibling") == {"k-sibling.txt": b"sib 2"}, "keys outside the prefix are untouched"
    # deletions are delete markers: the newer versions are still there
    assert s3.get_object(Bucket=BUCKET, Key="k/new.txt", VersionId=tl.version_ids[-1][2])["Body"].read() == b"new"

    versions = version_count(s3, BUCKET)
    again = pit.bulk_recover(s3, pit.BulkRequest(BUCKET, "k/", as_of, delete_newer=True, dry_run=False))
    assert {k: v for k, v in again.counts.items() if v} == {"unchanged": 4, "absent": 2}
    assert version_count(s3, BUCKET) == versions, "re-running changes nothing"

    # to another prefix: the state at T, nested paths kept, nothing deleted anywhere
    other = pit.bulk_recover(s3, pit.BulkRequest(BUCKET, "k/", as_of, target_bucket=BUCKET,
                                                 target_prefix="restored/", dry_run=False))
    assert other.counts["restore"] == 4
    assert live(s3, BUCKET, "restored/") == {"restored/" + k: v for k, v in tl.state(t, "k/").items()}


def test_copies_run_in_parallel(s3):
    make_bucket(s3, BUCKET)
    tl = Timeline(s3, BUCKET)
    keys = [f"p/{i:03d}/object.bin" for i in range(48)]
    t = tl.tick({k: b"old " + k.encode() for k in keys})
    tl.tick({k: b"new " + k.encode() for k in keys})
    in_flight, peak, lock = [0], [0], threading.Lock()

    def before(**_):
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])

    def after(**_):
        with lock:
            in_flight[0] -= 1

    s3.meta.events.register("before-call.s3.CopyObject", before)
    s3.meta.events.register("after-call.s3.CopyObject", after)
    result = pit.bulk_recover(s3, pit.BulkRequest(BUCKET, "p/", tl.as_of(t), dry_run=False, concurrency=8))
    assert result.counts["restore"] == 48 and result.max_in_flight > 1
    assert peak[0] > 1, "server-side copies overlap"
    assert live(s3, BUCKET, "p/") == tl.state(t)


# --------------------------------------------------------------------------- memory
class _ListingOnlyClient:
    """Serves a synthetic ListObjectVersions stream (boto3's page shape) and accepts copies.

    The moto server here takes ~65 s to accept 10,000 puts and ~20 s to list them, far beyond the
    suite's budget; this measures the core's own memory over the same page stream instead."""

    def __init__(self, keys: int, versions_per_key: int) -> None:
        self.keys, self.per_key = keys, versions_per_key
        self.copies = 0
        self._lock = threading.Lock()

    def get_paginator(self, name):
        assert name == "list_object_versions"
        return self

    def paginate(self, Bucket, Prefix, PaginationConfig):  # noqa: N803 - boto3's signature
        size = PaginationConfig["PageSize"]
        page = {"Versions": [], "DeleteMarkers": []}
        n = 0
        for k in range(self.keys):
            key = f"{Prefix}user-{k % 97:02d}/file-{k:06d}.bin"
            for v in range(self.per_key, 0, -1):  # newest first; the newest is a delete marker on every 10th key
                item = {"Key": key, "VersionId": f"{k:06d}-{v:03d}-" + "x" * 20,
                        "LastModified": T0 + timedelta(seconds=10 * v), "IsLatest": v == self.per_key}
                if v == self.per_key and k % 10 == 0:
                    page["DeleteMarkers"].append(item)
                else:
                    page["Versions"].append({**item, "Size": 1000 + v, "ETag": f'"{k:026d}{v:06d}"',
                                             "StorageClass": "STANDARD"})
                n += 1
                if n % size == 0:
                    yield page
                    page = {"Versions": [], "DeleteMarkers": []}
        if page["Versions"] or page["DeleteMarkers"]:
            yield page

    def copy_object(self, **kwargs):
        with self._lock:
            self.copies += 1
        return {"CopyObjectResult": {"ETag": '"e"', "ChecksumSHA256": "c2hh"}}


def _peak_of_bulk(keys: int, per_key: int) -> tuple[int, pit.BulkResult, int]:
    client = _ListingOnlyClient(keys, per_key)
    as_of = T0 + timedelta(seconds=10 * per_key - 5)  # between the last two versions of every key
    request = pit.BulkRequest("b", "big/", as_of, dry_run=False, concurrency=16)
    gc.collect()
    tracemalloc.start()
    try:
        result = pit.bulk_recover(client, request)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, result, client.copies


def test_bulk_memory_is_flat_in_the_number_of_versions(record_property):
    peak_1k, small, _ = _peak_of_bulk(250, 4)
    peak_10k, big, copies = _peak_of_bulk(2500, 4)
    assert (small.versions_listed + small.delete_markers_listed, small.pages) == (1000, 1)
    assert (big.versions_listed + big.delete_markers_listed, big.pages) == (10_000, 10)
    assert big.counts["restore"] == copies == 2500  # every key back to its version before the last
    assert len(big.sample) == pit.SAMPLE_SIZE
    record_property("peak_1k_bytes", peak_1k)
    record_property("peak_10k_bytes", peak_10k)
    print(f"tracemalloc peak of bulk_recover: 1k versions {peak_1k / 1024:.0f} KiB, "
          f"10k versions {peak_10k / 1024:.0f} KiB ({peak_10k / peak_1k:.2f}x)")
    assert peak_10k < peak_1k * 1.5, (peak_1k, peak_10k)
