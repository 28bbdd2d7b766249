"""s3_temp_cleanup end to end with dag.test(): expired temp objects go with every version and delete
marker (sources and replicas); fresh temp objects and every other key stay; the report counts it."""

import json
import time
from datetime import UTC, timedelta

import pytest

from dataprotection.reports import report_key
from devstack.seed import demo_bytes, seed_all

pytestmark = pytest.mark.airflow
SURVIVORS = ["temp-notes/x", "archive/temp/x", "tempfile.txt", "tmp", "user-uploads/u1/temp/a.txt"]


def versions(client, bucket):
    out = []
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket):
        out += [(v["Key"], v["VersionId"]) for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
    return sorted(out)


def test_temp_cleanup_end_to_end(run_dag, s3, s3_backup, plan):
    from dags.s3_temp_cleanup import dag

    seed_all(plan, s3, s3_backup, None)  # temp/upload-*.part (uploads) and tmp/render-*.tmp (reports)
    uploads, _, reports = plan.bucket_names
    replica = plan.source_buckets[0].replica
    for key in SURVIVORS:
        s3.put_object(Bucket=uploads, Key=key, Body=b"keep")
    s3.put_object(Bucket=uploads, Key="temp/upload-0.part", Body=b"second version of it")
    s3.delete_object(Bucket=uploads, Key="temp/upload-1.part")  # a delete marker on top
    s3_backup.put_object(Bucket=replica, Key="temp/upload-0.part", Body=b"replicated")
    s3_backup.put_object(Bucket=replica, Key="user-uploads/u1/a.txt", Body=b"replicated too")
    newest_old = max(
        v["LastModified"] for c, b in ((s3, uploads), (s3, reports), (s3_backup, replica))
        for page in [c.list_object_versions(Bucket=b)] for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
    ).astimezone(UTC)
    time.sleep(2.1)  # one-second timestamps: the fresh object must be clearly newer
    s3.put_object(Bucket=uploads, Key="temp/fresh.part", Body=b"fresh")
    other = {b: versions(s3, b) for b in (plan.bucket_names[1], plan.backup.bucket)}
    before = versions(s3, uploads)

    run = run_dag(dag, logical_date=newest_old + timedelta(days=7, seconds=1))
    assert run.state == "success", run.failed()

    after = versions(s3, uploads)
    assert {k for k, _ in after} == {k for k, _ in before if not k.startswith("temp/")} | {"temp/fresh.part"}
    assert all(v in before for v in after)  # nothing new, only removals
    assert not any(k.startswith("tmp/") for k, _ in versions(s3, reports))
    assert [k for k, _ in versions(s3_backup, replica)] == ["user-uploads/u1/a.txt"]
    assert {b: versions(s3, b) for b in other} == other
    for key in SURVIVORS:
        assert s3.get_object(Bucket=uploads, Key=key)["Body"].read() == b"keep"

    report = json.loads(s3.get_object(Bucket=plan.compliance_bucket,
                                      Key=report_key("temp-cleanup", run.run_id))["Body"].read())
    by_bucket = {b["bucket"]: b for b in report["buckets"]}
    up = by_bucket[uploads]
    assert up["keys_expired"] == 3 and up["keys_kept"] == 1
    assert up["versions_deleted"] == 4 and up["delete_markers_deleted"] == 1
    seeded = [demo_bytes(f"temp/upload-{i}.part", 1) for i in range(3)]
    assert up["bytes_deleted"] == len(b"second version of it") + sum(len(b) for b in seeded)
    assert by_bucket[reports]["keys_expired"] == 3 and by_bucket[replica]["keys_expired"] == 1
    assert report["totals"]["keys_expired"] == 7 and report["totals"]["errors"] == 0
    assert report["totals"]["left_after_verify"] == 0

    again = run_dag(dag, logical_date=newest_old + timedelta(days=7, seconds=1))
    assert again.state == "success", again.failed()
    assert versions(s3, uploads) == after
