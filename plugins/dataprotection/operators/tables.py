"""Exports the plan's app tables (PostgreSQL COPY → gzip CSV) beside a day's snapshots."""

from __future__ import annotations

from functools import cached_property

from dataprotection import backup
from dataprotection.hooks.appdb import AppDatabaseHook
from dataprotection.operators.base import DataProtectionOperator, run_day
from dataprotection.tables import export_table


class PostgresTableExportOperator(DataProtectionOperator):
    """Exports every table of the plan to `tables/<snapshot-id>/<table>.csv.gz` in the store bucket;
    returns row counts, sizes and sha256 of each export."""

    template_fields = ("kind",)

    def __init__(self, *, kind: backup.Kind = "daily", app_db_conn_id: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.kind = kind
        self.app_db_conn_id = app_db_conn_id

    @cached_property
    def db_hook(self) -> AppDatabaseHook:
        return AppDatabaseHook(self.app_db_conn_id or self.plan.connections.app_db)

    def execute(self, context) -> list[dict]:
        sid = backup.snapshot_id(self.kind, run_day(context))
        bucket = backup.store_bucket(self.plan, self.kind)
        exports = []
        with self.db_hook.get_conn() as conn:
            for table in self.plan.database.tables:
                result = export_table(conn, table, self.primary, bucket, backup.table_export_key(sid, table.name))
                self.log.info("exported %s: %d rows, sha256 %s, %d bytes gzip", table.name, result.rows,
                              result.sha256, result.bytes_compressed)
                exports.append(result.to_dict())
        return exports
