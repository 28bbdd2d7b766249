"""Backup jobs over the snapshot engine, driven by the plan: daily snapshots into the backup bucket,
weekly archives into the archive bucket. Snapshot ids, shard plans, retention cutoffs and the
run manifest (`manifests/<kind>/<id>.json`, the runbook's fields plus counts, bytes, durations and
snapshot ids). Dates come from the caller (the DAG run's data interval), never from the clock.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Literal

from dataprotection.config import Plan
from dataprotection.copier import CopyTuning, MiB
from dataprotection.manifest import snapshot_prefix, write_json
from dataprotection.snapshot import SnapshotSpec, plan_shards

Kind = Literal["daily", "weekly"]


def snapshot_id(kind: Kind, day: date) -> str:
    if kind == "daily":
        return day.isoformat()
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def store_bucket(plan: Plan, kind: Kind) -> str:
    return plan.backup.bucket if kind == "daily" else plan.archive.bucket


def buckets_for(plan: Plan, kind: Kind) -> list[str]:
    return plan.bucket_names if kind == "daily" else [b.name for b in plan.archived_buckets]


def snapshot_spec(plan: Plan, kind: Kind, source_bucket: str, sid: str, logical_time: str | None = None
                  ) -> SnapshotSpec:
    plan.bucket(source_bucket)  # raises a clear KeyError for a bucket outside the plan
    return SnapshotSpec(
        source_bucket=source_bucket,
        store_bucket=store_bucket(plan, kind),
        snapshot_id=sid,
        kind=kind,
        storage_class=plan.backup.storage_class if kind == "daily" else plan.archive.storage_class,
        excludes=tuple(plan.excludes),
        concurrency=plan.backup.max_concurrency,
        tuning=CopyTuning(plan.backup.multipart_threshold_mb * MiB, plan.backup.multipart_chunk_mb * MiB),
        logical_time=logical_time,
    )


def retention_cutoff(plan: Plan, kind: Kind, day: date) -> str:
    """The oldest snapshot id still kept on `day`: the last N days (daily) or N years (weekly)."""
    if kind == "daily":
        return snapshot_id(kind, day - timedelta(days=plan.backup.retention_days - 1))
    try:
        oldest = day.replace(year=day.year - plan.archive.retention_years)
    except ValueError:  # 29 February
        oldest = day.replace(year=day.year - plan.archive.retention_years, day=28)
    return snapshot_id(kind, oldest)


def shard_assignments(plan: Plan, kind: Kind, sid: str, source, store, logical_time: str | None = None
                      ) -> list[dict]:
    """One dict per (bucket, shard): the kwargs of a mapped snapshot task."""
    out = []
    for bucket in buckets_for(plan, kind):
        spec = snapshot_spec(plan, kind, bucket, sid, logical_time)
        ranges = plan_shards(source, store, spec, plan.bucket(bucket).shards)
        for shard, key_range in enumerate(ranges):
            out.append({"source_bucket": bucket, "shard": shard, "shard_count": len(ranges),
                        "after": key_range.after, "upto": key_range.upto})
    return out


def run_manifest(plan: Plan, kind: Kind, sid: str, day: date, summaries: list[dict], tables: list[dict],
                 timestamp: str) -> dict:
    bucket = store_bucket(plan, kind)
    doc = {
        f"{'backup_date' if kind == 'daily' else 'archive_week'}": sid,
        f"{'backup_type' if kind == 'daily' else 'archive_type'}": kind,
        "buckets": [s["source_bucket"] for s in summaries],
        f"{'backup_location' if kind == 'daily' else 'archive_location'}": f"s3://{bucket}/snapshots/",
        "storage_class": plan.backup.storage_class if kind == "daily" else plan.archive.storage_class,
        "created_by": "dataprotection",
        "timestamp": timestamp,
        "run_date": day.isoformat(),
        "snapshots": [
            {
                "source_bucket": s["source_bucket"],
                "snapshot_id": s["snapshot_id"],
                "location": f"s3://{bucket}/{snapshot_prefix(s['source_bucket'], s['snapshot_id'])}",
                "previous_snapshot": s.get("previous_snapshot"),
                **{k: s[k] for k in ("objects", "bytes", "copied", "copied_bytes", "skipped", "excluded",
                                     "duration_s")},
            }
            for s in summaries
        ],
        "tables": tables,
        "totals": {
            "objects": sum(s["objects"] for s in summaries),
            "bytes": sum(s["bytes"] for s in summaries),
            "copied": sum(s["copied"] for s in summaries),
            "copied_bytes": sum(s["copied_bytes"] for s in summaries),
            "table_rows": sum(t.get("rows", 0) for t in tables),
        },
    }
    if kind == "daily":
        doc["retention_days"] = plan.backup.retention_days
    else:
        doc["retention_years"] = plan.archive.retention_years
    return doc


def run_manifest_key(kind: Kind, sid: str) -> str:
    return f"manifests/{kind}/{sid}.json"


def write_run_manifest(store, plan: Plan, kind: Kind, doc: dict, sid: str) -> str:
    key = run_manifest_key(kind, sid)
    write_json(store, store_bucket(plan, kind), key, doc)
    return f"s3://{store_bucket(plan, kind)}/{key}"


def table_export_key(sid: str, table: str) -> str:
    return f"tables/{sid}/{table}.csv.gz"
