"""The dev stack: demo seed (devstack.seed) and `python -m devstack up|down` end to end."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import boto3
import psutil
import psycopg
import pytest

from dataprotection.config import plan_path
from dataprotection.s3client import make_client
from devstack import services
from devstack.seed import seed_all

REPO = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- helpers
def _all_buckets(plan):
    """(bucket, region) of every bucket the plan names."""
    out = []
    for b in plan.source_buckets:
        out.append((b.name, plan.regions.primary))
        if b.replica:
            out.append((b.replica, plan.regions.backup))
    for name in (plan.backup.bucket, plan.archive.bucket, plan.export_bucket, plan.compliance_bucket):
        out.append((name, plan.regions.primary))
    return out


def _entries(client, bucket, prefix=""):
    """Every version and delete marker of a bucket: [(key, version id, is delete marker, is latest)]."""
    out = []
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        out += [(v["Key"], v["VersionId"], False, v["IsLatest"]) for v in page.get("Versions", [])]
        out += [(m["Key"], m["VersionId"], True, m["IsLatest"]) for m in page.get("DeleteMarkers", [])]
    return sorted(out)


def _s3_state(plan, s3, s3_backup):
    clients = {plan.regions.primary: s3, plan.regions.backup: s3_backup}
    return {bucket: _entries(clients[region], bucket) for bucket, region in _all_buckets(plan)}


def _db_rows(conninfo):
    with psycopg.connect(conninfo) as conn:
        return {
            table: conn.execute(f"SELECT * FROM {table} ORDER BY id").fetchall()  # fixed table names
            for table in ("user_uploads", "business_profiles")
        }


def _current_keys(client, bucket, prefix=""):
    keys = set()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys |= {o["Key"] for o in page.get("Contents", [])}
    return keys


def _key_from_url(url: str, bucket: str) -> str:
    m = re.fullmatch(rf"https://{re.escape(bucket)}\.s3\.[a-z0-9-]+\.amazonaws\.com/(.+)", url)
    assert m, url
    return m.group(1)


# --------------------------------------------------------------------------- seed
def test_seed_all_twice_is_idempotent(plan, s3, s3_backup, app_db):
    first = seed_all(plan, s3, s3_backup, app_db)
    assert first.buckets == len(_all_buckets(plan))
    assert first.objects > 0 and first.rows > 0
    s3_before, db_before = _s3_state(plan, s3, s3_backup), _db_rows(app_db)
    assert sum(len(v) for v in s3_before.values()) > first.objects

    second = seed_all(plan, s3, s3_backup, app_db)

    assert (second.buckets, second.rows) == (0, 0)
    assert _s3_state(plan, s3, s3_backup) == s3_before, "a second seed added or removed object versions"
    assert _db_rows(app_db) == db_before, "a second seed changed database rows"


def test_demo_data_has_what_the_stack_promises(plan, s3, s3_backup, app_db):
    seed_all(plan, s3, s3_backup, app_db)
    uploads, profile, reports = (b.name for b in plan.source_buckets[:3])
    entries = _entries(s3, uploads)
    versions = Counter(k for k, _, dm, _ in entries if not dm)
    current = _current_keys(s3, uploads)
    for b, region in _all_buckets(plan):  # every bucket exists, sources and replicas versioned
        client = s3 if region == plan.regions.primary else s3_backup
        versioning = client.get_bucket_versioning(Bucket=b).get("Status")
        if b in plan.bucket_names or b in {x.replica for x in plan.source_buckets} | {plan.compliance_bucket}:
            assert versioning == "Enabled", b

    # several users with uploads under user-uploads/<user_id>/ (ids valid for the GDPR DAGs)
    users = {k.split("/")[1] for k in current if k.startswith("user-uploads/")}
    assert len(users) >= 4
    assert all(re.fullmatch(plan.gdpr.user_id_pattern, u) for u in users)
    # an object with two or more versions, whose versions differ
    multi = [k for k, n in versions.items() if n >= 2 and k.startswith("user-uploads/")]
    assert multi
    bodies = {s3.get_object(Bucket=uploads, Key=multi[0], VersionId=v)["Body"].read()
              for k, v, _, _ in entries if k == multi[0]}
    assert len(bodies) >= 2
    # a deleted key: its current entry is a delete marker and older versions remain
    deleted = {k for k, _, dm, latest in entries if dm and latest}
    assert len(deleted) >= 1
    assert all(versions[k] >= 1 and k not in current for k in deleted)
    # temp files that the plan excludes from backups and that the temp cleanup removes
    temp = [k for k in current | _current_keys(s3, reports) if k.startswith(("temp/", "tmp/"))]
    assert len(temp) >= 2
    # avatars, logos and reports
    assert any(k.startswith("avatars/") for k in _current_keys(s3, profile))
    assert any(k.startswith("logos/") for k in _current_keys(s3, profile))
    assert any(k.startswith("vc-reports/") for k in _current_keys(s3, reports))
    # a 0-byte object, awkward keys and a key that is a prefix of another key
    sizes = {o["Key"]: o["Size"] for o in s3.list_objects_v2(Bucket=uploads)["Contents"]}
    assert 0 in sizes.values()
    assert any(" " in k for k in current) and any("+" in k for k in current)
    assert any(not k.isascii() for k in current)
    assert any(a != b and b.startswith(a) for a in current for b in current)

    # database rows reference existing keys, with their real size and type
    rows = _db_rows(app_db)
    assert len({r[1] for r in rows["user_uploads"]}) >= 4
    with psycopg.connect(app_db) as conn:
        cur = conn.execute("SELECT user_id, s3_bucket, s3_key, s3_url, content_type, file_size FROM user_uploads")
        for user_id, bucket, key, url, ctype, size in cur:
            assert key.startswith(f"user-uploads/{user_id}/"), key
            head = s3.head_object(Bucket=bucket, Key=key)
            assert (head["ContentLength"], head["ContentType"]) == (size, ctype), key
            assert _key_from_url(url, bucket) == key
        profiles = conn.execute("SELECT user_id, avatar_s3_url, logo_s3_url FROM business_profiles").fetchall()
    assert {p[0] for p in profiles} >= users
    for _, *urls in profiles:
        for url in urls:
            s3.head_object(Bucket=profile, Key=_key_from_url(url, profile))


# --------------------------------------------------------------------------- python -m devstack up|down
def _run(args, env, timeout=120):
    proc = subprocess.run(
        [sys.executable, "-m", "devstack", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, f"devstack {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _sourced(env_file: Path) -> dict[str, str]:
    """The variables a clean bash gets from `source env_file`."""
    out = subprocess.run(
        ["env", "-i", "PATH=/usr/bin:/bin", "bash", "-c", 'set -eu; source "$1"; env -0', "bash", str(env_file)],
        capture_output=True, check=True, timeout=30,
    ).stdout.decode()
    return dict(item.split("=", 1) for item in out.split("\0") if item)


def _pid_alive(pid):
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
def devstack_env(tmp_path, pg_admin_uri):
    """Environment for `python -m devstack` with its own state dir, S3 port and app database."""
    state_dir = tmp_path / "stack"
    db = f"dp_test_devstack_{os.getpid()}"
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(["plugins", "."]),
        DATAPROTECTION_DEVSTACK_DIR=str(state_dir),
        DATAPROTECTION_DEVSTACK_DB=db,
        DATAPROTECTION_PG_URI=pg_admin_uri,
        DATAPROTECTION_S3_PORT=str(services.free_port()),
    )
    env.pop("DATAPROTECTION_DEVSTACK_ENV_FILE", None)  # the default: `<state dir>.env`
    yield env, state_dir
    # whatever happened: stop what this test's stack recorded (by pid), drop its database
    state_file = state_dir / "state.json"
    if state_file.exists() and any(k.endswith("_pid") for k in json.loads(state_file.read_text())):
        subprocess.run([sys.executable, "-m", "devstack", "down"], cwd=REPO, env=env, capture_output=True, timeout=60)
        state = json.loads(state_file.read_text())
        for key in ("replicator_pid", "moto_pid"):
            pid = state.get(key)
            started = state.get(f"{key}_started")
            if pid and started and _pid_alive(pid) and abs(psutil.Process(pid).create_time() - started) < 1:
                psutil.Process(pid).kill()
    services.drop_database(pg_admin_uri, db)


def _mentions(path: Path, needles) -> list[str]:
    """Which of `needles` a file mentions (a developer's stack may be running: compare, don't snapshot)."""
    text = path.read_text(errors="replace") if path.is_file() else ""
    return [n for n in needles if n in text]


def test_devstack_up_twice_then_down(devstack_env, plan):
    env, state_dir = devstack_env
    env_file = state_dir.with_name("stack.env")  # default: beside the state directory

    _run(["up"], env)
    state = json.loads((state_dir / "state.json").read_text())
    pids = {k: state[k] for k in ("moto_pid", "replicator_pid")}
    assert all(_pid_alive(p) for p in pids.values()), state
    assert state["moto_url"] == f"http://127.0.0.1:{env['DATAPROTECTION_S3_PORT']}"
    assert "pg_pid" not in state, "an external PostgreSQL was given: no embedded one may start"

    _run(["up"], env)  # harmless: reuses the running processes
    again = json.loads((state_dir / "state.json").read_text())
    assert {k: again[k] for k in pids} == pids

    # the env file: sourceable by a clean bash, pointing at this stack
    assert env_file.exists()
    sourced = _sourced(env_file)
    for var in ("AIRFLOW_HOME", "DATAPROTECTION_CONFIG", "AIRFLOW_CONN_AWS_DEFAULT", "AIRFLOW_CONN_APP_DB"):
        assert sourced.get(var), var
    assert Path(sourced["AIRFLOW_HOME"]).is_relative_to(state_dir)
    assert Path(sourced["DATAPROTECTION_CONFIG"]) == plan_path()
    assert json.loads(sourced["AIRFLOW_CONN_AWS_DEFAULT"])["extra"]["endpoint_url"] == state["moto_url"]
    app_conn = json.loads(sourced["AIRFLOW_CONN_APP_DB"])
    assert (app_conn["conn_type"], app_conn["schema"]) == ("postgres", env["DATAPROTECTION_DEVSTACK_DB"])
    with psycopg.connect(sourced["DATAPROTECTION_APP_DB_URI"]) as conn:
        assert conn.execute("SELECT count(*) FROM user_uploads").fetchone()[0] > 0

    # the buckets exist in the stack's moto server, and the replicator fills the replicas
    session = boto3.session.Session()
    primary = make_client(plan.regions.primary, endpoint_url=state["moto_url"], session=session)
    backup = make_client(plan.regions.backup, endpoint_url=state["moto_url"], session=session)
    for bucket, region in _all_buckets(plan):
        (primary if region == plan.regions.primary else backup).head_bucket(Bucket=bucket)
    expected = {
        b.replica: set().union(*(_current_keys(primary, b.name, p) for p in b.replication.prefixes))
        for b in plan.source_buckets
    }
    assert all(expected.values())
    deadline = time.monotonic() + 10
    while (got := {r: _current_keys(backup, r) for r in expected}) != expected and time.monotonic() < deadline:
        time.sleep(0.5)
    assert got == expected, "the replication emulator did not fill the replicas within 10 s"

    _run(["down"], env)
    assert not any(_pid_alive(p) for p in pids.values()), "down left a process of the stack running"
    assert not env_file.exists()
    _run(["down"], env)  # harmless too
    # a developer's stack (<repo>/.devstack, <repo>/.devstack.env) never heard of this one
    dev_state = REPO / ".devstack" / "state.json"
    dev_values = set(json.loads(dev_state.read_text()).values()) if dev_state.is_file() else set()
    assert dev_values.isdisjoint({state["moto_url"], *pids.values()})
    assert _mentions(REPO / ".devstack.env", [state["moto_url"], env["DATAPROTECTION_DEVSTACK_DB"]]) == []
