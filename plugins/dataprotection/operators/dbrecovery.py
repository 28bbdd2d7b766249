"""db_records_recovery: re-insert rows missing from an app table from a daily table export.

The module-level functions are framework-free (a boto3 client, a psycopg connection); the operators
below are thin adapters around them.

In ONE transaction:
1. count the table's rows;
2. load the export (`tables/<date>/<table>.csv.gz` in the backup bucket, first checked against its
   own metadata and the SHA-256 recorded in the day's run manifest) into a temporary table;
3. re-apply the GDPR erasure ledger to the temporary table (`tables.redact_erased_users`): the rows of
   users an erasure removed are deleted from it (`on_erasure: delete`) or their URL columns set to
   NULL (`on_erasure: null_urls`), so an erased user never comes back from an export; only counts are
   reported and logged, never the user ids;
4. optionally rewrite S3 URLs — in the temporary table, and only in the rows that are about to be
   inserted (their primary key is missing from the table): `replace(<url column>, %(old)s, %(new)s)`
   with the values passed as parameters, so quotes, `;` or `%` in them are data, never SQL;
5. insert the rows whose primary key is missing (`ON CONFLICT DO NOTHING`): an existing row — modified
   since the export or not — is never updated, so a re-run inserts nothing;
6. count again. A dry run does all of this, returns the counts, and rolls the transaction back.

Rewriting only the inserted rows is deliberate: rows still in the table are the application's
current truth (they may have been updated since the export), and this DAG never changes them.
Note: PostgreSQL's setval() is not transactional; when rows are inserted and the primary key's
sequence is *behind* the largest key (not the case after deletions), a dry run leaves the sequence
advanced — harmless (gaps only, never backwards).
"""

from __future__ import annotations

import re
import time
from functools import cached_property
from typing import Any

import psycopg
from botocore.exceptions import ClientError
from psycopg import sql

from dataprotection import backup
from dataprotection.config import Table
from dataprotection.gdpr.ledger import Redactor
from dataprotection.hooks.appdb import AppDatabaseHook
from dataprotection.manifest import read_json
from dataprotection.operators.base import DataProtectionOperator
from dataprotection.operators.gdpr_common import load_redactor
from dataprotection.recovery import parse_day
from dataprotection.reports import write_report
from dataprotection.tables import insert_missing_rows, load_export_into_temp, redact_erased_users, verify_export

REPORT_KIND = "db-records-recovery"
SNAPSHOT_DATE_PATTERN = r"^(latest|\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01]))$"
_EXPORT_DAY = re.compile(r"^tables/(\d{4}-\d{2}-\d{2})/$")


class RecordsRecoveryError(ValueError):
    """Records recovery cannot start; the message names the parameter or what is missing."""


# --------------------------------------------------------------------------- framework-free core
def export_days(s3, bucket: str) -> list[str]:
    """Days that have table exports in `bucket` (`tables/<YYYY-MM-DD>/`), newest first."""
    days = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="tables/", Delimiter="/"):
        for prefix in page.get("CommonPrefixes", []):
            match = _EXPORT_DAY.match(prefix["Prefix"])
            if match:
                days.append(match.group(1))
    return sorted(days, reverse=True)


def _exists(s3, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


def resolve_export(s3, bucket: str, table: str, snapshot_date: str) -> str:
    """The export day to use: `snapshot_date` (YYYY-MM-DD) if it has an export of `table`, or with
    "latest" the newest day that has one."""
    day = parse_day(snapshot_date, "snapshot_date")
    days = export_days(s3, bucket)
    candidates = [day.isoformat()] if day is not None else days
    for candidate in candidates:
        if _exists(s3, bucket, backup.table_export_key(candidate, table)):
            return candidate
    available = [d for d in days if _exists(s3, bucket, backup.table_export_key(d, table))][:10]
    raise RecordsRecoveryError(
        f"snapshot_date: no export of table {table} {'for ' + day.isoformat() if day else 'at all'} in "
        f"s3://{bucket}/tables/ (days with one: {', '.join(available) or 'none'}); "
        "choose one of those days, or run s3_daily_backup first"
    )


def recorded_sha256(s3, bucket: str, day: str, table: str) -> str | None:
    """The SHA-256 the day's run manifest recorded for the table's export (None if there is no manifest)."""
    manifest = read_json(s3, bucket, backup.run_manifest_key("daily", day)) or {}
    for export in manifest.get("tables", []):
        if export.get("table") == table:
            return export.get("sha256")
    return None


def _count(conn: psycopg.Connection, relation: str) -> int:
    return conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(relation))).fetchone()[0]


def _missing_clause(table: Table) -> sql.Composed:
    """Rows of the temp table (alias t) whose primary key is not in `table`."""
    return sql.SQL("NOT EXISTS (SELECT 1 FROM {table} AS x WHERE x.{pk} = t.{pk})").format(
        table=sql.Identifier(table.name), pk=sql.Identifier(table.primary_key))


def count_missing(conn: psycopg.Connection, table: Table, temp_name: str) -> int:
    statement = sql.SQL("SELECT count(*) FROM {temp} AS t WHERE {missing}").format(
        temp=sql.Identifier(temp_name), missing=_missing_clause(table))
    return conn.execute(statement).fetchone()[0]


def rewrite_urls(conn: psycopg.Connection, table: Table, temp_name: str, old: str, new: str) -> int:
    """In the rows of `temp_name` that are missing from `table`, replace `old` by `new` in the plan's
    URL columns; return how many rows changed. `old`/`new` are query parameters (data, never SQL)."""
    if not table.url_columns:
        raise RecordsRecoveryError(f"url_rewrite_from: table {table.name} has no url_columns in the plan")
    columns = [sql.Identifier(c) for c in table.url_columns]
    statement = sql.SQL("UPDATE {temp} AS t SET {sets} WHERE {missing} AND ({contains})").format(
        temp=sql.Identifier(temp_name),
        sets=sql.SQL(", ").join(sql.SQL("{c} = replace({c}, %(old)s, %(new)s)").format(c=c) for c in columns),
        missing=_missing_clause(table),
        contains=sql.SQL(" OR ").join(sql.SQL("strpos(t.{c}, %(old)s) > 0").format(c=c) for c in columns),
    )
    with conn.cursor() as cur:
        cur.execute(statement, {"old": old, "new": new})
        return cur.rowcount


def recover_rows(conn: psycopg.Connection, table: Table, s3, bucket: str, key: str, *,
                 url_rewrite: tuple[str, str] | None = None, dry_run: bool = True,
                 redactor: Redactor | None = None) -> dict[str, Any]:
    """Steps 1-6 of the module doc in one transaction on `conn` (autocommit, no transaction open).
    Without a redactor (None) step 3 is skipped."""
    started = time.monotonic()
    with conn.transaction() as tx:
        before = _count(conn, table.name)
        temp, loaded = load_export_into_temp(conn, table, s3, bucket, key)
        ledger = redact_erased_users(conn, table, temp, redactor)
        missing = count_missing(conn, table, temp)
        rewritten = rewrite_urls(conn, table, temp, *url_rewrite) if url_rewrite else 0
        inserted = insert_missing_rows(conn, table, temp)
        after = _count(conn, table.name)
        result = {
            "table": table.name,
            "dry_run": dry_run,
            "committed": not dry_run,
            "rows_before": before,
            "rows_in_export": loaded,
            "missing": missing,
            "inserted": inserted,
            "already_present": loaded - ledger["erased_rows_skipped"] - inserted,
            "rows_after": after,
            "gdpr_ledger": ledger,
            "url_rewrite": None if not url_rewrite else {
                "from": url_rewrite[0], "to": url_rewrite[1], "columns": list(table.url_columns),
                "rows_rewritten": rewritten, "applies_to": "inserted rows only",
            },
        }
        if dry_run:
            raise psycopg.Rollback(tx)
    result["duration_s"] = round(time.monotonic() - started, 3)
    return result


def _flag(value: Any) -> bool:
    return str(value).strip().lower() in ("true", "1")


def _optional(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


# --------------------------------------------------------------------------- operators
class PostgresRecordsRecoveryOperator(DataProtectionOperator):
    """Re-inserts the rows of `table` missing since the export of `snapshot_date` ("latest": the newest);
    never updates a row; never re-inserts an erased user's rows (or URLs, per the table's `on_erasure`)
    the GDPR erasure ledger names; optional URL rewrite in the inserted rows; `dry_run` rolls back.
    Returns counts."""

    template_fields = ("table", "snapshot_date", "url_rewrite_from", "url_rewrite_to", "dry_run")

    def __init__(self, *, table: str, snapshot_date: str = "latest", url_rewrite_from: str | None = None,
                 url_rewrite_to: str | None = None, dry_run: Any = True, app_db_conn_id: str | None = None,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.table = table
        self.snapshot_date = snapshot_date
        self.url_rewrite_from = url_rewrite_from
        self.url_rewrite_to = url_rewrite_to
        self.dry_run = dry_run
        self.app_db_conn_id = app_db_conn_id

    @cached_property
    def db_hook(self) -> AppDatabaseHook:
        return AppDatabaseHook(self.app_db_conn_id or self.plan.connections.app_db)

    def _rewrite(self, table: Table) -> tuple[str, str] | None:
        old, new = _optional(self.url_rewrite_from), _optional(self.url_rewrite_to)
        if (old is None) != (new is None):
            raise RecordsRecoveryError("url_rewrite_from and url_rewrite_to go together: give both or neither")
        if old is None:
            return None
        if not table.url_columns:
            raise RecordsRecoveryError(f"url_rewrite_from: table {table.name} has no url_columns in the plan")
        return old, new

    def execute(self, context) -> dict[str, Any]:
        try:
            table = self.plan.table(self.table)
        except KeyError:
            raise RecordsRecoveryError(
                f"table: {self.table!r} is not a table of the plan "
                f"(choose one of: {', '.join(t.name for t in self.plan.database.tables)})"
            ) from None
        rewrite = self._rewrite(table)
        dry_run = _flag(self.dry_run)
        bucket = self.plan.backup.bucket
        day = resolve_export(self.primary, bucket, table.name, self.snapshot_date)
        key = backup.table_export_key(day, table.name)
        check = verify_export(self.primary, bucket, key, recorded_sha256(self.primary, bucket, day, table.name))
        if not check.ok:
            raise RecordsRecoveryError(
                f"the export s3://{bucket}/{key} failed verification: {'; '.join(check.problems)}. "
                "Choose another snapshot_date"
            )
        self.log.info("export s3://%s/%s verified: %d rows, sha256 %s", bucket, key, check.rows, check.sha256)
        redactor = load_redactor(self.primary, self.plan)
        with self.db_hook.get_conn(autocommit=True) as conn:
            result = recover_rows(conn, table, self.primary, bucket, key, url_rewrite=rewrite, dry_run=dry_run,
                                  redactor=redactor)
        self.log.info("%s %s: %d rows before, %d in the export, %d inserted, %d already present, %d after%s",
                      "dry run (rolled back):" if dry_run else "committed:", table.name, result["rows_before"],
                      result["rows_in_export"], result["inserted"], result["already_present"], result["rows_after"],
                      f", {result['url_rewrite']['rows_rewritten']} rows with URLs rewritten" if rewrite else "")
        self.log.info("GDPR erasure ledger re-applied: %(erased_users)d erased users in the export, "
                      "%(erased_rows_skipped)d of their rows not re-inserted, %(erased_urls_nulled)d rows with "
                      "URLs set to NULL", result["gdpr_ledger"])
        export = {"bucket": bucket, "key": key, "snapshot_date": day, "rows": check.rows, "sha256": check.sha256,
                  "recorded_sha256": check.expected_sha256, "verified": check.ok}
        return {**result, "export": export}


class S3RecordsRecoveryReportOperator(DataProtectionOperator):
    """Writes the records-recovery report (counts before/after, the erasure-ledger counts, the export and
    its checksum) to the compliance bucket."""

    template_fields = ("result",)

    def __init__(self, *, result: Any, **kwargs) -> None:
        super().__init__(**kwargs)
        self.result = result

    def execute(self, context) -> dict[str, Any]:
        doc = {"kind": REPORT_KIND, "run_id": context["run_id"],
               "params": {k: context["params"].get(k) for k in
                          ("table", "snapshot_date", "url_rewrite_from", "url_rewrite_to", "dry_run")},
               **self.result}
        uri = write_report(self.primary, self.plan, REPORT_KIND, context["run_id"], doc)
        self.log.info("report %s", uri)
        return {"report": uri, "inserted": self.result["inserted"], "dry_run": self.result["dry_run"]}
