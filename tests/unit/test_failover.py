"""Failover core against the moto server: Route 53 records, Lambda configuration, canary reads."""

from __future__ import annotations

import pytest

from dataprotection import failover as fo
from devstack.replication import ReplicationEmulator
from devstack.seed import create_buckets
from devstack.seed_failover import UNMANAGED_VARIABLES, seed_failover


@pytest.fixture
def world(s3_endpoint, s3, s3_backup, plan, boto_session):
    create_buckets(plan, s3, s3_backup)
    seed_failover(plan, s3, s3_endpoint)
    ReplicationEmulator(plan, s3_endpoint).run_once()
    clients = fo.Clients(
        route53=boto_session.client("route53", region_name="us-east-1", endpoint_url=s3_endpoint),
        lambda_=boto_session.client("lambda", region_name=fo.function_region(plan), endpoint_url=s3_endpoint),
        s3={plan.regions.primary: s3, plan.regions.backup: s3_backup},
    )
    return clients


def state(plan, clients):
    """Every record of the zone and the full environment of both functions."""
    zone = fo.zone_id(clients.route53, plan.failover.hosted_zone)
    records = clients.route53.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
    envs = {name: clients.lambda_.get_function_configuration(FunctionName=name)["Environment"]
            for name in (plan.failover.function_name, plan.drill.function_name)}
    return records, envs


def test_dry_run_reports_changes_and_changes_nothing(plan, world):
    before = state(plan, world)
    report = fo.run(plan, world, fo.scope(plan), "failover", dry_run=True)
    assert state(plan, world) == before
    assert report["dry_run"] is True and report["verified"] is None
    assert report["record"]["changes"] is True
    assert report["record"]["desired"] == [f"{plan.bucket(plan.failover.endpoint_bucket).replica}.s3."
                                           f"{plan.regions.backup}.amazonaws.com"]
    assert report["function"]["changed_variables"][plan.failover.region_variable] == {
        "from": plan.regions.primary, "to": plan.regions.backup}
    assert [s["step"] for s in report["steps"]] == ["plan"]


def test_failover_then_failback_restores_exactly(plan, world):
    before = state(plan, world)
    sc = fo.scope(plan)
    out = fo.run(plan, world, sc, "failover", dry_run=False)
    assert out["verified"] is True, fo.failed_checks(out)
    zone = fo.zone_id(world.route53, plan.failover.hosted_zone)
    rec = fo.read_record(world.route53, zone, sc.record_name, "CNAME")
    replica = plan.bucket(plan.failover.endpoint_bucket).replica
    assert rec["ResourceRecords"] == [{"Value": f"{replica}.s3.{plan.regions.backup}.amazonaws.com"}]
    env = fo.read_environment(world.lambda_, sc.function_name)
    assert env == {**UNMANAGED_VARIABLES, plan.failover.region_variable: plan.regions.backup,
                   **{v: plan.bucket(b).replica for v, b in plan.failover.bucket_variables.items()}}
    readable = [c for c in out["checks"] if c["check"] == "bucket_readable"]
    assert {c["bucket"] for c in readable} == {b.replica for b in plan.source_buckets if b.replica}
    assert [s["step"] for s in out["steps"]] == ["plan", "update_dns_record", "update_function_configuration",
                                                "verify_dns_record", "verify_function_configuration",
                                                "verify_buckets_readable"]
    assert all(s["started_at"] <= s["finished_at"] for s in out["steps"])
    # the drill's record and function are untouched by a production failover
    assert state(plan, world)[1][plan.drill.function_name] == before[1][plan.drill.function_name]

    back = fo.run(plan, world, sc, "failback", dry_run=False)
    assert back["verified"] is True, fo.failed_checks(back)
    assert state(plan, world) == before


def _purge(client, bucket, key=None):
    versions = client.list_object_versions(Bucket=bucket, **({"Prefix": key} if key else {}))
    for v in versions.get("Versions", []) + versions.get("DeleteMarkers", []):
        client.delete_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])


def test_verification_fails_when_a_replica_is_unreadable(plan, world, s3_backup):
    replica = plan.source_buckets[1].replica
    _purge(s3_backup, replica, fo.canary_key(plan, plan.source_buckets[1].name))
    out = fo.run(plan, world, fo.scope(plan), "failover", dry_run=False)
    assert out["verified"] is False
    bad = fo.failed_checks(out)
    assert [(c["check"], c["bucket"]) for c in bad] == [("bucket_readable", replica)]
    assert "NoSuchKey" in bad[0]["error"]

    # a replica bucket that is gone altogether
    gone = plan.source_buckets[2].replica
    _purge(s3_backup, gone)
    s3_backup.delete_bucket(Bucket=gone)
    out = fo.run(plan, world, fo.scope(plan), "failover", dry_run=False)
    assert {c["bucket"] for c in fo.failed_checks(out)} == {replica, gone}


def test_canary_with_other_bytes_fails(plan, world, s3_backup):
    b = plan.source_buckets[0]
    key = fo.canary_key(plan, b.name)
    meta = s3_backup.head_object(Bucket=b.replica, Key=key)["Metadata"]
    s3_backup.put_object(Bucket=b.replica, Key=key, Body=b"tampered", Metadata=meta)
    check = fo.read_canary(s3_backup, b.replica, key)
    assert check["ok"] is False and "!= recorded" in check["error"]


def test_drill_scope_only_touches_drill_resources(plan, world):
    before = state(plan, world)
    out = fo.run(plan, world, fo.scope(plan, "drill"), "failover", dry_run=False)
    assert out["verified"] is True
    after = state(plan, world)
    assert after[1][plan.failover.function_name] == before[1][plan.failover.function_name]
    prod = [r for r in after[0] if r["Name"] == plan.failover.record_name]
    assert prod == [r for r in before[0] if r["Name"] == plan.failover.record_name]
    assert after[1][plan.drill.function_name] != before[1][plan.drill.function_name]


def test_bad_direction_and_missing_zone(plan, world):
    with pytest.raises(ValueError, match="direction: 'sideways' is not allowed"):
        fo.run(plan, world, fo.scope(plan), "sideways", dry_run=True)
    with pytest.raises(fo.FailoverError, match="hosted zone 'nowhere.example.' not found"):
        fo.zone_id(world.route53, "nowhere.example.")
