"""backup_monitoring end to end with dag.test(): healthy, then each check broken; the alerts it sends."""

import json
import logging
from datetime import date, timedelta

import pytest

from dataprotection import backup, monitoring
from dataprotection.manifest import summary_key
from dataprotection.notifiers import alert_message
from dataprotection.reports import report_key
from dataprotection.snapshot import iter_manifest, read_summary, take_snapshot
from devstack.seed import seed_all
from tests.e2e.recovery_world import protected_world

pytestmark = pytest.mark.airflow
DAY = date(2026, 12, 3)


@pytest.fixture
def dag():
    from dags.backup_monitoring import dag

    return dag


class Alerts(logging.Handler):
    """Records what the real failure notifier emits on its logger."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def alerts():
    handler = Alerts()
    logger = logging.getLogger("dataprotection.alerts")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


@pytest.fixture
def world(plan, s3, s3_backup, s3_endpoint, boto_session):
    return protected_world(plan, s3, s3_backup, s3_endpoint, boto_session, DAY)


def _report(s3, plan, run_id):
    key = report_key("backup-health", run_id)
    return json.loads(s3.get_object(Bucket=plan.compliance_bucket, Key=key)["Body"].read())


def test_healthy_backups_pass_every_check(dag, run_dag, s3, plan, world, alerts):
    run = run_dag(dag, logical_date=world + timedelta(hours=1))
    assert run.state == "success", run.failed()
    report = _report(s3, plan, run.run_id)
    assert report["healthy"] is True and report["failed"] == []
    names = [c["check"] for c in report["checks"]]
    assert names == ([f"snapshot_freshness:{b}" for b in plan.bucket_names]
                     + [f"archive_freshness:{b.name}" for b in plan.archived_buckets]
                     + [f"replication_config:{b.name}" for b in plan.source_buckets if b.critical]
                     + ["snapshot_spot_check", "archive_spot_check"])
    by_name = {c["check"]: c for c in report["checks"]}
    fresh = by_name[f"snapshot_freshness:{plan.bucket_names[0]}"]
    assert 0.9 < fresh["measured"] < 1.1 and fresh["threshold"] == "< 26 h"
    assert by_name["snapshot_spot_check"]["measured"].startswith("0 of ")
    assert alerts.messages == []


def test_each_broken_check_fails_its_task_and_alerts(dag, run_dag, s3, plan, world, alerts):
    uploads, profile, reports = plan.bucket_names
    # summary missing (reports), replication removed (profile), a stored copy deleted (daily, uploads),
    # a stored copy overwritten with other bytes (archive, profile)
    s3.delete_object(Bucket=plan.backup.bucket, Key=summary_key(reports, DAY.isoformat()))
    s3.delete_bucket_replication(Bucket=profile)
    victim = next(iter_manifest(s3, plan.backup.bucket, uploads, DAY.isoformat()))
    s3.delete_object(Bucket=plan.backup.bucket, Key=victim.location)
    week = backup.snapshot_id("weekly", DAY)
    archived = next(e for e in iter_manifest(s3, plan.archive.bucket, profile, week) if e.size)
    s3.put_object(Bucket=plan.archive.bucket, Key=archived.location, Body=b"?" * archived.size,
                  StorageClass="DEEP_ARCHIVE", ChecksumAlgorithm="SHA256")

    run = run_dag(dag, logical_date=world + timedelta(hours=1))
    assert run.state == "failed"
    assert run.failed() == sorted([f"snapshot_freshness_{reports}", f"replication_config_{profile}",
                                   "snapshot_spot_check", "archive_spot_check", "write_health_report"])
    report = _report(s3, plan, run.run_id)
    assert report["healthy"] is False
    assert report["failed"] == [f"snapshot_freshness:{reports}", f"replication_config:{profile}",
                                "snapshot_spot_check", "archive_spot_check"]
    by_name = {c["check"]: c for c in report["checks"]}
    assert by_name[f"snapshot_freshness:{reports}"]["measured"] is None
    assert by_name[f"replication_config:{profile}"]["measured"] == "missing"
    assert by_name["snapshot_spot_check"]["measured"].startswith("1 of ")
    assert victim.key in by_name["snapshot_spot_check"]["detail"]
    archive_detail = by_name["archive_spot_check"]["detail"]
    assert archived.key in archive_detail and "sha256" in archive_detail
    assert by_name[f"snapshot_freshness:{uploads}"]["ok"] is True

    # the real notifier ran for each failed task, naming the check and its measured value
    assert len(alerts.messages) == 5
    for check, measured in ((f"snapshot_freshness:{reports}", "None"), (f"replication_config:{profile}", "missing"),
                            ("snapshot_spot_check", by_name["snapshot_spot_check"]["measured"])):
        hits = [m for m in alerts.messages if f"check: {check} |" in m]
        assert len(hits) == 1, alerts.messages
        assert f"measured: {measured} |" in hits[0] and "DAG: backup_monitoring" in hits[0]


def test_too_old_snapshots_and_archives_fail(dag, run_dag, s3, plan, world, alerts):
    run = run_dag(dag, logical_date=world + timedelta(days=8, hours=1))
    expected = ([f"snapshot_freshness_{b}" for b in plan.bucket_names]
                + [f"archive_freshness_{b.name}" for b in plan.archived_buckets] + ["write_health_report"])
    assert run.state == "failed" and run.failed() == sorted(expected)
    report = _report(s3, plan, run.run_id)
    old = {c["check"]: c for c in report["checks"]}[f"archive_freshness:{plan.archived_buckets[0].name}"]
    assert old["ok"] is False and old["measured"] > 8 * 24 and old["threshold"] == "< 192 h"
    hit = next(m for m in alerts.messages if f"check: archive_freshness:{plan.archived_buckets[0].name} |" in m)
    assert f"measured: {old['measured']} |" in hit


def test_a_fresh_snapshot_asset_event_verifies_every_entry_of_that_snapshot(plan, s3, s3_backup, s3_endpoint,
                                                                          boto_session):
    """An asset-triggered run (the daily backup's `daily_snapshot__<bucket>` event) checks the whole fresh
    snapshot of that bucket; other buckets, and scheduled runs, get the random sample."""
    from airflow.sdk import Asset

    from dataprotection.operators.monitoring import BackupHealthCheckOperator, buckets_of_asset_events

    seed_all(plan, s3, s3_backup, None)
    many = plan.bucket_names[1]
    for i in range(plan.monitoring.spot_check_sample + 5):
        s3.put_object(Bucket=many, Key=f"logos/extra-{i:03d}.png", Body=b"p" * i)
    for bucket in plan.bucket_names:
        take_snapshot(s3, s3, backup.snapshot_spec(plan, "daily", bucket, DAY.isoformat()))
    total = read_summary(s3, plan.backup.bucket, many, DAY.isoformat())["objects"]
    assert total > plan.monitoring.spot_check_sample

    events = {Asset(name=f"daily_snapshot__{many}", uri=f"s3://{plan.backup.bucket}/snapshots/{many}/"): []}
    assert buckets_of_asset_events(events) == {many} and buckets_of_asset_events({}) == set()
    op = BackupHealthCheckOperator(task_id="snapshot_spot_check", check="snapshot_spot_check")
    when = monitoring.taken_at(read_summary(s3, plan.backup.bucket, many, DAY.isoformat())) + timedelta(hours=1)
    others = sum(min(plan.monitoring.spot_check_sample, read_summary(s3, plan.backup.bucket, b, DAY.isoformat())[
        "objects"]) for b in plan.bucket_names if b != many)
    triggered = op.execute({"run_id": "asset_triggered__1", "data_interval_end": when,
                            "triggering_asset_events": events})
    assert triggered["ok"] and triggered["full_buckets"] == [many] and triggered["checked"] == total + others
    scheduled = op.execute({"run_id": "scheduled__1", "data_interval_end": when, "triggering_asset_events": {}})
    assert scheduled["checked"] == plan.monitoring.spot_check_sample + others


def test_alert_message_names_dag_task_check_and_value():
    from dataprotection.operators.monitoring import HealthCheckFailed

    class TI:
        dag_id, task_id, run_id = "backup_monitoring", "snapshot_freshness_b", "scheduled__x"

    exc = HealthCheckFailed("snapshot_freshness:b", 30.5, "< 26 h", "too old")
    subject, body = alert_message({"ti": TI(), "exception": exc})
    assert subject == "[dataprotection] backup_monitoring.snapshot_freshness_b failed"
    for line in ("DAG: backup_monitoring", "task: snapshot_freshness_b", "check: snapshot_freshness:b",
                 "measured: 30.5", "threshold: < 26 h"):
        assert line in body.splitlines()
