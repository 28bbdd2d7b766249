"""db_records_recovery — re-insert app-table rows missing since a daily table export."""

from __future__ import annotations

from airflow.sdk import Param, dag

from dataprotection.config import load_plan
from dataprotection.defaults import START_DATE, default_args
from dataprotection.operators.dbrecovery import (
    SNAPSHOT_DATE_PATTERN,
    PostgresRecordsRecoveryOperator,
    S3RecordsRecoveryReportOperator,
)

PLAN = load_plan()
TABLES = [t.name for t in PLAN.database.tables]

DOC = f"""
### Records recovery from a table export

Re-inserts the rows of `table` that are missing (by primary key) since the export that
`s3_daily_backup` wrote on `snapshot_date` (`s3://{PLAN.backup.bucket}/tables/<date>/<table>.csv.gz`;
`latest` = the newest export of that table). In **one transaction**:

1. the export is checked (SHA-256 against its metadata and the day's run manifest) and loaded into a
   temporary table;
2. optionally, in the rows about to be inserted only, `url_rewrite_from` is replaced by
   `url_rewrite_to` in the table's URL columns (parameterised SQL: the values are data);
3. rows whose primary key is missing are inserted (`ON CONFLICT DO NOTHING`): existing rows — even
   if modified since the export — are **never updated**; a re-run inserts nothing.

The report (row counts before/after, inserted, already present, the export's checksum) goes to
`s3://{PLAN.compliance_bucket}/reports/db-records-recovery/<run id>.json`.
`dry_run` (default **true**) does everything, reports the counts, then rolls the transaction back.
"""


@dag(
    dag_id="db_records_recovery",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    doc_md=DOC,
    tags=["dataprotection", "recovery", "postgres"],
    default_args=default_args(),
    params={
        "table": Param(TABLES[0], type="string", enum=TABLES, description="The app table to recover rows of."),
        "snapshot_date": Param("latest", type="string", pattern=SNAPSHOT_DATE_PATTERN,
                               description="Day of the table export (YYYY-MM-DD), or 'latest' for the newest."),
        "url_rewrite_from": Param(None, type=["null", "string"], minLength=1, maxLength=2048,
                                  description="Optional: text to replace in the URL columns of the inserted rows "
                                              "(e.g. an old bucket's URL prefix). Needs url_rewrite_to."),
        "url_rewrite_to": Param(None, type=["null", "string"], minLength=1, maxLength=2048,
                                description="Optional: the replacement for url_rewrite_from."),
        "dry_run": Param(True, type="boolean",
                         description="Do everything in the transaction, report the counts, then roll back."),
    },
)
def db_records_recovery():
    recover = PostgresRecordsRecoveryOperator(
        task_id="recover_rows",
        table="{{ params.table }}",
        snapshot_date="{{ params.snapshot_date }}",
        url_rewrite_from="{{ params.url_rewrite_from or '' }}",
        url_rewrite_to="{{ params.url_rewrite_to or '' }}",
        dry_run="{{ params.dry_run }}",
    )
    S3RecordsRecoveryReportOperator(task_id="write_report", result=recover.output)


dag = db_records_recovery()

if __name__ == "__main__":
    dag.test()
