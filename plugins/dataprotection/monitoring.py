"""Health checks of the backups (framework-free). Each returns a dict
`{check, ok, measured, threshold, detail}`; `health_report` assembles them.

- snapshot_freshness: the newest complete daily snapshot of a bucket is younger than the threshold;
- archive_freshness: the same for the weekly archive of an archived bucket;
- replication_config: a critical bucket's replication configuration is the plan's (own replica only);
- spot_check: a random sample of a snapshot's manifest entries: each stored copy exists (HEAD, never
  GET — archived copies are in DEEP_ARCHIVE) with the manifest's size, the store's storage class and
  the checksum S3 reports for it (ChecksumSHA256 with ChecksumMode=ENABLED, else the ETag), compared
  with the manifest's `checksum` as the snapshot engine wrote it.

Ages are measured against the run's time (passed in), never the wall clock. A snapshot's age counts
from when it was taken: its summary's `completed_at` minus its `duration_s`.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from botocore.exceptions import ClientError

from dataprotection import protection
from dataprotection.config import Plan
from dataprotection.sampling import reservoir
from dataprotection.snapshot import iter_manifest, latest_snapshot, read_summary

MAX_FAILURES_LISTED = 20


def result(check: str, ok: bool, measured, threshold, detail: str = "", **extra) -> dict:
    return {"check": check, "ok": bool(ok), "measured": measured, "threshold": threshold, "detail": detail, **extra}


def _parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).astimezone(UTC)


def taken_at(summary: dict) -> datetime:
    return _parse(summary["completed_at"]) - timedelta(seconds=float(summary.get("duration_s") or 0))


def freshness(store, store_bucket: str, source_bucket: str, now: datetime, max_age: timedelta, check: str) -> dict:
    """Is the newest complete snapshot of `source_bucket` in `store_bucket` younger than `max_age` at `now`?"""
    threshold = f"< {max_age.total_seconds() / 3600:g} h"
    sid = latest_snapshot(store, store_bucket, source_bucket)
    if sid is None:
        return result(check, False, None, threshold,
                      f"no complete snapshot of {source_bucket} in s3://{store_bucket} (no summary.json)",
                      bucket=source_bucket)
    summary = read_summary(store, store_bucket, source_bucket, sid) or {}
    age_h = round((now - taken_at(summary)).total_seconds() / 3600, 2)
    ok = age_h < max_age.total_seconds() / 3600
    return result(check, ok, age_h, threshold,
                  f"snapshot {sid} of {source_bucket} taken {taken_at(summary):%Y-%m-%dT%H:%M:%SZ}, "
                  f"{summary.get('objects', 0)} objects", bucket=source_bucket, snapshot_id=sid)


def snapshot_freshness(store, plan: Plan, bucket: str, now: datetime) -> dict:
    return freshness(store, plan.backup.bucket, bucket, now,
                     timedelta(hours=plan.monitoring.snapshot_max_age_hours), f"snapshot_freshness:{bucket}")


def archive_freshness(store, plan: Plan, bucket: str, now: datetime) -> dict:
    return freshness(store, plan.archive.bucket, bucket, now,
                     timedelta(days=plan.monitoring.archive_max_age_days), f"archive_freshness:{bucket}")


def replication_config(client, plan: Plan, bucket: str) -> dict:
    """The bucket's replication configuration, compared (fields S3 keeps) with the plan's."""
    target = next(t for t in protection.targets(plan) if t.name == bucket)
    drifts = [d for d in protection.bucket_drifts(plan, client, target) if d.field == "replication"]
    check = f"replication_config:{bucket}"
    expected = protection.replication_config(target, "")
    if not drifts:
        return result(check, True, "as planned", f"replica {target.replica}, {len(expected['Rules'])} rule(s)",
                      bucket=bucket)
    actual = drifts[0].actual
    measured = "missing" if actual is None else actual
    return result(check, False, measured, drifts[0].expected,
                  "no replication configuration" if actual is None else "replication differs from the plan",
                  bucket=bucket)


def verify_stored_copy(store, store_bucket: str, entry, storage_class: str | None) -> str | None:
    """None if the stored copy matches the manifest entry; else what is wrong (no object data is read)."""
    try:
        head = store.head_object(Bucket=store_bucket, Key=entry.location, ChecksumMode="ENABLED")
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
            return "stored copy missing"
        raise
    if head["ContentLength"] != entry.size:
        return f"size {head['ContentLength']} != manifest {entry.size}"
    actual_class = head.get("StorageClass") or "STANDARD"
    if storage_class and actual_class != storage_class:
        return f"storage class {actual_class} != {storage_class}"
    etag = head["ETag"].strip('"')
    checksum = entry.checksum or f"etag:{entry.etag}"
    kind, _, value = checksum.partition(":")
    if kind == "sha256":
        if head.get("ChecksumSHA256") != value:
            return f"sha256 {head.get('ChecksumSHA256')} != manifest {value}"
    elif kind in ("etag", "mpu-etag"):
        if etag != value:
            return f"etag {etag} != manifest {value}"
    else:
        return f"unknown checksum kind {kind!r} in the manifest"
    return None


def spot_check(store, store_bucket: str, source_buckets: list[str], *, sample: int, seed: str, check: str,
               storage_class: str | None, full: set[str] = frozenset(), full_limit: int = 100_000) -> dict:
    """Verify a random sample of the newest complete snapshot of each bucket (all entries, up to
    `full_limit`, for the buckets in `full`)."""
    checked, failures, snapshots, missing = 0, [], {}, []
    for bucket in source_buckets:
        sid = latest_snapshot(store, store_bucket, bucket)
        if sid is None:
            missing.append(bucket)
            continue
        snapshots[bucket] = sid
        entries = iter_manifest(store, store_bucket, bucket, sid)
        k = full_limit if bucket in full else sample
        for entry in reservoir(entries, k, random.Random(f"{seed}:{bucket}:{sid}")):
            checked += 1
            problem = verify_stored_copy(store, store_bucket, entry, storage_class)
            if problem:
                failures.append({"bucket": bucket, "snapshot_id": sid, "key": entry.key,
                                 "location": entry.location, "problem": problem})
    ok = not failures and not missing
    detail = "; ".join(
        [f"no complete snapshot of {', '.join(missing)}"] * bool(missing)
        + [f"{f['bucket']} {f['snapshot_id']} {f['key']!r}: {f['problem']}" for f in failures[:5]])
    return result(check, ok, f"{len(failures)} of {checked} stored copies bad", "0 bad", detail or
                  f"{checked} stored copies verified", checked=checked, failed=len(failures),
                  failures=failures[:MAX_FAILURES_LISTED], snapshots=snapshots,
                  full_buckets=sorted(full & set(source_buckets)))


def health_report(checks: list[dict], run_id: str, run_time: datetime, missing: list[str] = ()) -> dict:
    """The health report: every check with result, measured value and threshold; healthy if all passed."""
    failed = [c["check"] for c in checks if not c["ok"]] + list(missing)
    return {"format": 1, "kind": "backup-health", "run_id": run_id,
            "run_time": run_time.strftime("%Y-%m-%dT%H:%M:%SZ"), "healthy": not failed, "failed": failed,
            "checks": [{k: c.get(k) for k in ("check", "ok", "measured", "threshold", "detail")} for c in checks]}
