"""quarterly_dr_drill — simulated regional outage: failover, integrity, failback; measured RTO/RPO."""

from __future__ import annotations

from airflow.sdk import dag

from dataprotection.config import load_plan
from dataprotection.defaults import START_DATE, default_args
from dataprotection.operators.drill import (
    DrillCanariesOperator,
    DrillFailbackOperator,
    DrillIntegrityOperator,
    DrillOutageFailoverOperator,
    DrillReportOperator,
)

SCHEDULE = "0 5 1 1,4,7,10 *"
PLAN = load_plan()
DR = PLAN.drill

DOC = f"""
### Quarterly disaster-recovery drill

Acts only on the drill's DNS record `{DR.record_name if DR else '?'}` and function
`{DR.function_name if DR else '?'}` (never the production ones), with the same failover code as
`s3_regional_failover`:

1. `write_canaries` — {DR.canaries if DR else '?'} canary objects in every critical bucket, write times recorded;
2. `outage_and_failover` — waits up to {DR.replication_wait_seconds if DR else '?'} s for the canaries to
   replicate, then marks `{PLAN.regions.primary}` unavailable (its S3 client refuses every call), reads
   which canaries the replicas hold (**RPO** = failover time − oldest missing canary's write time), fails
   over and verifies (**RTO** = outage start → verified failover);
3. `check_integrity` — primary vs replica within the replicated prefixes: missing, extra, mismatched;
4. `failback` — back to `{PLAN.regions.primary}`, verified; the drill's canaries removed;
5. `write_report` — `s3://{PLAN.compliance_bucket}/reports/dr-drill/<run id>.json`: measured RTO/RPO against
   `targets.regional_outage`, pass/fail per scenario, issues found, the next drill date. Any failed scenario
   fails the run.
"""


@dag(
    dag_id="quarterly_dr_drill",
    schedule=SCHEDULE,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    doc_md=DOC,
    tags=["dataprotection", "dr", "drill", "failover"],
    default_args=default_args(),
)
def quarterly_dr_drill():
    canaries = DrillCanariesOperator(task_id="write_canaries")
    outage = DrillOutageFailoverOperator(task_id="outage_and_failover", canaries=canaries.output)
    integrity = DrillIntegrityOperator(task_id="check_integrity", trigger_rule="all_done")
    failback = DrillFailbackOperator(task_id="failback", canaries_task_id="write_canaries", trigger_rule="all_done")
    report = DrillReportOperator(task_id="write_report", schedule=SCHEDULE, outage_task_id="outage_and_failover",
                                 integrity_task_id="check_integrity", failback_task_id="failback",
                                 trigger_rule="all_done")
    canaries >> outage >> integrity >> failback >> report


dag = quarterly_dr_drill()

if __name__ == "__main__":
    dag.test()
