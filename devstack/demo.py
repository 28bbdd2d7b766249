"""`make demo`: start the dev stack, run every DAG in dags/ once against it, print what each run did,
then serve the Airflow UI on http://localhost:8080 until Ctrl-C; stop everything it started.

Manual DAGs run with the params in `include/demo/<dag_id>.json` (none: the DAG's defaults).
New DAGs appear here without any change to this file or the Makefile.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from devstack import services
from devstack.__main__ import ENV_FILE, STATE_DIR, down, up

REPO = services.REPO
DEMO_CONF = REPO / "include" / "demo"
BRIEF_KEYS = ("source_bucket", "snapshot_id", "objects", "bytes", "copied", "skipped", "rows", "location",
              "expired", "swept_objects", "status", "result")
UI_PORT = int(os.environ.get("DATAPROTECTION_UI_PORT", "8080"))


def _load_env() -> None:
    for line in ENV_FILE.read_text().splitlines():
        key, _, value = shlex.split(line.removeprefix("export "))[0].partition("=")
        os.environ[key] = value


def _airflow(*args: str, log: Path | None = None) -> int:
    out = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115 - closed below
    try:
        return subprocess.run([sys.executable, "-m", "airflow", *args], stdout=out, stderr=subprocess.STDOUT,
                              env=os.environ.copy()).returncode
    finally:
        if log:
            out.close()


# DAGs whose results the others need, in this order: protection (replication, versioning) before the
# backups, the daily snapshot and the weekly archive before monitoring, recovery tests and restores.
RUN_FIRST = ("s3_protection_setup", "s3_daily_backup", "s3_weekly_archive")


def _dag_ids() -> list[str]:
    """RUN_FIRST in its order, then the other scheduled DAGs, then manual ones (they use the backups);
    alphabetically within each group, so a new DAG appears without any change here."""
    ids = sorted(p.stem for p in (REPO / "dags").glob("*.py") if not p.name.startswith("_"))
    first = [d for d in RUN_FIRST if d in ids]
    rest = sorted((d for d in ids if d not in first), key=lambda d: (DEMO_CONF / f"{d}.json").exists())
    return first + rest


def _summarise(dag_id: str) -> list[str]:
    """Task states and the small results tasks returned (XCom) for the latest run of `dag_id`."""
    from airflow.models import DagRun
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    lines = []
    with create_session() as session:
        runs = DagRun.find(dag_id=dag_id, session=session)
        if not runs:
            return ["  (no run recorded)"]
        run = max(runs, key=lambda r: r.start_date or r.run_after)
        for ti in sorted(run.get_task_instances(session=session), key=lambda t: (t.task_id, t.map_index)):
            name = ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"
            value = session.query(XComModel.value).filter_by(
                dag_id=dag_id, run_id=run.run_id, task_id=ti.task_id, map_index=ti.map_index, key="return_value"
            ).scalar()
            lines.append(f"  {name:45} {ti.state!s:8} {_brief(value)}")
    return lines


def _brief(value) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return value[:80]
    if isinstance(value, dict):
        keys = [k for k in BRIEF_KEYS if k in value] or [k for k, v in value.items() if isinstance(v, int | float)]
        return ", ".join(f"{k}={value[k]}" for k in keys[:8])[:150]
    if isinstance(value, list):
        return f"{len(value)} items"
    return str(value)[:80]


def run_all_dags() -> bool:
    logs = STATE_DIR / "demo-logs"
    logs.mkdir(parents=True, exist_ok=True)
    ok = True
    for dag_id in _dag_ids():
        args = ["dags", "test", dag_id]
        conf_file = DEMO_CONF / f"{dag_id}.json"
        if conf_file.exists():
            args += ["--conf", conf_file.read_text()]
        started = time.monotonic()
        code = _airflow(*args, log=logs / f"{dag_id}.log")
        state = "succeeded" if code == 0 else f"FAILED (exit {code})"
        print(f"\n{dag_id}: {state} in {time.monotonic() - started:.0f} s — log: {logs / (dag_id + '.log')}")
        print("\n".join(_summarise(dag_id)))
        ok &= code == 0
    return ok


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"airflow standalone exited with code {proc.returncode}; see its log")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    raise TimeoutError(f"the Airflow UI did not become healthy within {timeout:.0f} s")


def serve_ui() -> None:
    log = STATE_DIR / "airflow-standalone.log"
    env = os.environ.copy()
    env.setdefault("AIRFLOW__API__PORT", str(UI_PORT))
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "airflow", "standalone"], stdout=out,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        _wait_healthy(f"http://localhost:{UI_PORT}/api/v2/monitor/health", proc)
        print(f"\nAirflow UI: http://localhost:{UI_PORT}  (no login needed: the demo runs the simple auth "
              "manager with every user an admin)")
        print("Ctrl-C stops the UI and the dev stack.")
        proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def main() -> None:
    # `airflow standalone` starts its components as `airflow ...` commands: the venv's bin must be on PATH.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in the background
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if services.port_in_use(UI_PORT):
        sys.exit(f"port {UI_PORT} is already in use; stop what runs there or set DATAPROTECTION_UI_PORT")
    try:
        up()
        _load_env()
        if _airflow("db", "migrate", log=STATE_DIR / "airflow-migrate.log") != 0:
            sys.exit(f"airflow db migrate failed; see {STATE_DIR / 'airflow-migrate.log'}")
        print("\nRunning every DAG once against the dev stack:")
        ok = run_all_dags()
        print("\nAll DAG runs succeeded." if ok else "\nSome DAG runs failed: see their logs above.")
        serve_ui()
    except KeyboardInterrupt:
        print("\nstopping…")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        down()


if __name__ == "__main__":
    main()
