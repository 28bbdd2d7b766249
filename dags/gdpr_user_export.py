"""gdpr_user_export — everything the application holds about one user, as one downloadable ZIP."""

from __future__ import annotations

from airflow.sdk import dag

from dataprotection.config import load_plan
from dataprotection.defaults import START_DATE, default_args
from dataprotection.operators.gdpr_export import (
    GdprExportCheckOperator,
    GdprUserExportOperator,
    S3ExpiredExportsDeleteOperator,
)
from dataprotection.params import request_reference_param, user_id_param

PLAN = load_plan()

DOC = f"""
### GDPR data export (right of access / data portability)

For `user_id` (ticket `request_reference`), builds one ZIP and puts it into
`s3://{PLAN.export_bucket}/exports/<request reference>/<run id>.zip` (anything but `A-Z a-z 0-9 . _ -`
in either part becomes `_`), encrypted at rest (SSE AES256):

* `rows/<table>.csv` and `rows/<table>.json` — the user's rows of every table of the plan
  ({", ".join(f"`{t.name}`" for t in PLAN.database.tables)}); JSON keeps NULLs and ISO-8601 datetimes;
* `files/<name>` — the current version of every object the user owns: the objects their rows name
  (bucket/key and URL columns, source buckets only) and every live object under
  {", ".join(f"`s3://{p.bucket}/{p.prefix}`" for p in PLAN.gdpr.user_prefixes) or "the per-user folders"}.
  Names are the base name of `original_filename` (else of the key), cleaned of directories, `..`,
  control characters and drive letters; collisions become `report (2).pdf`, ...;
* `manifest.json` — per file its archive name, size, sha256, source bucket/key and version id; per
  table its row count; objects a row names that do not exist (`missing`) or are archived (`unavailable`).

The ZIP is streamed part by part (object bodies in 1 MiB chunks, multipart upload): memory stays
bounded whatever the file sizes. The task's return value holds a presigned download link valid for
{PLAN.gdpr.export_link_days} days (send it to the user; the link works only as long as the signing
credentials do, so sign with long-lived credentials in production). The report — counts, sizes,
checksums, locations, link expiry, never row values or file contents — goes to
`s3://{PLAN.compliance_bucket}/reports/gdpr-export/<run id>.json`.

Exports expire after {PLAN.gdpr.export_expire_days} days: every run first deletes older exports
(s3_protection_setup also sets a lifecycle rule on `exports/`). A user with no rows and no files gets
an export with zero rows and no files, and the report says so. Re-running a run rewrites its own ZIP.
"""


@dag(
    dag_id="gdpr_user_export",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=4,
    doc_md=DOC,
    tags=["dataprotection", "gdpr", "export", "s3", "postgres"],
    default_args=default_args(),
    params={
        "user_id": user_id_param(PLAN),
        "request_reference": request_reference_param(),
    },
)
def gdpr_user_export():
    check = GdprExportCheckOperator(
        task_id="check_request",
        user_id="{{ params.user_id }}",
        request_reference="{{ params.request_reference }}",
    )
    expire = S3ExpiredExportsDeleteOperator(task_id="delete_expired_exports")
    export = GdprUserExportOperator(
        task_id="export_user_data",
        user_id="{{ params.user_id }}",
        request_reference="{{ params.request_reference }}",
        expired=expire.output,
    )
    check >> expire >> export


dag = gdpr_user_export()

if __name__ == "__main__":
    dag.test()
