"""s3_weekly_archive — incremental snapshots of the archived buckets into the archive bucket (Deep Archive)."""

from __future__ import annotations

from airflow.sdk import dag

from dataprotection.config import load_plan
from dataprotection.defaults import START_DATE, default_args
from dataprotection.operators.snapshot import snapshot_workflow

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
    snapshot_workflow("weekly", BUCKETS, PLAN.archive.bucket)


dag = s3_weekly_archive()

if __name__ == "__main__":
    dag.test()
