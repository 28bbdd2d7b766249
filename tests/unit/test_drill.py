"""Drill core against the moto server: the simulated outage, RPO from canaries, integrity counts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dataprotection import drill
from dataprotection.s3client import make_client
from devstack.replication import ReplicationEmulator
from devstack.seed import create_buckets


def test_blocked_region_refuses_every_call(s3_endpoint, plan, s3, s3_backup, boto_session):
    create_buckets(plan, s3, s3_backup)
    blocked = drill.block_region(make_client(plan.regions.primary, endpoint_url=s3_endpoint, session=boto_session),
                                 plan.regions.primary)
    with pytest.raises(drill.RegionUnavailable, match=r"unavailable \(simulated regional outage\): HeadBucket refused"):
        blocked.head_bucket(Bucket=plan.bucket_names[0])
    with pytest.raises(drill.RegionUnavailable):
        blocked.put_object(Bucket=plan.bucket_names[0], Key="x", Body=b"x")
    s3.head_bucket(Bucket=plan.bucket_names[0])  # other clients are not affected
    assert "Contents" not in s3.list_objects_v2(Bucket=plan.bucket_names[0])


def test_rpo_is_the_span_of_unreplicated_writes(s3_endpoint, plan, s3, s3_backup):
    create_buckets(plan, s3, s3_backup)
    ticks = iter(range(1000, 2000, 10))
    first = drill.write_canaries(s3, plan, "t1", clock=lambda: float(next(ticks)))
    ReplicationEmulator(plan, s3_endpoint).run_once()
    later = drill.write_canaries(s3, plan, "t2", clock=lambda: float(next(ticks)))
    canaries = first + later
    assert len(first) == plan.drill.canaries * len(drill.critical_buckets(plan))
    failover_ts = later[-1]["written_ts"] + 5
    rpo = drill.measure_rpo(s3_backup, canaries, failover_ts)
    assert {m["key"] for m in rpo["missing"]} == {c["key"] for c in later}
    assert rpo["rpo_seconds"] == failover_ts - later[0]["written_ts"]
    assert rpo["newest_missing_age_seconds"] == 5
    ReplicationEmulator(plan, s3_endpoint).run_once()
    assert drill.measure_rpo(s3_backup, canaries, failover_ts)["rpo_seconds"] == 0.0
    assert drill.wait_for_replication(s3_backup, canaries, 0) == len(canaries)


def test_integrity_counts_missing_extra_and_mismatched(s3_endpoint, plan, s3, s3_backup):
    create_buckets(plan, s3, s3_backup)
    b = plan.source_buckets[0]
    prefix = b.replication.prefixes[0]
    for name in ("a", "b", "c"):
        s3.put_object(Bucket=b.name, Key=f"{prefix}u1/{name}.txt", Body=name.encode())
    s3.put_object(Bucket=b.name, Key="temp/not-replicated.part", Body=b"t")  # outside the rule: ignored
    ReplicationEmulator(plan, s3_endpoint).run_once()
    assert drill.compare_bucket(s3, s3_backup, b.name, b.replica, [prefix])["missing"] == 0
    s3.put_object(Bucket=b.name, Key=f"{prefix}u1/d.txt", Body=b"d")  # not replicated yet
    s3_backup.put_object(Bucket=b.replica, Key=f"{prefix}u1/zz.txt", Body=b"z")  # only on the replica
    s3_backup.put_object(Bucket=b.replica, Key=f"{prefix}u1/a.txt", Body=b"other bytes")
    got = drill.compare_bucket(s3, s3_backup, b.name, b.replica, [prefix])
    assert (got["missing"], got["extra"], got["mismatched"]) == (1, 1, 1)
    assert got["missing_sample"] == [f"{prefix}u1/d.txt"] and got["mismatched_sample"] == [f"{prefix}u1/a.txt"]
    total = drill.check_integrity(s3, s3_backup, plan)
    assert (total["missing"], total["extra"], total["mismatched"]) == (1, 1, 1)


@pytest.mark.parametrize(("after", "expected"), [
    (datetime(2027, 1, 1, 5, 0, tzinfo=UTC), "2027-04-01T05:00:00Z"),
    (datetime(2026, 11, 15, 12, 0, tzinfo=UTC), "2027-01-01T05:00:00Z"),
    (datetime(2027, 7, 1, 4, 59, tzinfo=UTC), "2027-07-01T05:00:00Z"),
])
def test_next_drill_follows_the_schedule(after, expected):
    assert drill.next_drill("0 5 1 1,4,7,10 *", after) == expected


def test_scenarios_not_run_fail(plan):
    results = drill.scenarios(plan, None, None, None)
    assert [r["passed"] for r in results] == [False] * 5
    assert all("not run" in r["detail"] for r in results)
