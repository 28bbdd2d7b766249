"""monthly_recovery_test — real restores of sampled objects and the table exports into scratch space."""

from __future__ import annotations

from airflow.sdk import dag

from dataprotection.config import load_plan
from dataprotection.defaults import START_DATE, default_args
from dataprotection.operators.recoverytest import (
    RecoveryArchiveRequestOperator,
    RecoveryScenarioOperator,
    RecoveryScratchCreateOperator,
    RecoveryScratchRemoveOperator,
    RecoveryTestReportOperator,
)
from dataprotection.recoverytest import SCENARIOS
from dataprotection.sensors.glacier import S3GlacierRestoreSensor

PLAN = load_plan()
RT = PLAN.recovery_test

DOC = f"""
### Monthly recovery test

Restores for real, into scratch space unique to the run (bucket `{RT.scratch_bucket_prefix}-<hash of run id>`,
schema `{RT.scratch_schema_prefix}_<hash>` in the app database), created by a setup task and **always** removed
by a teardown task, also when the test fails:

- `snapshot_sample` — {RT.sample_size} objects per bucket from the latest complete daily snapshot in
  `s3://{PLAN.backup.bucket}`, SHA-256 compared with the manifest;
- `point_in_time` — {RT.sample_size} keys per bucket as of a random instant in the last
  {RT.versions_lookback_days} days, from bucket versions, size and ETag compared;
- `archive_object` — one object of the latest weekly archive through the Glacier restore path: its restore is
  requested (`archive_restore_request`), waited for in the triggerer (`archive_restore_wait`, deferrable, at
  most {RT.archive_restore_wait_minutes} minutes), then copied and compared;
- `table_export` — the latest export of every plan table loaded into the scratch schema, row count and
  SHA-256 (re-exported) compared with the export's recorded rows and sha256.

Samples are seeded from the run id (a re-run samples the same). Each scenario is timed and held against
its target (`recovery_test.scenario_targets` → `targets`). The report goes to
`s3://{PLAN.compliance_bucket}/reports/recovery-test/<run id>.json`; a mismatch (named) or a missed target fails
the run.
"""


@dag(
    dag_id="monthly_recovery_test",
    schedule="@monthly",
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    doc_md=DOC,
    tags=["dataprotection", "recovery", "test"],
    default_args=default_args(),
)
def monthly_recovery_test():
    create = RecoveryScratchCreateOperator(task_id="create_scratch")
    request = RecoveryArchiveRequestOperator(task_id="archive_restore_request")
    wait = S3GlacierRestoreSensor(
        task_id="archive_restore_wait", bucket=PLAN.archive.bucket,
        keys="{{ ti.xcom_pull(task_ids='archive_restore_request')['location'] }}",
        poll_interval=PLAN.archive.restore_poll_seconds, timeout=RT.archive_restore_wait_minutes * 60,
    )
    scenarios = {name: RecoveryScenarioOperator(task_id=name, scenario=name,
                                                archive_pick=request.output if name == "archive_object" else None)
                 for name in SCENARIOS}
    create >> request >> wait >> scenarios["archive_object"]
    report = RecoveryTestReportOperator(task_id="write_report", scenario_task_ids={n: n for n in SCENARIOS},
                                        trigger_rule="all_done")
    remove = RecoveryScratchRemoveOperator(task_id="remove_scratch").as_teardown(setups=create)
    create >> list(scenarios.values()) >> report >> remove


dag = monthly_recovery_test()

if __name__ == "__main__":
    dag.test()
