"""The dev stack: `python -m devstack up|down|status`.

`up` starts (or reuses) a moto server as S3 in both plan regions, PostgreSQL (DATAPROTECTION_PG_URI
if set, else an embedded server from the pgserver wheel), applies the app schema, creates the
plan's buckets, seeds demo data, starts the replication emulator, and writes `.devstack.env`
(source it in a shell to run Airflow commands against the stack). `down` stops only the processes
`up` started, by pid (and only if the pid still belongs to the process `up` started). Both are safe
to run twice.

State lives in `.devstack/` at the repository root; DATAPROTECTION_DEVSTACK_DIR puts it elsewhere
(tests use a temporary directory so they never touch a developer's running stack). The env file is
written beside the state directory as `<state dir>.env` unless DATAPROTECTION_DEVSTACK_ENV_FILE
names another path; DATAPROTECTION_DEVSTACK_DB names the app database (default dataprotection_app),
so a test pointed at a shared PostgreSQL server does not seed a developer's database.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from dataprotection.config import load_plan, plan_path
from dataprotection.s3client import make_client
from devstack import services
from devstack.seed import seed_all
from devstack.seed_failover import seed_failover

REPO = services.REPO
STATE_DIR = Path(os.environ.get("DATAPROTECTION_DEVSTACK_DIR") or REPO / ".devstack").absolute()
STATE_FILE = STATE_DIR / "state.json"
ENV_FILE = Path(
    os.environ.get("DATAPROTECTION_DEVSTACK_ENV_FILE") or STATE_DIR.with_name(STATE_DIR.name + ".env")
).absolute()
APP_DB = os.environ.get("DATAPROTECTION_DEVSTACK_DB") or "dataprotection_app"
DEFAULT_S3_PORT = 5055


def _load_state() -> dict:
    return json.loads(STATE_FILE.read_text()) if STATE_FILE.exists() else {}


def _save_state(state: dict) -> None:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = STATE_FILE.with_name(STATE_FILE.name + ".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, STATE_FILE)


def _started(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def _record(state: dict, key: str, pid: int) -> None:
    """Remember `pid` under `key` with its start time, so a recycled pid is never taken for ours."""
    state[key] = pid
    state[f"{key}_started"] = _started(pid)


def _alive(pid: int | None, started: float | None = None) -> bool:
    """True if `pid` runs (not a zombie) and, when `started` is known, is the process started then."""
    if not pid:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(proc.create_time() - started) < 1.0
    except psutil.Error:  # gone meanwhile, or not ours to inspect
        return False


def _running(state: dict, key: str) -> bool:
    return _alive(state.get(key), state.get(f"{key}_started"))


def _ensure_moto(state: dict) -> str:
    if _running(state, "moto_pid"):
        return state["moto_url"]
    port = int(os.environ.get("DATAPROTECTION_S3_PORT", DEFAULT_S3_PORT))
    try:
        services.wait_http(f"http://127.0.0.1:{port}/moto-api/", timeout=0.5)
        port = services.free_port()  # something else answers there: take a free port
    except TimeoutError:
        pass
    proc, url = services.start_moto(port, log_path=STATE_DIR / "moto.log")
    _record(state, "moto_pid", proc.pid)
    state.update(moto_url=url)
    return url


def _ensure_postgres(state: dict) -> str:
    external = os.environ.get("DATAPROTECTION_PG_URI")
    if external:
        if not _running(state, "pg_pid"):  # an embedded server still running stays recorded for `down`
            state.pop("pg_pid", None)
            state.pop("pg_pid_started", None)
        return external
    uri, pid = services.start_embedded_postgres(STATE_DIR / "pgdata")
    if state.get("pg_pid") != pid or not _running(state, "pg_pid"):
        _record(state, "pg_pid", pid)
    return uri


def _ensure_replicator(state: dict, s3_url: str) -> None:
    if _running(state, "replicator_pid"):
        if state.get("replicator_url") == s3_url:
            return
        # moto was restarted on another URL: an emulator still talking to the old one is useless
        _stop(state.get("replicator_pid"), "replication emulator", started=state.get("replicator_pid_started"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "devstack.replication", "--loop", "--endpoint-url", s3_url,
         "--state-dir", str(STATE_DIR)],
        stdout=open(STATE_DIR / "replication.log", "ab"),  # noqa: SIM115 - owned by the child
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=os.environ.copy(),
    )
    _record(state, "replicator_pid", proc.pid)
    state.update(replicator_url=s3_url)


def _gdpr_hash_key() -> str:
    """The dev stack's secret for the erasure ledger's keyed hashes: random, made once, kept."""
    path = STATE_DIR / "gdpr-hash-key"
    if not path.exists():
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


def devstack_env(s3_url: str, app_uri: str) -> dict[str, str]:
    plan = load_plan()
    return {
        f"AIRFLOW_VAR_{plan.gdpr.hash_key_variable.upper()}": _gdpr_hash_key(),
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
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    state = _load_state()
    s3_url = _ensure_moto(state)
    _save_state(state)  # recorded at once: `down` can stop moto even if a later step fails
    admin_uri = _ensure_postgres(state)
    _save_state(state)
    app_uri = services.create_database(admin_uri, APP_DB)
    services.apply_schema(app_uri)
    plan = load_plan()
    primary = make_client(plan.regions.primary, endpoint_url=s3_url)
    backup = make_client(plan.regions.backup, endpoint_url=s3_url)
    summary = seed_all(plan, primary, backup, app_uri)
    seed_failover(plan, primary, s3_url)  # Route 53 zone/records, functions, failover canaries
    env = devstack_env(s3_url, app_uri)
    os.environ.update(env)
    _ensure_replicator(state, s3_url)
    _save_state(state)
    ENV_FILE.write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()))
    pg = "external" if os.environ.get("DATAPROTECTION_PG_URI") else "embedded"
    print(f"dev stack up: S3 {s3_url} (regions {plan.regions.primary}, {plan.regions.backup}); "
          f"PostgreSQL {pg} database {APP_DB}; "
          f"seeded {summary.buckets} new buckets, {summary.objects} demo uploads, {summary.rows} rows; "
          f"replication emulator pid {state['replicator_pid']}")
    print(f"environment written to {_shown(ENV_FILE)}: `source {shlex.quote(_shown(ENV_FILE))}`")


def _shown(path: Path) -> str:
    """`path` relative to the working directory when it is below it (the usual `.devstack.env`)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _signal(pid: int, sig: int) -> None:
    # moto and the emulator lead their own session: signal the whole group (moto may fork)
    if os.getpgid(pid) == pid:
        os.killpg(pid, sig)
    else:
        os.kill(pid, sig)


def _stop(pid: int | None, name: str, sig: int = signal.SIGTERM, started: float | None = None) -> None:
    if not _alive(pid, started):
        return
    try:
        _signal(pid, sig)
        deadline = time.monotonic() + 15
        while _alive(pid, started) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid, started):
            _signal(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    print(f"stopped {name} (pid {pid})")


def down() -> None:
    state = _load_state()
    for key, name, sig in (
        ("replicator_pid", "replication emulator", signal.SIGTERM),
        ("moto_pid", "moto server", signal.SIGTERM),
        ("pg_pid", "embedded PostgreSQL", signal.SIGINT),  # SIGINT = fast shutdown
    ):
        _stop(state.get(key), name, sig, started=state.get(f"{key}_started"))
    for key in ("replicator_pid", "moto_pid", "pg_pid"):
        state.pop(key, None)
        state.pop(f"{key}_started", None)
    for key in ("moto_url", "replicator_url"):
        state.pop(key, None)
    if STATE_FILE.exists():
        _save_state(state)
    ENV_FILE.unlink(missing_ok=True)


def status() -> None:
    state = _load_state()
    for key in ("moto_pid", "pg_pid", "replicator_pid"):
        pid = state.get(key)
        print(f"{key[:-4]:12} {'running' if _running(state, key) else 'stopped'} {pid or ''}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m devstack", description="local S3 + PostgreSQL dev stack")
    parser.add_argument("command", choices=["up", "down", "status"])
    {"up": up, "down": down, "status": status}[parser.parse_args().command]()


if __name__ == "__main__":
    main()
