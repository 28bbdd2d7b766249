"""Test harness: real services, isolated per test.

- `s3_endpoint`: a session moto server (its own process), reset before every test that uses it.
- `app_db`: a fresh PostgreSQL database per test, cloned from a template holding the app schema.
  The server is DATAPROTECTION_TEST_PG_URI if set, else an embedded one from the pgserver wheel.
- `run_dag`: runs a DAG with `dag.test(run_conf=...)` against a temporary AIRFLOW_HOME whose SQLite
  metadata DB is migrated once per session; returns the run state and each task's final state.
- `fault_proxy`: the fault-injecting proxy (devstack.faultproxy) in front of the moto server.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Airflow reads its configuration at import time: set it before anything imports airflow.
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="dp-test-airflow-"))
os.environ.update(
    {
        "AIRFLOW_HOME": str(_AIRFLOW_HOME),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        # dag.test() runs DAGs found in a bundle: the product DAGs, and the harness's own test DAGs.
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(
            [
                {"name": name, "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                 "kwargs": {"path": str(path)}}
                for name, path in (("dags-folder", REPO / "dags"), ("test-dags", REPO / "tests" / "fixtures"))
            ]
        ),
        "AWS_ACCESS_KEY_ID": "dataprotection-test",
        "AWS_SECRET_ACCESS_KEY": "dataprotection-test",
        "AWS_DEFAULT_REGION": "eu-central-1",
        "DATAPROTECTION_CONFIG": str(REPO / "include" / "config" / "protection.yaml"),
        "AIRFLOW_VAR_DATAPROTECTION_GDPR_HASH_KEY": "test-only-gdpr-hash-key-0123456789abcdef",
    }
)
os.environ.pop("AWS_PROFILE", None)

from dataprotection.config import load_plan  # noqa: E402
from dataprotection.s3client import make_client  # noqa: E402
from devstack import services  # noqa: E402

TEMPLATE_DB = "dp_test_template"
_db_counter = itertools.count()


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_AIRFLOW_HOME, ignore_errors=True)


# --------------------------------------------------------------------------- S3 (moto server)
@pytest.fixture(scope="session")
def moto_url():
    proc, url = services.start_moto()
    plan = load_plan()
    os.environ["DATAPROTECTION_S3_ENDPOINT"] = url
    os.environ["AIRFLOW_CONN_AWS_DEFAULT"] = services.airflow_aws_conn(url, plan.regions.primary)
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def s3_endpoint(moto_url):
    """The moto server URL, with all state wiped before the test."""
    services.reset_moto(moto_url)
    return moto_url


@pytest.fixture
def plan():
    return load_plan()


@pytest.fixture(scope="session")
def boto_session():
    """One boto3 session for the test run (creating one costs ~0.3 s)."""
    import boto3

    return boto3.session.Session()


@pytest.fixture
def s3(s3_endpoint, plan, boto_session):
    """S3 client in the primary region (talking to the moto server)."""
    return make_client(plan.regions.primary, endpoint_url=s3_endpoint, session=boto_session)


@pytest.fixture
def s3_backup(s3_endpoint, plan, boto_session):
    """S3 client in the backup region."""
    return make_client(plan.regions.backup, endpoint_url=s3_endpoint, session=boto_session)


# --------------------------------------------------------------------------- PostgreSQL
@pytest.fixture(scope="session")
def pg_admin_uri():
    external = os.environ.get("DATAPROTECTION_TEST_PG_URI")
    if external:
        uri = external
        server = None
    else:
        import pgserver

        # its own directory (not pytest's tmp dirs, which a concurrent pytest session may prune)
        datadir = Path(tempfile.mkdtemp(prefix="dp-test-pgdata-"))
        server = pgserver.get_server(datadir, cleanup_mode="delete")
        uri = server.get_uri()
    template = services.create_database(uri, TEMPLATE_DB, replace=True)
    services.apply_schema(template)
    yield uri
    services.drop_database(uri, TEMPLATE_DB)
    if server is not None:
        server.cleanup()


@pytest.fixture
def app_db(pg_admin_uri, monkeypatch):
    """Conninfo of a database of its own for this test (app schema applied, no rows)."""
    name = f"dp_test_{os.getpid()}_{next(_db_counter)}"
    uri = services.create_database(pg_admin_uri, name, template=TEMPLATE_DB, replace=True)
    monkeypatch.setenv("AIRFLOW_CONN_APP_DB", services.airflow_pg_conn(uri))
    monkeypatch.setenv("DATAPROTECTION_APP_DB_URI", uri)
    yield uri
    services.drop_database(pg_admin_uri, name)


# --------------------------------------------------------------------------- Airflow
@pytest.fixture(scope="session")
def airflow_db():
    """Migrate the session's SQLite metadata DB once (about 7 s)."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        capture_output=True,
        env=os.environ.copy(),
    )
    return _AIRFLOW_HOME


@dataclass
class DagRunResult:
    state: str
    tasks: dict[str, str]  # "task_id" or "task_id[map_index]" -> final state
    run_id: str

    def failed(self) -> list[str]:
        return sorted(t for t, s in self.tasks.items() if s not in ("success", "skipped"))


@pytest.fixture
def run_dag(airflow_db):
    """Run a DAG in-process with dag.test(); return a DagRunResult."""

    def _run(dag, conf: dict | None = None, logical_date=None) -> DagRunResult:
        kwargs = {"run_conf": conf or {}}
        if logical_date is not None:
            kwargs["logical_date"] = logical_date
        dagrun = dag.test(**kwargs)
        tasks = {}
        for ti in dagrun.get_task_instances():
            name = ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"
            tasks[name] = str(ti.state)
        return DagRunResult(state=str(dagrun.state), tasks=tasks, run_id=dagrun.run_id)

    return _run


# --------------------------------------------------------------------------- fault proxy
@pytest.fixture(scope="session")
def _fault_proxy_session(moto_url):
    from devstack.faultproxy import FaultProxy

    proxy = FaultProxy.start(moto_url)
    yield proxy
    proxy.stop()


@pytest.fixture
def fault_proxy(_fault_proxy_session, s3_endpoint):
    """The fault proxy in front of a freshly reset moto server; faults off, stats zeroed."""
    _fault_proxy_session.configure()
    _fault_proxy_session.reset_stats()
    yield _fault_proxy_session
    _fault_proxy_session.configure()
