"""The dev stack: `python -m devstack up|down|status`.

`up` starts (or reuses) a moto server as S3 in both plan regions, PostgreSQL (DATAPROTECTION_PG_URI
if set, else an embedded server from the pgserver wheel), applies the app schema, creates the
plan's buckets, seeds demo data, starts the replication emulator, and writes `.devstack.env`
(source it in a shell to run Airflow commands against the stack). `down` stops only the processes
`up` started, by pid. Both are safe to run twice.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time

import psutil

from dataprotection.config import load_plan, plan_path
from dataprotection.s3client import make_client
from devstack import services
from devstack.seed import seed_all

REPO = services.REPO
STATE_DIR = REPO / ".devstack"
STATE_FILE = STATE_DIR / "state.json"
ENV_FILE = REPO / ".devstack.env"
APP_DB = "dataprotection_app"
DEFAULT_S3_PORT = 5055


def _load_state() -> dict:
    return json.loads(STATE_FILE.read_text()) if STATE_FILE.exists() else {}


def _save_state(state: dict) -> None:
    STATE_DIR.mkdir(exist_ok=True)
    STATE_FILE.write_text(json.dumps(state, indent=2))


def _alive(pid: int | None) -> bool:
    if not pid or not psutil.pid_exists(pid):
        return False
    return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE


def _ensure_moto(state: dict) -> str:
    if _alive(state.get("moto_pid")):
        return state["moto_url"]
    port = int(os.environ.get("DATAPROTECTION_S3_PORT", DEFAULT_S3_PORT))
    try:
        services.wait_http(f"http://127.0.0.1:{port}/moto-api/", timeout=0.5)
        port = services.free_port()  # something else answers there: take a free port
    except TimeoutError:
        pass
    proc, url = services.start_moto(port, log_path=STATE_DIR / "moto.log")
    state.update(moto_pid=proc.pid, moto_url=url)
    return url


def _ensure_postgres(state: dict) -> str:
    external = os.environ.get("DATAPROTECTION_PG_URI")
    if external:
        state.pop("pg_pid", None)
        return external
    uri, pid = services.start_embedded_postgres(STATE_DIR / "pgdata")
    state.update(pg_pid=pid)
    return uri


def _ensure_replicator(state: dict, s3_url: str) -> None:
    if _alive(state.get("replicator_pid")):
        return
    proc = subprocess.Popen(
        [sys.executable, "-m", "devstack.replication", "--loop", "--endpoint-url", s3_url,
         "--state-dir", str(STATE_DIR)],
        stdout=open(STATE_DIR / "replication.log", "ab"),  # noqa: SIM115 - owned by the child
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=os.environ.copy(),
    )
    state.update(replicator_pid=proc.pid)


def devstack_env(s3_url: str, app_uri: str) -> dict[str, str]:
    plan = load_plan()
    return {
        "AIRFLOW_HOME": str(STATE_DIR / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "PYTHONPATH": os.pathsep.join([str(REPO / "plugins"), str(REPO)]),
        "DATAPROTECTION_CONFIG": str(plan_path()),
        "DATAPROTECTION_S3_ENDPOINT": s3_url,
        "DATAPROTECTION_APP_DB_URI": app_uri,
        "AIRFLOW_CONN_AWS_DEFAULT": services.airflow_aws_conn(s3_url, plan.regions.primary),
        "AIRFLOW_CONN_APP_DB": services.airflow_pg_conn(app_uri),
        "AWS_ACCESS_KEY_ID": "dataprotection-dev",
        "AWS_SECRET_ACCESS_KEY": "dataprotection-dev",
    }


def up() -> None:
    STATE_DIR.mkdir(exist_ok=True)
    state = _load_state()
    s3_url = _ensure_moto(state)
    admin_uri = _ensure_postgres(state)
    _save_state(state)
    app_uri = services.create_database(admin_uri, APP_DB)
    services.apply_schema(app_uri)
    plan = load_plan()
    primary = make_client(plan.regions.primary, endpoint_url=s3_url)
    backup = make_client(plan.regions.backup, endpoint_url=s3_url)
    summary = seed_all(plan, primary, backup, app_uri)
    env = devstack_env(s3_url, app_uri)
    os.environ.update(env)
    _ensure_replicator(state, s3_url)
    _save_state(state)
    ENV_FILE.write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()))
    print(f"dev stack up: S3 {s3_url} (regions {plan.regions.primary}, {plan.regions.backup}); "
          f"PostgreSQL {'external' if 'pg_pid' not in state else 'embedded'} database {APP_DB}; "
          f"seeded {summary.buckets} new buckets, {summary.objects} demo uploads, {summary.rows} rows; "
          f"replication emulator pid {state['replicator_pid']}")
    print(f"environment written to {ENV_FILE.name}: `source {ENV_FILE.name}`")


def _stop(pid: int | None, name: str, sig: int = signal.SIGTERM) -> None:
    if not _alive(pid):
        return
    try:
        os.killpg(pid, sig) if os.getpgid(pid) == pid else os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 15
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
    print(f"stopped {name} (pid {pid})")


def down() -> None:
    state = _load_state()
    _stop(state.get("replicator_pid"), "replication emulator")
    _stop(state.get("moto_pid"), "moto server")
    _stop(state.get("pg_pid"), "embedded PostgreSQL", signal.SIGINT)  # SIGINT = fast shutdown
    for key in ("replicator_pid", "moto_pid", "pg_pid", "moto_url"):
        state.pop(key, None)
    _save_state(state)
    ENV_FILE.unlink(missing_ok=True)


def status() -> None:
    state = _load_state()
    for key in ("moto_pid", "pg_pid", "replicator_pid"):
        pid = state.get(key)
        print(f"{key[:-4]:12} {'running' if _alive(pid) else 'stopped'} {pid or ''}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m devstack", description="local S3 + PostgreSQL dev stack")
    parser.add_argument("command", choices=["up", "down", "status"])
    {"up": up, "down": down, "status": status}[parser.parse_args().command]()


if __name__ == "__main__":
    main()
