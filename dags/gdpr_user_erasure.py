"""gdpr_user_erasure — erase one person everywhere: preview → approval → erase → verify → certificate."""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.providers.standard.operators.python import ShortCircuitOperator
from airflow.sdk import dag

from dataprotection.config import load_plan
from dataprotection.defaults import START_DATE, default_args
from dataprotection.operators.gdpr_erasure import (
    GdprEraseOperator,
    GdprErasureCertificateOperator,
    GdprErasurePreviewOperator,
    GdprVerifyErasureOperator,
    proceed_unless_dry_run,
)
from dataprotection.params import dry_run_param, request_reference_param, user_id_param

PLAN = load_plan()
APPROVAL_TIMEOUT = timedelta(days=7)

DOC = f"""
### GDPR erasure of one user (Art. 17)

1. **find_user_data** (changes nothing): the user's rows in {", ".join(t.name for t in PLAN.database.tables)};
   the S3 objects those rows name and everything under the per-user folders
   ({", ".join(f"`s3://{p.bucket}/{p.prefix}`" for p in PLAN.gdpr.user_prefixes) or "none"}); every version
   and delete marker of exactly those keys in the source buckets and their replicas; every stored copy
   in daily snapshots (`s3://{PLAN.backup.bucket}`) and weekly archives (`s3://{PLAN.archive.bucket}`),
   found by reading the manifests. The preview (counts and the object list) is written to
   `s3://{PLAN.compliance_bucket}/gdpr/previews/<request>/<run>.json`; logs show counts only.
2. **dry_run** (default **true**) stops here.
3. **approve_erasure**: a human approves or rejects in *Required actions*, seeing the counts.
   Rejecting (or no answer within {APPROVAL_TIMEOUT.days} days) erases nothing.
4. **erase**: every version and delete marker deleted by version id (DeleteObjects, ≤ 1,000 per
   request, per-key errors read); stored copies deleted and manifests rewritten without the entries;
   rows deleted / profile URLs nulled in one transaction. Object Lock and legal holds are **never
   bypassed**: such versions are reported as blocked, with their retain-until date.
5. **verify**: every location is listed again; anything left that is not lock-protected fails the run
   and no certificate is issued.
6. **certify**: an entry in the append-only erasure ledger (user id as a keyed hash) and a certificate
   `s3://{PLAN.compliance_bucket}/gdpr/certificates/<request>/<run>.json` (counts per location, sha256
   of the sorted deleted versions, blocked items); the preview, which names keys, is deleted.

Every restore DAG re-applies the ledger, so an erased user never comes back from a backup.
Re-running for an already erased user is harmless and reports 0.
"""


@dag(
    dag_id="gdpr_user_erasure",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    doc_md=DOC,
    tags=["dataprotection", "gdpr", "erasure"],
    default_args=default_args(),
    params={
        "user_id": user_id_param(PLAN),
        "request_reference": request_reference_param(),
        "dry_run": dry_run_param("Only find and write the preview; erase nothing."),
    },
)
def gdpr_user_erasure():
    who = {"user_id": "{{ params.user_id }}", "request_reference": "{{ params.request_reference }}"}
    find_user_data = GdprErasurePreviewOperator(task_id="find_user_data", dry_run="{{ params.dry_run }}", **who)
    stop_if_dry_run = ShortCircuitOperator(task_id="stop_if_dry_run", python_callable=proceed_unless_dry_run,
                                           op_kwargs={"preview": find_user_data.output})
    approve_erasure = ApprovalOperator(
        task_id="approve_erasure",
        subject="GDPR erasure {{ params.request_reference }}: approve permanent deletion?",
        body="{{ ti.xcom_pull(task_ids='find_user_data')['approval_text'] }}",
        defaults="Reject",
        response_timeout=APPROVAL_TIMEOUT,
    )
    erase = GdprEraseOperator(task_id="erase", **who)
    verify = GdprVerifyErasureOperator(task_id="verify", **who)
    certify = GdprErasureCertificateOperator(task_id="certify", verification=verify.output,
                                             preview=find_user_data.output, **who)
    stop_if_dry_run >> approve_erasure >> erase >> verify >> certify


dag = gdpr_user_erasure()

if __name__ == "__main__":
    dag.test()
