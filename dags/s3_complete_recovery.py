"""s3_complete_recovery — recover every archived bucket from the weekly Deep Archive snapshots."""

from __future__ import annotations

from airflow.providers.standard.operators.python import ShortCircuitOperator
from airflow.sdk import Param, dag

from dataprotection.config import load_plan
from dataprotection.defaults import START_DATE, default_args
from dataprotection.operators.recovery import (
    S3ArchiveRestoreRequestOperator,
    S3CompleteRecoveryPlanOperator,
    S3RecoveryBucketsOperator,
    S3RecoveryReportOperator,
    S3SnapshotCopyBackOperator,
)
from dataprotection.recovery import TARGET_SUFFIX_PATTERN
from dataprotection.sensors.glacier import S3GlacierRestoreSensor

PLAN = load_plan()

DOC = f"""
### Complete recovery from the archive

For every archived bucket, takes the latest **complete** weekly snapshot at or before `recovery_date`
from `s3://{PLAN.archive.bucket}`, then:

1. creates `<bucket><target_suffix>` (versioning, AES256 default encryption, public-access block);
2. requests restores (`tier`, `restore_days`) for exactly the objects that snapshot references —
   objects already restored or in progress are not requested again;
3. waits, deferred (no worker slot held), until every object is restored;
4. copies them into the target buckets server-side and verifies every key and checksum;
5. writes a report with counts, bytes and the measured duration of each phase to
   `s3://{PLAN.compliance_bucket}/reports/complete-recovery/<run id>.json`.

`dry_run` (default **true**) only writes the estimate (objects, bytes, requests) and changes nothing.
Re-running is harmless: restored objects are not requested again, present keys are not copied again.
"""


@dag(
    dag_id="s3_complete_recovery",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    doc_md=DOC,
    tags=["dataprotection", "recovery", "s3", "glacier"],
    default_args=default_args(),
    params={
        "recovery_date": Param("latest", type="string", pattern=r"^(latest|\d{4}-\d{2}-\d{2})$",
                               description="Recover the archive as of this date (YYYY-MM-DD), or 'latest'."),
        "tier": Param("Standard", type="string", enum=["Standard", "Bulk", "Expedited"],
                      description="Glacier retrieval tier (Expedited is refused for DEEP_ARCHIVE)."),
        "restore_days": Param(7, type="integer", minimum=1, maximum=365,
                              description="Days the restored copies stay readable."),
        "target_suffix": Param("-recovered", type="string", pattern=TARGET_SUFFIX_PATTERN,
                               description="Suffix of the target buckets, e.g. -recovered."),
        "dry_run": Param(True, type="boolean", description="Only estimate and report; change nothing."),
    },
)
def s3_complete_recovery():
    plan = S3CompleteRecoveryPlanOperator(
        task_id="plan_recovery",
        recovery_date="{{ params.recovery_date }}",
        tier="{{ params.tier }}",
        restore_days="{{ params.restore_days }}",
        target_suffix="{{ params.target_suffix }}",
        dry_run="{{ params.dry_run }}",
    )
    stop_if_dry_run = ShortCircuitOperator(
        task_id="stop_if_dry_run", python_callable=lambda params: not params["dry_run"]
    )
    setup = S3RecoveryBucketsOperator(task_id="create_target_buckets", snapshots=plan.output)
    requests = S3ArchiveRestoreRequestOperator.partial(
        task_id="request_restores", tier="{{ params.tier }}", restore_days="{{ params.restore_days }}"
    ).expand(snapshot=plan.output)
    wait = S3GlacierRestoreSensor.partial(
        task_id="wait_for_restore", bucket=PLAN.archive.bucket,
        poll_interval=PLAN.archive.restore_poll_seconds, timeout=PLAN.archive.restore_timeout_hours * 3600,
    ).expand(snapshot=plan.output)
    copies = S3SnapshotCopyBackOperator.partial(task_id="copy_back_and_verify").expand(snapshot=plan.output)
    report = S3RecoveryReportOperator(
        task_id="write_report", snapshots=plan.output, setup=setup.output, requests=requests.output,
        copies=copies.output,
    )
    plan >> stop_if_dry_run >> setup >> requests >> wait >> copies >> report


dag = s3_complete_recovery()

if __name__ == "__main__":
    dag.test()
