"""s3_temp_cleanup — remove expired objects (every version and delete marker) under temporary prefixes."""

from __future__ import annotations

from airflow.sdk import dag

from dataprotection.config import load_plan
from dataprotection.defaults import START_DATE, default_args
from dataprotection.operators.cleanup import S3TempCleanupOperator, S3TempCleanupReportOperator

PLAN = load_plan()
TEMPORARY = [r for r in PLAN.retention if r.temporary]
BUCKETS = [b.name for b in PLAN.source_buckets] + [b.replica for b in PLAN.source_buckets if b.replica]

DOC = f"""
### Temporary-object cleanup

For every source bucket and its replica, lists each temporary prefix of the retention table
({", ".join(f"`{r.prefix}` after {r.expire_days} days" for r in TEMPORARY) or "none"}) — a folder, never a
substring of other keys — and deletes **every version and delete marker** of the keys whose newest
version is older than the retention, counted from the run's data-interval end. DeleteObjects with
VersionId, ≤ 1,000 per request, per-key errors read; a second listing verifies. Keys outside those
prefixes are never touched.

Report: `s3://{PLAN.compliance_bucket}/reports/temp-cleanup/<run id>.json` (counts and bytes per bucket
and prefix). A deletion that failed fails the run.
"""


@dag(
    dag_id="s3_temp_cleanup",
    schedule="0 4 * * *",
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    doc_md=DOC,
    tags=["dataprotection", "s3", "retention", "cleanup"],
    default_args=default_args(),
)
def s3_temp_cleanup():
    cleanups = [S3TempCleanupOperator(task_id=f"cleanup_{bucket}", bucket=bucket) for bucket in BUCKETS]
    report = S3TempCleanupReportOperator(task_id="write_report", results=[c.output for c in cleanups])
    cleanups >> report


dag = s3_temp_cleanup()

if __name__ == "__main__":
    dag.test()
