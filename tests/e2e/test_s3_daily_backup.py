"""s3_daily_backup end to end with dag.test() against the moto server and a real PostgreSQL."""

import gzip
import hashlib
import json
from datetime import UTC, datetime

import psycopg
import pytest

from dataprotection.snapshot import iter_manifest, read_summary
from devstack.seed import seed_all

pytestmark = pytest.mark.airflow


@pytest.fixture
def dag():
    from dags.s3_daily_backup import dag

    return dag


def _json(s3, bucket, key):
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def test_daily_backup_end_to_end(dag, run_dag, s3, s3_backup, app_db, plan):
    seed_all(plan, s3, s3_backup, app_db)
    day1 = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)
    result = run_dag(dag, logical_date=day1)
    assert result.state == "success", result.failed()
    assert result.tasks["snapshot_shard[0]"] == "success"
    assert len([t for t in result.tasks if t.startswith("snapshot_shard[")]) == len(plan.bucket_names)

    backup = plan.backup.bucket
    sid = "2026-12-02"
    for bucket in plan.bucket_names:
        summary = read_summary(s3, backup, bucket, sid)
        assert summary is not None, bucket
        live = sorted(
            v["Key"] for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket)
            for v in page.get("Versions", []) if v["IsLatest"] and not v["Key"].startswith(("temp/", "tmp/"))
        )
        assert [e.key for e in iter_manifest(s3, backup, bucket, sid)] == live
        assert summary["copied"] == len(live) and summary["logical_time"] == "2026-12-02T02:00:00Z"

    manifest = _json(s3, backup, f"manifests/daily/{sid}.json")
    assert manifest["backup_date"] == sid and manifest["backup_type"] == "daily"
    assert manifest["buckets"] == plan.bucket_names
    assert manifest["retention_days"] == plan.backup.retention_days
    assert manifest["totals"]["objects"] == sum(s["objects"] for s in manifest["snapshots"]) > 0
    assert {t["table"] for t in manifest["tables"]} == {"user_uploads", "business_profiles"}

    # table exports match the database: row counts and sha256 of the CSV
    with psycopg.connect(app_db) as conn:
        for export in manifest["tables"]:
            rows = conn.execute(f"SELECT count(*) FROM {export['table']}").fetchone()[0]  # noqa: S608 - fixed names
            assert export["rows"] == rows
            csv = gzip.decompress(s3.get_object(Bucket=backup, Key=export["key"])["Body"].read())
            assert hashlib.sha256(csv).hexdigest() == export["sha256"]
            assert csv.count(b"\n") == rows + 1

    # next day, nothing changed but one upload: one copy
    s3.put_object(Bucket=plan.bucket_names[0], Key="user-uploads/u1001/new.pdf", Body=b"new")
    day2 = datetime(2026, 12, 3, 2, 0, tzinfo=UTC)
    second = run_dag(dag, logical_date=day2)
    assert second.state == "success", second.failed()
    totals = _json(s3, backup, "manifests/daily/2026-12-03.json")["totals"]
    assert totals["copied"] == 1
    assert totals["objects"] == manifest["totals"]["objects"] + 1
