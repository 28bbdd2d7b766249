"""Operators for incremental snapshots (daily backup into the backup bucket, weekly archive into the
archive bucket): plan shards, snapshot one shard (mapped), finalize a bucket's snapshot, retention."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from airflow.sdk import Asset

from dataprotection import backup
from dataprotection.listing import KeyRange
from dataprotection.operators.base import DataProtectionOperator, run_day, run_time_iso
from dataprotection.operators.reports import S3BackupRunManifestOperator
from dataprotection.retention import expire_snapshots
from dataprotection.snapshot import finalize_snapshot, take_shard


class _SnapshotOperator(DataProtectionOperator):
    template_fields = ("kind",)

    def __init__(self, *, kind: backup.Kind = "daily", **kwargs) -> None:
        super().__init__(**kwargs)
        self.kind = kind

    def spec(self, context, source_bucket: str):
        sid = backup.snapshot_id(self.kind, run_day(context))
        return backup.snapshot_spec(self.plan, self.kind, source_bucket, sid, run_time_iso(context))


class S3SnapshotPlanOperator(_SnapshotOperator):
    """Returns one assignment per (bucket, shard) for the mapped snapshot tasks."""

    def execute(self, context) -> list[dict]:
        sid = backup.snapshot_id(self.kind, run_day(context))
        assignments = backup.shard_assignments(self.plan, self.kind, sid, self.primary, self.primary,
                                               run_time_iso(context))
        self.log.info("snapshot %s: %d shard tasks over %d buckets", sid, len(assignments),
                      len({a["source_bucket"] for a in assignments}))
        return assignments


class S3SnapshotShardOperator(_SnapshotOperator):
    """Snapshots one key range of one bucket (server-side copies of what changed); returns counts."""

    template_fields = ("kind", "source_bucket", "shard", "shard_count", "after", "upto")

    def __init__(self, *, source_bucket: str, shard: int = 0, shard_count: int = 1, after: str | None = None,
                 upto: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.source_bucket = source_bucket
        self.shard = shard
        self.shard_count = shard_count
        self.after = after
        self.upto = upto

    def execute(self, context) -> dict[str, Any]:
        spec = self.spec(context, self.source_bucket)
        result = take_shard(self.primary, self.primary, spec, shard=int(self.shard),
                            key_range=KeyRange(self.after, self.upto))
        return {"source_bucket": self.source_bucket, "snapshot_id": spec.snapshot_id, **asdict(result)}


class S3SnapshotFinalizeOperator(_SnapshotOperator):
    """Checks every shard of a bucket's snapshot finished and writes its summary (marks it complete)."""

    template_fields = ("kind", "source_bucket", "assignments")

    def __init__(self, *, source_bucket: str, assignments: Any, **kwargs) -> None:
        super().__init__(**kwargs)
        self.source_bucket = source_bucket
        self.assignments = assignments

    def execute(self, context) -> dict[str, Any]:
        spec = self.spec(context, self.source_bucket)
        shards = [a for a in self.assignments if a["source_bucket"] == self.source_bucket]
        summary = finalize_snapshot(self.primary, spec, shard_count=len(shards))
        return {k: v for k, v in summary.items() if k != "parts"}


class S3SnapshotRetentionOperator(_SnapshotOperator):
    """Expires snapshots older than the plan's retention and sweeps unreferenced stored objects."""

    template_fields = ("kind", "source_bucket", "dry_run")

    def __init__(self, *, source_bucket: str, dry_run: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.source_bucket = source_bucket
        self.dry_run = dry_run

    def execute(self, context) -> dict[str, Any]:
        cutoff = backup.retention_cutoff(self.plan, self.kind, run_day(context))
        result = expire_snapshots(self.primary, backup.store_bucket(self.plan, self.kind), self.source_bucket,
                                  cutoff=cutoff, dry_run=bool(self.dry_run))
        return {"source_bucket": self.source_bucket, "cutoff": cutoff, "expired": result.expired,
                "kept": len(result.kept), "swept_objects": result.swept_objects,
                "swept_bytes": result.swept_bytes}


def snapshot_workflow(kind: backup.Kind, buckets: list[str], store_bucket: str, tables=None) -> None:
    """Wire the tasks shared by the daily backup and the weekly archive into the current DAG:
    plan shards → snapshot shards (mapped) → finalize per bucket (an Asset each) → run manifest
    (with the `tables` task's exports, if any) → retention per bucket."""
    asset_kind = "daily_snapshot" if kind == "daily" else "weekly_archive"
    plan_shards = S3SnapshotPlanOperator(task_id="plan_shards", kind=kind)
    shards = S3SnapshotShardOperator.partial(task_id="snapshot_shard", kind=kind).expand_kwargs(plan_shards.output)
    finals = [
        S3SnapshotFinalizeOperator(
            task_id=f"finalize_{bucket}",
            kind=kind,
            source_bucket=bucket,
            assignments=plan_shards.output,
            outlets=[Asset(name=f"{asset_kind}__{bucket}", uri=f"s3://{store_bucket}/snapshots/{bucket}/")],
        )
        for bucket in buckets
    ]
    run_manifest = S3BackupRunManifestOperator(
        task_id="write_run_manifest",
        kind=kind,
        summaries=[f.output for f in finals],
        tables=tables.output if tables is not None else None,
    )
    retention = [
        S3SnapshotRetentionOperator(task_id=f"retention_{bucket}", kind=kind, source_bucket=bucket)
        for bucket in buckets
    ]
    shards >> finals
    finals >> run_manifest >> retention
