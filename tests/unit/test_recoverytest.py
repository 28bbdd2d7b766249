"""Recovery-test core against the moto server and a real PostgreSQL: scratch space, four scenarios."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest
from botocore.exceptions import ClientError

from dataprotection import recoverytest as rt
from dataprotection.snapshot import iter_manifest
from tests.e2e.recovery_world import backed_up_world

RUN = "scheduled__2026-12-01T00:00:00+00:00"


@pytest.fixture
def world(plan, s3, s3_backup, app_db):
    sid = backed_up_world(plan, s3, s3_backup, app_db)
    with psycopg.connect(app_db, autocommit=True) as conn:
        scratch = rt.create_scratch(s3, conn, plan, RUN)
        yield sid, scratch, conn
        rt.remove_scratch(s3, conn, plan, RUN)


def test_scratch_names_are_unique_per_run_and_valid(plan):
    a, b = rt.scratch_names(plan, RUN), rt.scratch_names(plan, RUN + "x")
    assert a != b and a == rt.scratch_names(plan, RUN)
    assert a[0].startswith(plan.recovery_test.scratch_bucket_prefix + "-") and len(a[0]) <= 63
    assert a[1].startswith(plan.recovery_test.scratch_schema_prefix + "_")


def test_sampling_is_seeded_by_the_run(plan):
    items = list(range(100))
    assert rt.sample(items, 5, rt.rng(RUN, "x")) == rt.sample(items, 5, rt.rng(RUN, "x"))
    assert rt.sample(items, 5, rt.rng(RUN, "x")) != rt.sample(items, 5, rt.rng(RUN + "2", "x"))
    assert rt.sample(items[:3], 5, rt.rng(RUN)) == [0, 1, 2]


def test_scenarios_pass_on_healthy_data(plan, s3, world):
    sid, scratch, conn = world
    snap = rt.snapshot_sample(s3, plan, RUN, scratch["bucket"])
    assert snap["mismatches"] == [] and snap["snapshots"] == {b: sid for b in plan.bucket_names}
    assert snap["objects"] == sum(min(plan.recovery_test.sample_size, len(list(iter_manifest(
        s3, plan.backup.bucket, b, sid)))) for b in plan.bucket_names)
    restored = s3.list_objects_v2(Bucket=scratch["bucket"], Prefix="snapshot/")["KeyCount"]
    assert restored == snap["objects"]
    assert rt.snapshot_sample(s3, plan, RUN, scratch["bucket"])["objects"] == snap["objects"]

    pit = rt.point_in_time(s3, plan, RUN, scratch["bucket"], datetime.now(UTC))
    assert pit["mismatches"] == [] and pit["objects"] > 0

    pick = rt.archive_request(s3, plan, RUN)
    assert pick == {**rt.archive_request(s3, plan, RUN), "requested_at": pick["requested_at"]}  # seeded pick
    arc = rt.archive_verify(s3, plan, pick, scratch["bucket"])
    assert arc["mismatches"] == [] and arc["objects"] == 1
    assert s3.list_objects_v2(Bucket=scratch["bucket"], Prefix="archive/")["KeyCount"] == 1

    tab = rt.table_export(s3, conn, plan, scratch["schema"])
    assert tab["mismatches"] == [] and tab["objects"] == len(plan.database.tables)
    for t in tab["tables"]:
        assert t["rows"] == t["expected_rows"] > 0 and t["sha256"] == t["expected_sha256"]
    results = rt.evaluate(plan, {"snapshot_sample": snap, "point_in_time": pit, "archive_object": arc,
                                 "table_export": tab})
    assert all(r["passed"] for r in results) and rt.first_problem(results) is None


def test_archive_verify_refuses_an_object_not_restored(plan, s3, world):
    _, scratch, _ = world
    pick = rt.archive_request(s3, plan, RUN)
    cold = "archive-test/not-restored.bin"
    s3.put_object(Bucket=plan.archive.bucket, Key=cold, Body=b"x" * pick["size"], StorageClass="DEEP_ARCHIVE")
    with pytest.raises(rt.ScenarioError, match="not-restored.bin is not restored"):
        rt.archive_verify(s3, plan, {**pick, "location": cold}, scratch["bucket"])
    assert s3.list_objects_v2(Bucket=scratch["bucket"], Prefix="archive/")["KeyCount"] == 0


def test_a_corrupted_stored_copy_is_named(plan, s3, world):
    sid, scratch, conn = world
    bucket = plan.bucket_names[0]
    entry = next(e for e in iter_manifest(s3, plan.backup.bucket, bucket, sid) if e.size > 0)
    s3.put_object(Bucket=plan.backup.bucket, Key=entry.location, Body=b"not the backed-up bytes")
    # a sample as large as the bucket: the corrupted copy is always in it
    big = plan.model_copy(update={"recovery_test": plan.recovery_test.model_copy(update={"sample_size": 1000})})
    snap = rt.snapshot_sample(s3, big, RUN, scratch["bucket"])
    assert [(m["bucket"], m["key"]) for m in snap["mismatches"]] == [(bucket, entry.key)]
    results = rt.evaluate(plan, {"snapshot_sample": snap})
    assert results[0]["passed"] is False and entry.key in rt.first_problem(results)


def test_a_tampered_table_export_is_named(plan, s3, world):
    sid, scratch, conn = world
    table = plan.database.tables[0].name
    key = f"tables/{sid}/{table}.csv.gz"
    meta = s3.head_object(Bucket=plan.backup.bucket, Key=key)["Metadata"]
    s3.put_object(Bucket=plan.backup.bucket, Key=key, Metadata={**meta, "rows": str(int(meta["rows"]) + 1)},
                  Body=s3.get_object(Bucket=plan.backup.bucket, Key=key)["Body"].read())
    tab = rt.table_export(s3, conn, plan, scratch["schema"])
    assert [m["table"] for m in tab["mismatches"]] == [table]


def test_no_snapshot_yet_is_a_clear_error(plan, s3, s3_backup):
    from devstack.seed import create_buckets

    create_buckets(plan, s3, s3_backup)
    with pytest.raises(rt.ScenarioError, match="no complete daily snapshot .* run s3_daily_backup first"):
        rt.snapshot_sample(s3, plan, RUN, "unused")


def test_remove_scratch_removes_everything(plan, s3, s3_backup, app_db):
    from devstack.seed import create_buckets

    create_buckets(plan, s3, s3_backup)
    with psycopg.connect(app_db, autocommit=True) as conn:
        names = rt.create_scratch(s3, conn, plan, RUN)
        s3.put_object(Bucket=names["bucket"], Key="a/b", Body=b"x")
        conn.execute(f'CREATE TABLE "{names["schema"]}".t (x int)')
        out = rt.remove_scratch(s3, conn, plan, RUN)
        assert out["bucket_removed"] and out["objects_deleted"] == 1
        with pytest.raises(ClientError):
            s3.head_bucket(Bucket=names["bucket"])
        assert conn.execute("SELECT count(*) FROM information_schema.schemata WHERE schema_name = %s",
                            (names["schema"],)).fetchone()[0] == 0
        assert rt.remove_scratch(s3, conn, plan, RUN)["bucket_removed"] is False  # idempotent
