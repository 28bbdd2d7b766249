"""s3_weekly_archive — incremental snapshots of the archived buckets into the archive bucket (Deep Archive)."""

from __future__ import annotations

from airflow.sdk import Asset, dag

from dataprotection.config import load_plan
from dataprotection.defaults import START_DATE, default_args
from dataprotection.operators.reports import S3BackupRunManifestOperator
from dataprotection.operators.snapshot import (
    S3SnapshotFinalizeOperator,
    S3SnapshotPlanOperator,
    S3SnapshotRetentionOperator,
    S3SnapshotShardOperator,
)

PLAN = load_plan()
BUCKETS = [b.name for b in PLAN.archived_buckets]

DOC = f"""
### Weekly archive

Every Sunday, an **incremental** snapshot of each archived bucket ({", ".join(BUCKETS)}) into
`s3://{PLAN.archive.bucket}/snapshots/<bucket>/<ISO week>/` (e.g. `2026-W49`). Object data is stored
with storage class **{PLAN.archive.storage_class}**; only objects not already archived are copied.
Manifests and summaries stay in STANDARD, so they are readable without a restore.

Writes the run manifest `manifests/weekly/<week>.json` and expires archive snapshots older than
{PLAN.archive.retention_years} years (the newest complete one is always kept).
Recover with `s3_complete_recovery`.
"""


@dag(
    dag_id="s3_weekly_archive",
    schedule="0 3 * * 0",
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    doc_md=DOC,
    tags=["dataprotection", "archive", "s3", "glacier"],
    default_args=default_args(),
)
def s3_weekly_archive():
    plan_shards = S3SnapshotPlanOperator(task_id="plan_shards", kind="weekly")
    shards = S3SnapshotShardOperator.partial(task_id="snapshot_shard", kind="weekly").expand_kwargs(
        plan_shards.output
    )
    finals = [
        S3SnapshotFinalizeOperator(
            task_id=f"finalize_{bucket}",
            kind="weekly",
            source_bucket=bucket,
            assignments=plan_shards.output,
            outlets=[Asset(name=f"weekly_archive__{bucket}", uri=f"s3://{PLAN.archive.bucket}/snapshots/{bucket}/")],
        )
        for bucket in BUCKETS
    ]
    run_manifest = S3BackupRunManifestOperator(
        task_id="write_run_manifest", kind="weekly", summaries=[f.output for f in finals]
    )
    retention = [
        S3SnapshotRetentionOperator(task_id=f"retention_{bucket}", kind="weekly", source_bucket=bucket)
        for bucket in BUCKETS
    ]
    shards >> finals
    finals >> run_manifest >> retention


dag = s3_weekly_archive()

if __name__ == "__main__":
    dag.test()
