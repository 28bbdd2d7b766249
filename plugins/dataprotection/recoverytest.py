"""Monthly recovery test: real restores into scratch space, compared, timed.

Scratch space is unique to a run: bucket `<recovery_test.scratch_bucket_prefix>-<h>` (primary region) and
schema `<recovery_test.scratch_schema_prefix>_<h>` in the app database, `h` = the first 10 hex digits of
SHA-256(run id). Samples are drawn with a random generator seeded from the run id (and the scenario and
bucket), so a re-run of the same run samples the same objects.

Scenarios (each returns objects, mismatches naming the object, seconds; the caller compares with targets):
- `snapshot_sample`: per source bucket, `sample_size` entries of its latest complete daily snapshot copied
  from their stored copies into the scratch bucket; S3's SHA-256 of each copy compared with the manifest.
- `point_in_time`: per source bucket, an instant T drawn from the last `versions_lookback_days` (the part
  of it in which the bucket held versions), `sample_size` keys that existed at T restored from their
  version at T; size and ETag of each copy compared with what the version listing says.
- `archive_object`: one object of the latest complete weekly archive snapshot: restore requested
  (`archive_request`), waited for by the deferrable restore sensor (bounded), copied into the scratch
  bucket and its SHA-256 compared with the archive manifest (`archive_verify`).
- `table_export`: every plan table's latest export loaded into the scratch schema; its row count and the
  SHA-256 of the table re-exported the same way compared with the export's recorded rows and sha256.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta

import psycopg
from botocore.exceptions import ClientError
from psycopg import sql

from dataprotection import archive
from dataprotection.config import Plan
from dataprotection.copier import CopySpec, CopyTuning, copy_object
from dataprotection.pointintime import COLD_CLASSES, resolve_pages, version_pages
from dataprotection.restore import _same_checksum
from dataprotection.sampling import reservoir as sample
from dataprotection.snapshot import iter_manifest, latest_snapshot
from dataprotection.tables import _EXPORT_SETTINGS, META_ROWS, META_SHA256, CsvStats, read_export

log = logging.getLogger(__name__)
SCENARIOS = ("snapshot_sample", "point_in_time", "archive_object", "table_export")


class ScenarioError(RuntimeError):
    """A scenario could not run (no snapshot yet, restore never completed...); the message says what to do."""


def run_hash(run_id: str) -> str:
    return hashlib.sha256(run_id.encode()).hexdigest()[:10]


def scratch_names(plan: Plan, run_id: str) -> tuple[str, str]:
    h = run_hash(run_id)
    rt = plan.recovery_test
    return f"{rt.scratch_bucket_prefix}-{h}", f"{rt.scratch_schema_prefix}_{h}"


def rng(run_id: str, *parts: str) -> random.Random:
    return random.Random(hashlib.sha256("\x00".join((run_id, *parts)).encode()).digest())


# --------------------------------------------------------------------------- scratch space
def create_scratch(s3, conn: psycopg.Connection, plan: Plan, run_id: str) -> dict:
    bucket, schema = scratch_names(plan, run_id)
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError:
        region = plan.regions.primary
        kwargs = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        s3.create_bucket(Bucket=bucket, **kwargs)
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True})
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    return {"bucket": bucket, "schema": schema}


def remove_scratch(s3, conn: psycopg.Connection, plan: Plan, run_id: str) -> dict:
    """Delete every object version of the scratch bucket and the bucket; drop the schema. Idempotent."""
    bucket, schema = scratch_names(plan, run_id)
    deleted, removed = 0, False
    try:
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            batch = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                     for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
            if batch:
                s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
                deleted += len(batch)
        s3.delete_bucket(Bucket=bucket)
        removed = True
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("NoSuchBucket", "404"):
            raise
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    return {"bucket": bucket, "schema": schema, "objects_deleted": deleted, "bucket_removed": removed}


# --------------------------------------------------------------------------- scenarios
def _result(scenario: str, started: float, objects: int, mismatches: list[dict], **extra) -> dict:
    return {"scenario": scenario, "objects": objects, "mismatches": mismatches,
            "seconds": round(time.monotonic() - started, 3), **extra}


def snapshot_sample(s3, plan: Plan, run_id: str, scratch: str) -> dict:
    started = time.monotonic()
    store = plan.backup.bucket
    objects, mismatches, snapshots = 0, [], {}
    for b in plan.source_buckets:
        sid = latest_snapshot(s3, store, b.name)
        if sid is None:
            raise ScenarioError(f"snapshot_sample: no complete daily snapshot of {b.name} in s3://{store}; "
                                "run s3_daily_backup first")
        snapshots[b.name] = sid
        chosen = sample(iter_manifest(s3, store, b.name, sid), plan.recovery_test.sample_size,
                        rng(run_id, "snapshot", b.name))
        for e in chosen:
            objects += 1
            got = copy_object(s3, CopySpec(store, e.location, None, e.size, scratch, f"snapshot/{b.name}/{e.key}"),
                              CopyTuning())
            if not _same_checksum(e.checksum, got):
                mismatches.append({"bucket": b.name, "key": e.key, "stored_copy": f"s3://{store}/{e.location}",
                                   "expected": e.checksum, "actual": got})
    return _result("snapshot_sample", started, objects, mismatches, snapshots=snapshots)


def _oldest_version(s3, bucket: str, prefixes: Iterable[str] = ("",)) -> datetime | None:
    oldest = None
    for prefix in prefixes:
        for page in version_pages(s3, bucket, prefix):
            for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
                if oldest is None or v["LastModified"] < oldest:
                    oldest = v["LastModified"]
    return oldest


def point_in_time(s3, plan: Plan, run_id: str, scratch: str, reference: datetime) -> dict:
    started = time.monotonic()
    objects, mismatches, instants = 0, [], {}
    window_start = reference - timedelta(days=plan.recovery_test.versions_lookback_days)
    for b in plan.source_buckets:
        oldest = _oldest_version(s3, b.name)
        if oldest is None:
            instants[b.name] = None
            continue
        lo = max(window_start, oldest)
        r = rng(run_id, "versions", b.name)
        span = max(0.0, (reference - lo).total_seconds())
        as_of = lo + timedelta(seconds=r.uniform(0, span))
        instants[b.name] = as_of.isoformat()
        states: Iterator = (st for st in resolve_pages(version_pages(s3, b.name, ""), as_of)
                            if st.existed_at and st.at.storage_class not in COLD_CLASSES)
        for st in sample(states, plan.recovery_test.sample_size, r):
            objects += 1
            v = st.at
            dest = f"versions/{b.name}/{v.key}"
            copy_object(s3, CopySpec(b.name, v.key, v.version_id, v.size, scratch, dest), CopyTuning())
            head = s3.head_object(Bucket=scratch, Key=dest)
            if head["ContentLength"] != v.size or head["ETag"].strip('"') != v.etag:
                mismatches.append({"bucket": b.name, "key": v.key, "version_id": v.version_id,
                                   "expected": {"size": v.size, "etag": v.etag},
                                   "actual": {"size": head["ContentLength"], "etag": head["ETag"].strip('"')}})
    return _result("point_in_time", started, objects, mismatches, as_of=instants)


def archive_request(s3, plan: Plan, run_id: str) -> dict:
    """First half of `archive_object`: pick one object of the latest complete weekly archive (seeded by the
    run id) and request its restore. Returns the pick; the wait is the deferrable S3GlacierRestoreSensor's
    (no worker slot held for the hours a Deep Archive restore takes), then `archive_verify` runs."""
    store = plan.archive.bucket
    for b in plan.archived_buckets:
        sid = latest_snapshot(s3, store, b.name)
        if sid is None:
            continue
        picked = sample((e for e in iter_manifest(s3, store, b.name, sid) if e.size > 0), 1,
                        rng(run_id, "archive", b.name))
        if picked:
            break
    else:
        raise ScenarioError(f"archive_object: no complete weekly archive snapshot with data in s3://{store}; "
                            "run s3_weekly_archive first")
    e = picked[0]
    rt = plan.recovery_test
    archive.request_restores(s3, store, [e.location], days=1, tier=rt.archive_restore_tier,
                             storage_class=plan.archive.storage_class)
    log.info("archive_object: restore of s3://%s/%s (%s/%s in archive %s) requested", store, e.location, b.name,
             e.key, sid)
    return {"bucket": b.name, "snapshot": sid, "key": e.key, "location": e.location, "size": e.size,
            "checksum": e.checksum, "requested_at": time.time()}


def archive_verify(s3, plan: Plan, pick: dict, scratch: str) -> dict:
    """Second half of `archive_object`: copy the restored object into the scratch bucket and compare its
    SHA-256 with the archive manifest. Seconds count from the restore request (the whole restore path)."""
    started = time.monotonic() - max(0.0, time.time() - pick["requested_at"])
    store, location = plan.archive.bucket, pick["location"]
    if not archive.check_restores(s3, store, [location]).complete:
        raise ScenarioError(f"archive_object: s3://{store}/{location} is not restored")
    got = copy_object(s3, CopySpec(store, location, None, pick["size"], scratch,
                                   f"archive/{pick['bucket']}/{pick['key']}"), CopyTuning())
    mismatches = [] if _same_checksum(pick["checksum"], got) else [
        {"bucket": pick["bucket"], "key": pick["key"], "stored_copy": f"s3://{store}/{location}",
         "expected": pick["checksum"], "actual": got}]
    return _result("archive_object", started, 1, mismatches, snapshot=pick["snapshot"], bucket=pick["bucket"])


def latest_table_exports(s3, plan: Plan) -> tuple[str, dict[str, str]]:
    """The newest `tables/<date>/` of the backup bucket holding an export of every plan table."""
    dates = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=plan.backup.bucket, Prefix="tables/",
                                                             Delimiter="/"):
        dates += [p["Prefix"].split("/")[1] for p in page.get("CommonPrefixes", [])]
    for day in sorted(dates, reverse=True):
        keys = {t.name: f"tables/{day}/{t.name}.csv.gz" for t in plan.database.tables}
        listed = {o["Key"] for o in s3.list_objects_v2(Bucket=plan.backup.bucket, Prefix=f"tables/{day}/")
                  .get("Contents", [])}
        if set(keys.values()) <= listed:
            return day, keys
    raise ScenarioError(f"table_export: no table exports in s3://{plan.backup.bucket}/tables/; "
                        "run s3_daily_backup first")


def table_export(s3, conn: psycopg.Connection, plan: Plan, schema: str) -> dict:
    """Load every table's latest export into `schema`; compare rows and the re-exported SHA-256."""
    started = time.monotonic()
    day, keys = latest_table_exports(s3, plan)
    mismatches, tables = [], []
    for t in plan.database.tables:
        key = keys[t.name]
        meta = s3.head_object(Bucket=plan.backup.bucket, Key=key).get("Metadata", {})
        target = sql.Identifier(schema, t.name)
        with conn.transaction():
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(target))
            conn.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS)").format(
                target, sql.Identifier(t.name)))
            with conn.cursor() as cur, cur.copy(sql.SQL(
                    "COPY {} FROM STDIN WITH (FORMAT csv, HEADER true, ENCODING 'UTF8')").format(target)) as copy:
                for chunk in read_export(s3, plan.backup.bucket, key):
                    copy.write(chunk)
        rows = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(target)).fetchone()[0]
        stats = CsvStats()
        with conn.transaction(), conn.cursor() as cur:
            for name, value in _EXPORT_SETTINGS.items():
                cur.execute("SELECT set_config(%s, %s, true)", (name, value))
            with cur.copy(sql.SQL("COPY (SELECT * FROM {} ORDER BY {}) TO STDOUT WITH (FORMAT csv, HEADER true, "
                                  "ENCODING 'UTF8')").format(target, sql.Identifier(t.primary_key))) as copy:
                for data in copy:
                    stats.update(data)
        expected_rows = int(meta[META_ROWS]) if META_ROWS in meta else None
        entry = {"table": t.name, "export": f"s3://{plan.backup.bucket}/{key}", "rows": rows,
                 "expected_rows": expected_rows, "sha256": stats.sha256, "expected_sha256": meta.get(META_SHA256)}
        tables.append(entry)
        if rows != expected_rows or stats.sha256 != meta.get(META_SHA256):
            mismatches.append({"table": t.name, "key": key, "export": entry["export"],
                               "expected": {"rows": expected_rows, "sha256": meta.get(META_SHA256)},
                               "actual": {"rows": rows, "sha256": stats.sha256}})
    return _result("table_export", started, len(tables), mismatches, export_date=day, tables=tables)


# --------------------------------------------------------------------------- evaluation
def evaluate(plan: Plan, results: dict[str, dict | None]) -> list[dict]:
    """Each scenario against its target (`recovery_test.scenario_targets` -> `targets`): pass/fail."""
    out = []
    for name in SCENARIOS:
        res = results.get(name)
        target_name = plan.recovery_test.scenario_targets.get(name)
        target = plan.targets.get(target_name) if target_name else None
        target_s = target.rto_minutes * 60 if target else None
        if res is None:
            out.append({"scenario": name, "objects": 0, "mismatches": [], "rto_seconds": None, "target": target_name,
                        "target_rto_seconds": target_s, "passed": False,
                        "detail": "not run (its task failed; see the task log)"})
            continue
        within = target_s is None or res["seconds"] <= target_s
        out.append({"scenario": name, "objects": res["objects"], "mismatches": res["mismatches"],
                    "rto_seconds": res["seconds"], "target": target_name, "target_rto_seconds": target_s,
                    "passed": within and not res["mismatches"],
                    "detail": {k: v for k, v in res.items()
                               if k not in ("scenario", "objects", "mismatches", "seconds")}})
    return out


def first_problem(results: list[dict]) -> str | None:
    for r in results:
        for m in r["mismatches"]:
            where = m.get("stored_copy") or m.get("export") or f"s3://{m.get('bucket')}/{m.get('key')}"
            return f"{r['scenario']}: {m.get('key')} ({where}) expected {m['expected']}, got {m['actual']}"
        if not r["passed"]:
            return f"{r['scenario']}: {r['detail'] if isinstance(r['detail'], str) else 'missed its target'} " \
                   f"(measured {r['rto_seconds']} s, target {r['target_rto_seconds']} s)"
    return None
