"""Backup health checks (core) against the moto server, with real snapshots of seeded demo data."""

import random
from datetime import UTC, date, datetime, timedelta

import pytest

from dataprotection import backup, monitoring
from dataprotection.manifest import summary_key
from dataprotection.sampling import reservoir
from dataprotection.snapshot import iter_manifest, read_summary
from tests.e2e.recovery_world import protected_world

DAY = date(2026, 12, 3)


@pytest.fixture
def world(plan, s3, s3_backup, s3_endpoint, boto_session):
    """Seeded buckets, protection applied, a daily snapshot of every bucket and a weekly archive."""
    return protected_world(plan, s3, s3_backup, s3_endpoint, boto_session, DAY)


def test_snapshot_freshness(plan, s3, world):
    bucket = plan.bucket_names[0]
    ok = monitoring.snapshot_freshness(s3, plan, bucket, world + timedelta(hours=1))
    assert ok["ok"] and 0.9 < ok["measured"] < 1.1 and ok["threshold"] == "< 26 h"
    assert ok["check"] == f"snapshot_freshness:{bucket}" and ok["snapshot_id"] == "2026-12-03"
    old = monitoring.snapshot_freshness(s3, plan, bucket, world + timedelta(hours=27))
    assert not old["ok"] and old["measured"] >= 27
    s3.delete_object(Bucket=plan.backup.bucket, Key=summary_key(bucket, "2026-12-03"))
    missing = monitoring.snapshot_freshness(s3, plan, bucket, world + timedelta(hours=1))
    assert not missing["ok"] and missing["measured"] is None and "no summary.json" in missing["detail"]


def test_archive_freshness(plan, s3, world):
    bucket = plan.archived_buckets[0].name
    assert monitoring.archive_freshness(s3, plan, bucket, world + timedelta(days=7))["ok"]
    old = monitoring.archive_freshness(s3, plan, bucket, world + timedelta(days=8, hours=1))
    assert not old["ok"] and old["measured"] > 8 * 24 and old["threshold"] == "< 192 h"


def test_replication_config(plan, s3, world):
    bucket = plan.source_buckets[0].name
    assert monitoring.replication_config(s3, plan, bucket)["ok"]
    s3.delete_bucket_replication(Bucket=bucket)
    gone = monitoring.replication_config(s3, plan, bucket)
    assert not gone["ok"] and gone["measured"] == "missing"
    # pointing at another bucket's replica is as wrong as no configuration
    other = s3.get_bucket_replication(Bucket=plan.source_buckets[1].name)["ReplicationConfiguration"]
    s3.put_bucket_replication(Bucket=bucket, ReplicationConfiguration=other)
    wrong = monitoring.replication_config(s3, plan, bucket)
    assert not wrong["ok"] and wrong["measured"]["rules"][0]["destination"].endswith(plan.source_buckets[1].replica)


def _spot(s3, plan, store, buckets, storage_class, **kw):
    return monitoring.spot_check(s3, store, buckets, sample=kw.pop("sample", 100), seed="run-1", check="spot",
                                 storage_class=storage_class, **kw)


def test_spot_check_healthy_then_deleted_or_overwritten_copies(plan, s3, world):
    store, bucket = plan.backup.bucket, plan.bucket_names[0]
    entries = list(iter_manifest(s3, store, bucket, "2026-12-03"))
    healthy = _spot(s3, plan, store, plan.bucket_names, plan.backup.storage_class)
    assert healthy["ok"] and healthy["checked"] == sum(
        read_summary(s3, store, b, "2026-12-03")["objects"] for b in plan.bucket_names)

    victim, overwritten = entries[0], next(e for e in entries[1:] if e.size > 0)
    s3.delete_object(Bucket=store, Key=victim.location)
    s3.put_object(Bucket=store, Key=overwritten.location, Body=b"x" * overwritten.size,
                  StorageClass=plan.backup.storage_class, ChecksumAlgorithm="SHA256")  # same size, other bytes
    bad = _spot(s3, plan, store, [bucket], plan.backup.storage_class)
    problems = {f["key"]: f["problem"] for f in bad["failures"]}
    assert not bad["ok"] and bad["failed"] == 2 and bad["measured"] == f"2 of {len(entries)} stored copies bad"
    assert problems[victim.key] == "stored copy missing"
    assert problems[overwritten.key].startswith("sha256 ")


def test_spot_check_of_archives_uses_head_only(plan, s3, world):
    store = plan.archive.bucket
    archived = [b.name for b in plan.archived_buckets]
    sid = backup.snapshot_id("weekly", DAY)
    entry = next(iter_manifest(s3, store, archived[0], sid))
    assert s3.head_object(Bucket=store, Key=entry.location)["StorageClass"] == "DEEP_ARCHIVE"
    assert _spot(s3, plan, store, archived, plan.archive.storage_class)["ok"]  # no GET: it would fail on DEEP_ARCHIVE
    s3.put_object(Bucket=store, Key=entry.location, Body=b"replaced", StorageClass="DEEP_ARCHIVE")
    bad = _spot(s3, plan, store, archived, plan.archive.storage_class)
    assert not bad["ok"] and bad["failures"][0]["key"] == entry.key


def test_sample_is_random_but_reproducible_and_asset_buckets_are_checked_fully(plan, s3, world):
    items = list(range(1000))
    a = reservoir(items, 10, random.Random("seed-a"))
    assert len(a) == 10 and a == reservoir(items, 10, random.Random("seed-a"))
    assert a != reservoir(items, 10, random.Random("seed-b")) and a != items[:10]
    store, bucket = plan.backup.bucket, plan.bucket_names[0]
    total = read_summary(s3, store, bucket, "2026-12-03")["objects"]
    assert _spot(s3, plan, store, [bucket], plan.backup.storage_class, sample=2)["checked"] == 2
    full = _spot(s3, plan, store, [bucket], plan.backup.storage_class, sample=2, full={bucket})
    assert full["checked"] == total > 2 and full["full_buckets"] == [bucket]


def test_spot_check_without_any_snapshot_fails(plan, s3, world):
    s3.delete_object(Bucket=plan.backup.bucket, Key=summary_key(plan.bucket_names[2], "2026-12-03"))
    result = _spot(s3, plan, plan.backup.bucket, plan.bucket_names, plan.backup.storage_class)
    assert not result["ok"] and f"no complete snapshot of {plan.bucket_names[2]}" in result["detail"]


def test_health_report():
    checks = [monitoring.result("a", True, 1, "< 2"), monitoring.result("b", False, 3, "< 2", "too old")]
    doc = monitoring.health_report(checks, "run-1", datetime(2026, 12, 3, 5, tzinfo=UTC))
    assert doc["healthy"] is False and doc["failed"] == ["b"] and doc["run_time"] == "2026-12-03T05:00:00Z"
    assert doc["checks"][1] == {"check": "b", "ok": False, "measured": 3, "threshold": "< 2", "detail": "too old"}
