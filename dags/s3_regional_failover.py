"""s3_regional_failover — point the DNS record and the function configuration at the backup region, or back."""

from __future__ import annotations

from airflow.sdk import Param, dag

from dataprotection.config import load_plan
from dataprotection.defaults import START_DATE, default_args
from dataprotection.operators.failover import RegionalFailoverOperator

PLAN = load_plan()
FO = PLAN.failover

DOC = f"""
### Regional failover / failback

`failover` points the Route 53 record `{FO.record_name if FO else '?'}` (zone `{FO.hosted_zone if FO else '?'}`,
UPSERT, waits for INSYNC) at the replica endpoint in `{PLAN.regions.backup}` and sets the function
`{FO.function_name if FO else '?'}`'s bucket variables to the replicas and its region variable to the backup
region; `failback` does the reverse. Other variables of the function are kept.

Afterwards it **verifies**: the record's value read back, the function's environment read back, and
every replica (failover) or source bucket (failback) read — its canary object is downloaded and its
SHA-256 compared — not just listed. A failed check fails the task (CheckFailed).

`dry_run` (default **true**) computes and reports the changes and changes nothing. Every step is in
`s3://{PLAN.compliance_bucket}/reports/regional-failover/<run id>-<direction>.json` with UTC timestamps.
"""


@dag(
    dag_id="s3_regional_failover",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    doc_md=DOC,
    tags=["dataprotection", "failover", "dr", "route53", "lambda"],
    default_args=default_args(),
    params={
        "direction": Param("failover", type="string", enum=["failover", "failback"],
                           description="failover: to the backup region; failback: to the primary region."),
        "dry_run": Param(True, type="boolean", description="Only compute and report the changes; change nothing."),
    },
)
def s3_regional_failover():
    RegionalFailoverOperator(task_id="switch_and_verify", direction="{{ params.direction }}",
                             dry_run="{{ params.dry_run }}")


dag = s3_regional_failover()

if __name__ == "__main__":
    dag.test()
