"""s3_protection_setup — enforce the plan's bucket protection (versioning, replication, lifecycle,
encryption, public-access block) and report drift."""

from __future__ import annotations

from airflow.sdk import Param, dag

from dataprotection.config import load_plan
from dataprotection.defaults import START_DATE, default_args
from dataprotection.operators.protection import S3ProtectionSetupOperator

PLAN = load_plan()

DOC = f"""
### Protection setup and drift report

Compares every plan bucket with the plan and fixes only what differs:

- source buckets ({", ".join(PLAN.bucket_names)}): versioning, default encryption ({PLAN.protection.encryption}),
  public-access block, lifecycle rules from the retention table, and one replication configuration each
  whose only destination is the bucket's **own** replica in {PLAN.regions.backup} (plan prefixes and
  storage class, delete-marker replication as the plan says);
- replicas, backup, archive, compliance and export buckets: the same hardening (see README);
- the IAM role `{PLAN.protection.replication_role}` with the policy replication needs.

The drift report (bucket, field, expected, actual, fixed) goes to
`s3://{PLAN.compliance_bucket}/reports/protection-setup/<run id>.json`.

The daily scheduled run **applies** (`apply` defaults to true). Trigger it with `apply=false` to only
report: the run then changes nothing and fails if there is any drift. A missing source bucket is never
created (recover it); the run fails until it exists.
"""


@dag(
    dag_id="s3_protection_setup",
    schedule="@daily",
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    doc_md=DOC,
    tags=["dataprotection", "s3", "configuration", "drift"],
    default_args=default_args(),
    params={
        "apply": Param(True, type="boolean",
                       description="Fix the drift (true), or only report it and fail if there is any (false)."),
    },
)
def s3_protection_setup():
    S3ProtectionSetupOperator(task_id="enforce_protection", apply="{{ params.apply }}")


dag = s3_protection_setup()

if __name__ == "__main__":
    dag.test()
