"""Operators of gdpr_user_export: check the request, delete expired exports, build the export.

Thin adapters around `dataprotection.gdpr.export`; they log and return counts, sizes and locations
only — never row values or file contents.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import psycopg

from dataprotection.gdpr.export import delete_expired_exports, export_user, report_doc
from dataprotection.gdpr.footprint import check_request_reference, check_user_id
from dataprotection.hooks.appdb import AppDatabaseHook
from dataprotection.operators.base import DataProtectionOperator, run_time
from dataprotection.reports import write_report

REPORT_KIND = "gdpr-export"


class GdprExportCheckOperator(DataProtectionOperator):
    """Validates `user_id` and `request_reference` before anything is read or written."""

    template_fields = ("user_id", "request_reference")

    def __init__(self, *, user_id: Any, request_reference: Any, **kwargs) -> None:
        super().__init__(**kwargs)
        self.user_id = user_id
        self.request_reference = request_reference

    def execute(self, context) -> dict[str, str]:
        check_user_id(self.plan, self.user_id)
        reference = check_request_reference(self.request_reference)
        self.log.info("export request %s is valid", reference)
        return {"request_reference": reference}


class S3ExpiredExportsDeleteOperator(DataProtectionOperator):
    """Deletes exports older than `gdpr.export_expire_days` from the export bucket (counts only in the log)."""

    template_fields = ()

    def execute(self, context) -> dict[str, Any]:
        return delete_expired_exports(self.primary, self.plan, run_time(context))


class GdprUserExportOperator(DataProtectionOperator):
    """Gathers the user's rows and files, streams the ZIP to the export bucket, presigns a download
    link and writes the report to the compliance bucket. Returns the link and the export's location."""

    template_fields = ("user_id", "request_reference", "expired")

    def __init__(self, *, user_id: Any, request_reference: Any, expired: Any = None,
                 app_db_conn_id: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.user_id = user_id
        self.request_reference = request_reference
        self.expired = expired
        self.app_db_conn_id = app_db_conn_id

    @cached_property
    def db_hook(self) -> AppDatabaseHook:
        return AppDatabaseHook(self.app_db_conn_id or self.plan.connections.app_db)

    def execute(self, context) -> dict[str, Any]:
        user_id = check_user_id(self.plan, self.user_id)
        reference = check_request_reference(self.request_reference)
        run_id = context["run_id"]
        with self.db_hook.get_conn() as conn:
            # One consistent, read-only picture of every table: the export never changes the database.
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            result = export_user(conn, self.primary, self.plan, user_id=user_id, request_reference=reference,
                                 run_id=run_id, created_at=run_time(context))
        doc = report_doc(result, run_id, self.expired if isinstance(self.expired, dict) else None)
        report = write_report(self.primary, self.plan, REPORT_KIND, run_id, doc)
        totals = result.manifest["totals"]
        self.log.info("export %s (%d bytes, %d rows, %d files, %d missing): %s; link valid until %s; report %s",
                      result.uri, result.size, totals["rows"], totals["files"], totals["missing"], doc["status"],
                      result.link["expires_at"], report)
        return {
            "status": doc["status"],
            "export": result.uri,
            "bucket": result.bucket,
            "key": result.key,
            "size": result.size,
            "sha256": result.sha256,
            "expires_at": result.expires_at,
            "url": result.link["url"],
            "link_expires_at": result.link["expires_at"],
            "link_expires_in_seconds": result.link["expires_in_seconds"],
            "report": report,
            "totals": totals,
        }
