"""Start and stop the local services of the dev stack and the test harness.

- S3: a moto server (a real HTTP S3 endpoint) in its own process; one server serves both regions.
- PostgreSQL: the server named by a URI if given, else an embedded one from the pip-installed
  `pgserver` wheel (its own binaries; no root, no system package).

Development and test infrastructure only: production uses AWS S3 and its own PostgreSQL.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psycopg
from psycopg import sql

REPO = Path(__file__).resolve().parents[1]
SCHEMA_SQL = REPO / "include" / "sql" / "schema.sql"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # the server answers, even if with an error status
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer within {timeout:.0f} s") from None
            time.sleep(0.1)


def start_moto(port: int | None = None, log_path: Path | None = None) -> tuple[subprocess.Popen, str]:
    """Start a moto server process on 127.0.0.1; return (process, endpoint URL)."""
    port = port or free_port()
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/moto-api/")
    except TimeoutError:
        proc.kill()
        raise
    return proc, url


def reset_moto(url: str) -> None:
    """Wipe all moto state, including a restore-delay transition set by a test."""
    for path in ("/moto-api/reset", "/moto-api/state-manager/unset-transition"):
        body = b'{"model_name": "s3::keyrestore"}' if "transition" in path else b""
        req = urllib.request.Request(url + path, data=body, method="POST")
        urllib.request.urlopen(req, timeout=10).close()


def start_embedded_postgres(datadir: Path) -> tuple[str, int]:
    """Start (or reuse) the embedded PostgreSQL in `datadir`; return (admin URI, postmaster pid)."""
    import pgserver  # imported lazily: only needed when no external server is given

    datadir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(datadir, cleanup_mode=None)
    return server.get_uri(), server.get_pid()


def with_dbname(uri: str, dbname: str) -> str:
    """Return `uri` pointing at database `dbname` (keeps host, socket dir and credentials)."""
    info = psycopg.conninfo.conninfo_to_dict(uri)
    info["dbname"] = dbname
    return psycopg.conninfo.make_conninfo(**info)


def create_database(admin_uri: str, dbname: str, template: str | None = None, replace: bool = False) -> str:
    """Create database `dbname` (optionally from a template); return its conninfo."""
    with psycopg.connect(admin_uri, autocommit=True) as conn:
        if replace:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        if not exists:
            stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname))
            if template:
                stmt += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
            conn.execute(stmt)
    return with_dbname(admin_uri, dbname)


def drop_database(admin_uri: str, dbname: str) -> None:
    with psycopg.connect(admin_uri, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))


def apply_schema(uri: str) -> None:
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute(SCHEMA_SQL.read_text(encoding="utf-8"))


def airflow_pg_conn(uri: str) -> str:
    """The AIRFLOW_CONN_* JSON for a PostgreSQL conninfo (socket directories included)."""
    import json

    info = psycopg.conninfo.conninfo_to_dict(uri)
    conn = {
        "conn_type": "postgres",
        "host": info.get("host") or "127.0.0.1",
        "port": int(info.get("port") or 5432),
        "login": info.get("user") or os.environ.get("USER", "postgres"),
        "password": info.get("password") or "",
        "schema": info.get("dbname") or "postgres",
    }
    return json.dumps(conn)


def airflow_aws_conn(endpoint_url: str, region: str) -> str:
    import json

    return json.dumps(
        {
            "conn_type": "aws",
            "login": "dataprotection-dev",
            "password": "dataprotection-dev",
            "extra": {"endpoint_url": endpoint_url, "region_name": region},
        }
    )


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
