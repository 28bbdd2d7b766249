"""quarterly_dr_drill end to end: healthy replication (RPO 0, every scenario passes) and an injected
replication gap (canaries written but not replicated: non-zero RPO, failed RPO check)."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime

import pytest
import yaml

from dataprotection.config import DEFAULT_PLAN_PATH, load_plan
from dataprotection.reports import report_key
from devstack.replication import ReplicationEmulator
from devstack.seed import create_buckets, seed_objects
from devstack.seed_failover import seed_failover
from tests.e2e.recovery_world import failover_state

pytestmark = pytest.mark.airflow


def _plan_copy(tmp_path, monkeypatch, rpo_minutes: int, wait: int):
    data = yaml.safe_load(DEFAULT_PLAN_PATH.read_text())
    data["targets"]["regional_outage"]["rpo_minutes"] = rpo_minutes
    data["drill"]["replication_wait_seconds"] = wait
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("DATAPROTECTION_CONFIG", str(path))
    return load_plan()


@pytest.fixture
def world(s3_endpoint, s3, s3_backup, boto_session):
    def build(plan):
        create_buckets(plan, s3, s3_backup)
        seed_objects(plan, s3)
        seed_failover(plan, s3, s3_endpoint)
        ReplicationEmulator(plan, s3_endpoint).run_once()  # replicas up to date before the drill
        return failover_state(plan, boto_session, s3_endpoint)
    return build


def _report(s3, plan, run_id):
    return json.loads(s3.get_object(Bucket=plan.compliance_bucket,
                                    Key=report_key("dr-drill", run_id))["Body"].read())


def test_healthy_drill_passes_with_rpo_zero(run_dag, world, s3, plan, s3_endpoint, tmp_path, monkeypatch):
    plan = _plan_copy(tmp_path, monkeypatch, rpo_minutes=0, wait=30)
    state = world(plan)
    before = state()
    from dags.quarterly_dr_drill import dag

    stop = threading.Event()
    emulator = ReplicationEmulator(plan, s3_endpoint)

    def replicate():  # the replication the dev stack runs in a loop
        while not stop.wait(0.3):
            emulator.run_once()

    thread = threading.Thread(target=replicate, daemon=True)
    thread.start()
    started = datetime.now(UTC)
    try:
        run = run_dag(dag, logical_date=datetime(2027, 1, 1, 5, 0, tzinfo=UTC))
    finally:
        stop.set()
        thread.join(10)
    finished = datetime.now(UTC)
    assert run.state == "success", run.failed()
    report = _report(s3, plan, run.run_id)
    assert report["passed"] is True and report["issues"] == []
    assert {r["scenario"]: r["passed"] for r in report["scenarios"]} == {
        "failover": True, "data_integrity": True, "rpo": True, "rto": True, "failback": True}
    assert report["rpo_seconds"] == 0.0 and report["rpo"]["missing"] == []
    assert report["rpo"]["canaries"] == plan.drill.canaries * len([b for b in plan.source_buckets if b.critical])
    # measured, from this run's clock
    outage = datetime.fromisoformat(report["outage_started_at"])
    verified = datetime.fromisoformat(report["failover_verified_at"])
    assert started <= outage <= verified <= finished
    assert report["rto_seconds"] == pytest.approx((verified - outage).total_seconds(), abs=0.01)
    assert 0 < report["rto_seconds"] < 30
    assert report["primary_refused_calls_during_outage"] is True
    assert report["next_drill"] == "2027-04-01T05:00:00Z"  # the next quarter start after this run
    assert report["targets"]["rto_seconds"] == plan.targets["regional_outage"].rto_minutes * 60
    assert report["failover"]["scope"] == "drill" and report["failback"]["verified"] is True
    # production record and function untouched; drill ones back as before
    assert state() == before


def test_replication_gap_gives_nonzero_rpo_and_fails(run_dag, world, s3, s3_backup, plan, tmp_path, monkeypatch):
    plan = _plan_copy(tmp_path, monkeypatch, rpo_minutes=0, wait=1)
    state = world(plan)
    before = state()
    from dags.quarterly_dr_drill import dag

    run = run_dag(dag)  # the emulator does not run after the canaries are written: a replication gap
    assert run.state == "failed"
    assert run.tasks["write_report"] == "failed" and run.tasks["failback"] == "success"
    report = _report(s3, plan, run.run_id)
    checks = {r["scenario"]: r for r in report["scenarios"]}
    assert checks["rpo"]["passed"] is False and checks["rpo"]["target"] == 0
    assert report["rpo_seconds"] > 0 and checks["rpo"]["measured"] == report["rpo_seconds"]
    missing = report["rpo"]["missing"]
    assert len(missing) == report["rpo"]["canaries"] > 0
    oldest = min(datetime.fromisoformat(m["written_at"]) for m in missing)
    measured_at = datetime.fromisoformat(report["rpo"]["measured_at"])
    assert report["rpo_seconds"] == pytest.approx((measured_at - oldest).total_seconds(), abs=0.01)
    assert checks["data_integrity"]["passed"] is False
    assert checks["data_integrity"]["measured"]["missing"] == len(missing)
    assert checks["failover"]["passed"] is True and checks["failback"]["passed"] is True
    assert any("canary not replicated" in i for i in report["issues"])
    assert state() == before
    # the drill's canaries are removed again from the sources
    for m in missing:
        assert not s3.list_object_versions(Bucket=m["bucket"], Prefix=m["key"]).get("Versions")
