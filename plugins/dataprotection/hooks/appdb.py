"""psycopg 3 connections to the application database from an Airflow Postgres connection."""

from __future__ import annotations

import psycopg
from airflow.sdk import BaseHook


class AppDatabaseHook(BaseHook):
    """Connects with psycopg 3 (server-side COPY streaming) using connection `app_db_conn_id`."""

    conn_name_attr = "app_db_conn_id"
    default_conn_name = "app_db"
    conn_type = "postgres"
    hook_name = "Data-protection app database"

    def __init__(self, app_db_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.app_db_conn_id = app_db_conn_id

    def conninfo(self) -> str:
        conn = self.get_connection(self.app_db_conn_id)
        params = {
            "host": conn.host or "localhost",
            "port": conn.port or 5432,
            "user": conn.login or None,
            "password": conn.password or None,
            "dbname": conn.schema or "postgres",
            "application_name": "dataprotection",
        }
        return psycopg.conninfo.make_conninfo(**{k: v for k, v in params.items() if v is not None})

    def get_conn(self, **kwargs) -> psycopg.Connection:
        return psycopg.connect(self.conninfo(), **kwargs)
