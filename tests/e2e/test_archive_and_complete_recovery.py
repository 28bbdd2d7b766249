"""s3_weekly_archive and s3_complete_recovery end to end with dag.test() against the moto server."""

import json
from datetime import UTC, datetime

import pytest
from botocore.exceptions import ClientError

from dataprotection.snapshot import iter_manifest, read_summary
from devstack.seed import create_buckets, seed_objects

pytestmark = pytest.mark.airflow


def _json(s3, bucket, key):
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def _live(s3, bucket):
    out = {}
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for v in page.get("Versions", []):
            if v["IsLatest"] and not v["Key"].startswith(("temp/", "tmp/")):
                out[v["Key"]] = s3.get_object(Bucket=bucket, Key=v["Key"])["Body"].read()
    return out


def _all(s3, bucket):
    try:
        pages = list(s3.get_paginator("list_objects_v2").paginate(Bucket=bucket))
    except ClientError:
        return None
    return {o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
            for p in pages for o in p.get("Contents", [])}


def test_weekly_archive_then_complete_recovery(run_dag, s3, s3_backup, plan):
    from dags.s3_complete_recovery import dag as recovery_dag
    from dags.s3_weekly_archive import dag as weekly_dag

    create_buckets(plan, s3, s3_backup)
    seed_objects(plan, s3)
    archived = [b.name for b in plan.archived_buckets]
    archive = plan.archive.bucket

    week1 = run_dag(weekly_dag, logical_date=datetime(2026, 11, 29, 3, tzinfo=UTC))
    assert week1.state == "success", week1.failed()
    state_week1 = {b: _live(s3, b) for b in archived}
    s3.put_object(Bucket=archived[0], Key="user-uploads/u1001/menu.pdf", Body=b"menu v4")
    week2 = run_dag(weekly_dag, logical_date=datetime(2026, 12, 6, 3, tzinfo=UTC))
    assert week2.state == "success", week2.failed()

    w48, w49 = "2026-W48", "2026-W49"
    manifest = _json(s3, archive, f"manifests/weekly/{w49}.json")
    assert manifest["archive_week"] == w49 and manifest["storage_class"] == "DEEP_ARCHIVE"
    assert manifest["retention_years"] == plan.archive.retention_years
    assert manifest["totals"]["copied"] == 1, "the second week copies only what changed"
    assert read_summary(s3, archive, archived[0], w48)["copied"] == len(state_week1[archived[0]])
    entry = next(iter_manifest(s3, archive, archived[0], w49))
    with pytest.raises(ClientError, match="InvalidObjectState"):
        s3.get_object(Bucket=archive, Key=entry.location)

    # dry run: a report, nothing else
    dry = run_dag(recovery_dag, conf={"recovery_date": "2026-12-01", "dry_run": True})
    assert dry.state == "success", dry.failed()
    assert dry.tasks["stop_if_dry_run"] == "success" and dry.tasks["create_target_buckets"] == "skipped"
    assert all(_all(s3, f"{b}-recovered") is None for b in archived)
    assert "Restore" not in s3.head_object(Bucket=archive, Key=entry.location)
    reports = s3.list_objects_v2(Bucket=plan.compliance_bucket, Prefix="reports/complete-recovery/")["Contents"]
    report = _json(s3, plan.compliance_bucket, reports[0]["Key"])
    assert report["dry_run"] is True
    assert [s["snapshot_id"] for s in report["snapshots"]] == [w48] * len(archived)
    assert report["estimate"]["objects"] == sum(len(v) for v in state_week1.values())

    # real recovery as of week 48 (moto restores instantly unless told otherwise)
    conf = {"recovery_date": "2026-12-01", "dry_run": False, "tier": "Bulk", "restore_days": 2}
    real = run_dag(recovery_dag, conf=conf)
    assert real.state == "success", real.failed()
    for bucket in archived:
        target = f"{bucket}-recovered"
        assert _all(s3, target) == state_week1[bucket], bucket
        assert s3.get_bucket_versioning(Bucket=target)["Status"] == "Enabled"
        assert s3.get_public_access_block(Bucket=target)["PublicAccessBlockConfiguration"]["BlockPublicAcls"]
    done = [r for r in s3.list_objects_v2(Bucket=plan.compliance_bucket,
                                          Prefix="reports/complete-recovery/")["Contents"]]
    final = max((_json(s3, plan.compliance_bucket, r["Key"]) for r in done), key=lambda d: d["finished_at"]
                if not d["dry_run"] else "")
    assert final["objects"] == final["verified"] == sum(len(v) for v in state_week1.values())
    assert set(final["phases_s"]) == {"create_targets", "restore_requests", "wait_for_restore",
                                      "copy_back_and_verify"}

    # re-running is harmless: same content, no new versions in the targets
    versions_before = {b: len(s3.list_object_versions(Bucket=f"{b}-recovered").get("Versions", []))
                       for b in archived}
    again = run_dag(recovery_dag, conf=conf)
    assert again.state == "success", again.failed()
    for bucket in archived:
        assert _all(s3, f"{bucket}-recovered") == state_week1[bucket]
        assert len(s3.list_object_versions(Bucket=f"{bucket}-recovered").get("Versions", [])) == \
            versions_before[bucket]
