"""s3_regional_failover end to end with dag.test() against the moto server (Route 53, Lambda, S3)."""

from __future__ import annotations

import json

import pytest

from dataprotection import failover as fo
from dataprotection.reports import report_key
from devstack.replication import ReplicationEmulator
from devstack.seed import create_buckets
from devstack.seed_failover import seed_failover
from tests.e2e.recovery_world import failover_state

pytestmark = pytest.mark.airflow


@pytest.fixture
def world(s3_endpoint, s3, s3_backup, plan, boto_session):
    create_buckets(plan, s3, s3_backup)
    seed_failover(plan, s3, s3_endpoint)
    ReplicationEmulator(plan, s3_endpoint).run_once()
    return failover_state(plan, boto_session, s3_endpoint)


@pytest.fixture
def dag():
    from dags.s3_regional_failover import dag

    return dag


def _report(s3, plan, run_id, direction):
    key = report_key("regional-failover", run_id, f"-{direction}")
    return json.loads(s3.get_object(Bucket=plan.compliance_bucket, Key=key)["Body"].read())


def test_dry_run_changes_nothing(dag, run_dag, world, s3, plan):
    before = world()
    run = run_dag(dag, conf={"direction": "failover", "dry_run": True})
    assert run.state == "success", run.failed()
    assert world() == before
    report = _report(s3, plan, run.run_id, "failover")
    assert report["dry_run"] is True and report["record"]["changes"] is True
    assert set(report["function"]["changed_variables"]) == {
        *plan.failover.bucket_variables, plan.failover.region_variable}


def test_failover_then_failback_leaves_everything_as_before(dag, run_dag, world, s3, plan):
    before = world()
    over = run_dag(dag, conf={"direction": "failover", "dry_run": False})
    assert over.state == "success", over.failed()
    during = world()
    assert during != before
    prod = [r for r in during[0] if r["Name"] == plan.failover.record_name][0]
    replica = plan.bucket(plan.failover.endpoint_bucket).replica
    assert prod["ResourceRecords"] == [{"Value": f"{replica}.s3.{plan.regions.backup}.amazonaws.com"}]
    report = _report(s3, plan, over.run_id, "failover")
    assert report["verified"] is True and all(c["ok"] for c in report["checks"])
    assert len([c for c in report["checks"] if c["check"] == "bucket_readable"]) == len(
        [b for b in plan.source_buckets if b.replica])

    back = run_dag(dag, conf={"direction": "failback", "dry_run": False})
    assert back.state == "success", back.failed()
    assert world() == before  # full record sets of the zone and the full Environment of both functions


def test_verification_fails_when_a_replica_is_unreadable(dag, run_dag, world, s3, s3_backup, plan):
    b = plan.source_buckets[0]
    key = fo.canary_key(plan, b.name)
    for v in s3_backup.list_object_versions(Bucket=b.replica, Prefix=key).get("Versions", []):
        s3_backup.delete_object(Bucket=b.replica, Key=key, VersionId=v["VersionId"])
    run = run_dag(dag, conf={"direction": "failover", "dry_run": False})
    assert run.state == "failed"
    assert run.tasks == {"switch_and_verify": "failed"}
    report = _report(s3, plan, run.run_id, "failover")
    assert report["verified"] is False
    assert [c["bucket"] for c in fo.failed_checks(report)] == [b.replica]
