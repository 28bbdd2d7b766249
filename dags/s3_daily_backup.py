"""s3_daily_backup — incremental-forever snapshots of every plan bucket, app table exports, retention."""

from __future__ import annotations

from airflow.sdk import dag

from dataprotection.config import load_plan
from dataprotection.defaults import START_DATE, default_args
from dataprotection.operators.snapshot import snapshot_workflow
from dataprotection.operators.tables import PostgresTableExportOperator

PLAN = load_plan()

DOC = f"""
### Daily backup

For every source bucket of the protection plan, an **incremental** snapshot into
`s3://{PLAN.backup.bucket}/snapshots/<bucket>/<date>/`: only objects whose identity (version id, else
ETag+size) is not stored yet are copied (server-side, storage class {PLAN.backup.storage_class});
every snapshot has a complete manifest of the live keys and a `summary.json` written last.
Large buckets are split into key-range shards (`shards` in the plan), one mapped task each.

Also exports the app tables ({", ".join(t.name for t in PLAN.database.tables)}) as gzip CSV to
`tables/<date>/`, writes the run manifest `manifests/daily/<date>.json`, and expires snapshots older
than {PLAN.backup.retention_days} days (stored objects no kept snapshot needs are then deleted).

The date is the run's data-interval end. Re-running a task resumes; nothing is copied twice.
"""


@dag(
    dag_id="s3_daily_backup",
    schedule="0 2 * * *",
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    doc_md=DOC,
    tags=["dataprotection", "backup", "s3", "postgres"],
    default_args=default_args(),
)
def s3_daily_backup():
    tables = PostgresTableExportOperator(task_id="export_tables", kind="daily")
    snapshot_workflow("daily", PLAN.bucket_names, PLAN.backup.bucket, tables=tables)


dag = s3_daily_backup()

if __name__ == "__main__":
    dag.test()
