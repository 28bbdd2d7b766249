"""s3_cross_region_recovery and db_records_recovery end to end with dag.test() against the moto
server (replicas filled by the replication emulator) and a real PostgreSQL."""

from __future__ import annotations

import json
from collections import Counter

import psycopg
import pytest

from dataprotection import backup
from dataprotection.manifest import write_json
from dataprotection.operators.dbrecovery import PostgresRecordsRecoveryOperator, RecordsRecoveryError, resolve_export
from dataprotection.reports import report_key
from dataprotection.tables import export_table
from devstack.replication import ReplicationEmulator
from devstack.seed import create_buckets, seed_objects

pytestmark = pytest.mark.airflow


def _json(s3, bucket, key):
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def _contents(client, bucket) -> dict[str, bytes]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {o["Key"]: client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
            for p in pages for o in p.get("Contents", [])}


@pytest.fixture
def s3_calls(monkeypatch):
    """Every S3 operation the DAG's tasks send, as (operation, bucket) counts."""
    import dataprotection.hooks.s3 as hook_module

    calls: Counter = Counter()
    real = hook_module.make_client

    def counting_client(*args, **kwargs):
        client = real(*args, **kwargs)

        def count(model, params, **_):
            calls[(model.name, params.get("Bucket"))] += 1

        client.meta.events.register("before-parameter-build.s3", count)
        return client

    monkeypatch.setattr(hook_module, "make_client", counting_client)
    return calls


# --------------------------------------------------------------------------- s3_cross_region_recovery
def test_cross_region_recovery(run_dag, s3, s3_backup, s3_endpoint, plan, s3_calls):
    from dags.s3_cross_region_recovery import dag

    create_buckets(plan, s3, s3_backup)
    seed_objects(plan, s3)
    ReplicationEmulator(plan, endpoint_url=s3_endpoint).run_once()
    source = plan.bucket_names[0]
    replica, target = plan.bucket(source).replica, f"{source}-restored"
    replica_state = _contents(s3_backup, replica)
    assert len(replica_state) >= 9 and all(k.startswith("user-uploads/") for k in replica_state)

    # dry run: the plan as the report, nothing else
    dry = run_dag(dag, conf={"source_bucket": source, "target": "new", "dry_run": True})
    assert dry.state == "success", dry.failed()
    assert dry.tasks["prepare_target"] == dry.tasks["write_report"] == "skipped"
    assert target not in {b["Name"] for b in s3.list_buckets()["Buckets"]}
    report = _json(s3, plan.compliance_bucket, report_key("cross-region-recovery", dry.run_id))
    assert report["dry_run"] is True and report["plan"]["copied"] == len(replica_state)

    # into a new, hardened bucket: every replica object, verified; no object read through this process
    s3_calls.clear()
    new = run_dag(dag, conf={"source_bucket": source, "target": "new", "dry_run": False})
    assert new.state == "success", new.failed()
    assert _contents(s3, target) == replica_state
    assert s3.get_bucket_versioning(Bucket=target)["Status"] == "Enabled"
    assert s3.get_bucket_encryption(Bucket=target)["ServerSideEncryptionConfiguration"]["Rules"][0][
        "ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert s3.get_public_access_block(Bucket=target)["PublicAccessBlockConfiguration"]["RestrictPublicBuckets"]
    report = _json(s3, plan.compliance_bucket, report_key("cross-region-recovery", new.run_id))
    assert report["status"] == "ok" and report["target_created"] is True
    assert report["copy"]["copied"] == report["verification"]["verified"] == len(replica_state)
    assert sum(report["verification"]["by_method"].values()) == len(replica_state)
    assert not any(op in ("GetObject", "UploadPart") for op, _ in s3_calls), s3_calls
    assert {bucket for op, bucket in s3_calls if op == "PutObject"} == {plan.compliance_bucket}, "only the report"
    assert s3_calls[("CopyObject", target)] == len(replica_state)

    # back into the original bucket after a loss: only what is missing or different is copied
    lost = sorted(replica_state)[:2]
    for key in lost:
        s3.delete_object(Bucket=source, Key=key)
    s3.put_object(Bucket=source, Key=sorted(replica_state)[-1], Body=b"corrupted")
    original = run_dag(dag, conf={"source_bucket": source, "target": "original", "dry_run": False})
    assert original.state == "success", original.failed()
    live = _contents(s3, source)
    assert {k: live[k] for k in replica_state} == replica_state
    assert any(k.startswith("temp/") for k in live), "keys the replica does not have are left alone"
    report = _json(s3, plan.compliance_bucket, report_key("cross-region-recovery", original.run_id))
    assert (report["copy"]["copied"], report["copy"]["present"]) == (3, len(replica_state) - 3)
    assert report["verification"]["ok"] and report["target_created"] is False
    # (a re-run copying nothing is shown in tests/unit/test_crossregion.py, without the DAG's overhead)


# --------------------------------------------------------------------------- db_records_recovery
GOOD_URL = "https://matbakh-files-uploads.s3.eu-central-1.amazonaws.com/user-uploads/"
# quotes, ';', a comment, '%' and a backslash: must be treated as data by the URL rewrite
EVIL = "https://old.example/'); DROP TABLE user_uploads; --/\"%s\\/"
NEW_URL = "https://matbakh-files-uploads-restored.s3.eu-central-1.amazonaws.com/"
COLUMNS = "id, user_id, s3_bucket, s3_key, s3_url, original_filename, content_type, file_size, uploaded_at"


def _rows(conn) -> dict[int, tuple]:
    return {r[0]: r for r in conn.execute(f"SELECT {COLUMNS} FROM user_uploads ORDER BY id")}  # noqa: S608


def test_db_records_recovery(run_dag, s3, s3_backup, app_db, plan):
    from dags.db_records_recovery import dag

    create_buckets(plan, s3, s3_backup)
    table = plan.table("user_uploads")
    bucket = plan.backup.bucket
    with psycopg.connect(app_db, autocommit=True) as conn:
        conn.cursor().executemany(
            "INSERT INTO user_uploads (user_id, s3_bucket, s3_key, s3_url, original_filename, content_type,"
            " file_size) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [(f"u{i % 7}", "matbakh-files-uploads", f"user-uploads/u{i % 7}/f{i}.pdf",
              (EVIL if i % 10 == 3 else GOOD_URL) + f"u{i % 7}/f{i}.pdf", f"f{i}.pdf", "application/pdf", i * 100)
             for i in range(40)],
        )
        old = export_table(conn, table, s3, bucket, backup.table_export_key("2026-12-01", table.name))
        conn.execute("INSERT INTO user_uploads (user_id, s3_bucket, s3_key) VALUES ('u9', 'b', 'k/late')")
        export = export_table(conn, table, s3, bucket, backup.table_export_key("2026-12-03", table.name))
        write_json(s3, bucket, backup.run_manifest_key("daily", "2026-12-03"),
                   {"tables": [export.to_dict()]})
        assert (old.rows, export.rows) == (40, 41)
        exported = _rows(conn)

        # lose 10% of the rows (ids 4 and 34 carry the malicious URL), modify three others (14 too)
        deleted = [4, 13, 22, 34]
        conn.execute("DELETE FROM user_uploads WHERE id = ANY(%s)", (deleted,))
        modified = [5, 14, 25]
        conn.execute("UPDATE user_uploads SET file_size = -1, s3_url = s3_url || '?v=2' WHERE id = ANY(%s)",
                     (modified,))
        damaged = _rows(conn)

    assert resolve_export(s3, bucket, table.name, "latest") == "2026-12-03"
    assert resolve_export(s3, bucket, table.name, "2026-12-01") == "2026-12-01"
    with pytest.raises(RecordsRecoveryError, match=r"no export of table user_uploads for 2026-11-30.*2026-12-03"):
        resolve_export(s3, bucket, table.name, "2026-11-30")

    conf = {"table": table.name, "snapshot_date": "latest", "url_rewrite_from": EVIL, "url_rewrite_to": NEW_URL,
            "dry_run": True}

    dry = run_dag(dag, conf=conf)
    assert dry.state == "success", dry.failed()
    with psycopg.connect(app_db) as conn:
        assert _rows(conn) == damaged, "a dry run rolls back"
    report = _json(s3, plan.compliance_bucket, report_key("db-records-recovery", dry.run_id))
    assert (report["dry_run"], report["committed"], report["inserted"]) == (True, False, 4)
    assert (report["rows_before"], report["rows_after"], report["rows_in_export"]) == (37, 41, 41)

    real = run_dag(dag, conf={**conf, "dry_run": False})
    assert real.state == "success", real.failed()
    with psycopg.connect(app_db) as conn:
        after = _rows(conn)
    assert set(after) == set(exported), "exactly the deleted rows are back"
    for row_id, row in after.items():
        if row_id in modified:
            assert row == damaged[row_id], "rows modified since the export are left as they are"
        elif row_id in deleted and EVIL in exported[row_id][4]:
            expected = exported[row_id][4].replace(EVIL, NEW_URL)
            assert row == exported[row_id][:4] + (expected,) + exported[row_id][5:], "URL rewritten as data"
        else:
            assert row == exported[row_id]
    assert after[24] == exported[24] and EVIL in after[24][4], "the rewrite touches inserted rows only"
    report = _json(s3, plan.compliance_bucket, report_key("db-records-recovery", real.run_id))
    assert (report["inserted"], report["already_present"], report["rows_after"]) == (4, 37, 41)
    assert report["url_rewrite"]["rows_rewritten"] == 2
    assert report["export"]["sha256"] == report["export"]["recorded_sha256"] == export.sha256
    assert report["export"]["key"] == "tables/2026-12-03/user_uploads.csv.gz"

    again = run_dag(dag, conf={**conf, "dry_run": False})
    assert again.state == "success", again.failed()
    report = _json(s3, plan.compliance_bucket, report_key("db-records-recovery", again.run_id))
    assert (report["inserted"], report["url_rewrite"]["rows_rewritten"]) == (0, 0)
    with psycopg.connect(app_db) as conn:
        assert _rows(conn) == after
        assert conn.execute("SELECT count(*) FROM business_profiles").fetchone()[0] == 0


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"table": "pg_authid"}, "not a table of the plan"),
        ({"table": "user_uploads", "url_rewrite_from": "https://a/"}, "give both or neither"),
        ({"table": "user_uploads", "url_rewrite_to": "https://b/"}, "give both or neither"),
    ],
)
def test_records_recovery_refuses_bad_requests_before_any_io(params, message):
    operator = PostgresRecordsRecoveryOperator(task_id="recover_rows", **params)
    with pytest.raises(RecordsRecoveryError, match=message):
        operator.execute({})
