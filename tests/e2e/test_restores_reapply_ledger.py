"""Every restore DAG re-applies the GDPR erasure ledger, end to end with dag.test() against the moto server
and a real PostgreSQL: user u1 is erased (a ledger entry with u1's user hash and key hashes, as the erasure
DAG writes it); after each restore u1's keys and rows are still gone, while u10's (an id starting with u1)
and the key `user-uploads/u1.bak` (outside u1's folder) are back, and the report counts what was skipped."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime

import psycopg
import pytest

from dataprotection import backup
from dataprotection.gdpr import ledger
from dataprotection.gdpr.ledger import LedgerEntry, key_hash, user_hash
from dataprotection.listing import iso
from dataprotection.reports import report_key
from dataprotection.tables import export_table
from devstack.replication import ReplicationEmulator
from devstack.seed import create_buckets
from tests.unit.test_pointintime import Timeline, live

pytestmark = pytest.mark.airflow

SECRET = os.environ["AIRFLOW_VAR_DATAPROTECTION_GDPR_HASH_KEY"].encode()  # set by tests/conftest.py
U1_KEYS = ["user-uploads/u1/menu.pdf", "user-uploads/u1/docs/photo 1.jpg"]
KEPT = ["user-uploads/u10/menu.pdf", "user-uploads/u1.bak"]


def body(key: str) -> bytes:
    return f"content of {key}".encode()


def erase_u1(s3, plan, bucket: str) -> None:
    ledger.append(s3, plan, LedgerEntry(event="erased", request_reference="T-1", user_hash=user_hash(SECRET, "u1"),
                                        run_id="test", key_hashes=[key_hash(SECRET, bucket, k) for k in U1_KEYS]))


def report(s3, plan, kind: str, run_id: str) -> dict:
    return json.loads(s3.get_object(Bucket=plan.compliance_bucket, Key=report_key(kind, run_id))["Body"].read())


@pytest.fixture
def uploads(plan, s3, s3_backup):
    create_buckets(plan, s3, s3_backup)
    return plan.source_buckets[0].name


def put_all(s3, bucket: str) -> None:
    for key in [*U1_KEYS, *KEPT]:
        s3.put_object(Bucket=bucket, Key=key, Body=body(key))


# --------------------------------------------------------------------------- s3_file_recovery
def test_file_recovery_does_not_restore_an_erased_key(run_dag, s3, plan, uploads):
    from dags.s3_file_recovery import dag

    put_all(s3, uploads)
    for key in [*U1_KEYS, *KEPT]:
        s3.delete_object(Bucket=uploads, Key=key)
    erase_u1(s3, plan, uploads)

    runs = {}
    for key in [U1_KEYS[0], *KEPT]:
        runs[key] = run_dag(dag, conf={"bucket": uploads, "key": key, "mode": "latest", "version_id": None,
                                       "as_of": None, "source": "versions", "destination": "in_place",
                                       "recovery_prefix": "recovered/"})
        assert runs[key].state == "success", runs[key].failed()
    assert live(s3, uploads) == {k: body(k) for k in KEPT}
    erased = report(s3, plan, "file-recovery", runs[U1_KEYS[0]].run_id)
    assert erased["status"] == "erased" and erased["restored"]["action"] == "none"
    assert erased["reason"] == "erased under GDPR (ledger); not restored"
    assert erased["gdpr_ledger"] == {"erased_skipped": 1}
    kept = report(s3, plan, "file-recovery", runs[KEPT[1]].run_id)
    assert kept["restored"]["action"] == "restored" and kept["gdpr_ledger"] == {"erased_skipped": 0}


# --------------------------------------------------------------------------- s3_bulk_recovery
def test_bulk_recovery_does_not_restore_erased_keys(run_dag, s3, plan, uploads):
    from dags.s3_bulk_recovery import dag

    tl = Timeline(s3, uploads)
    t = tl.tick({k: body(k) for k in [*U1_KEYS, *KEPT]})
    tl.tick(deletes=[*U1_KEYS, *KEPT])  # the folder is lost after T
    erase_u1(s3, plan, uploads)

    run = run_dag(dag, conf={"bucket": uploads, "prefix": "user-uploads/", "as_of": iso(tl.as_of(t)),
                             "source": "versions", "destination": "in_place", "target_bucket": None,
                             "target_prefix": None, "delete_newer": True, "dry_run": False})
    assert run.state == "success", run.failed()
    assert live(s3, uploads) == {k: body(k) for k in KEPT}
    doc = report(s3, plan, "bulk-recovery", run.run_id)
    assert (doc["counts"]["restore"], doc["counts"]["erased"], doc["erased_skipped"]) == (2, 2, 2)
    assert doc["gdpr_ledger"] == {"erased_skipped": 2}
    assert sorted(d["key"] for d in doc["sample"] if d["action"] == "erased") == sorted(U1_KEYS)


# --------------------------------------------------------------------------- s3_cross_region_recovery
def test_cross_region_recovery_does_not_restore_erased_keys(run_dag, s3, s3_backup, s3_endpoint, plan, uploads):
    from dags.s3_cross_region_recovery import dag

    put_all(s3, uploads)
    ReplicationEmulator(plan, endpoint_url=s3_endpoint).run_once()
    erase_u1(s3, plan, uploads)

    run = run_dag(dag, conf={"source_bucket": uploads, "target": "new", "dry_run": False})
    assert run.state == "success", run.failed()
    assert live(s3, f"{uploads}-restored") == {k: body(k) for k in KEPT}
    doc = report(s3, plan, "cross-region-recovery", run.run_id)
    assert doc["gdpr_ledger"] == {"erased_skipped": 2}
    assert doc["copy"]["copied"] == doc["verification"]["verified"] == 2
    assert doc["verification"]["ok"] and doc["verification"]["erased_skipped"] == 2


# --------------------------------------------------------------------------- s3_complete_recovery
def test_complete_recovery_does_not_restore_erased_keys(run_dag, s3, plan, uploads):
    from dags.s3_complete_recovery import dag as recovery_dag
    from dags.s3_weekly_archive import dag as weekly_dag

    put_all(s3, uploads)
    for bucket in plan.archived_buckets:
        s3.put_object(Bucket=bucket.name, Key="avatars/u10.png", Body=b"u10's avatar")
    week = run_dag(weekly_dag, logical_date=datetime(2026, 11, 29, 3, tzinfo=UTC))
    assert week.state == "success", week.failed()
    erase_u1(s3, plan, uploads)

    run = run_dag(recovery_dag, conf={"recovery_date": "2026-12-01", "dry_run": False, "tier": "Bulk",
                                      "restore_days": 2, "target_suffix": "-recovered"})
    assert run.state == "success", run.failed()
    assert live(s3, f"{uploads}-recovered") == {**{k: body(k) for k in KEPT}, "avatars/u10.png": b"u10's avatar"}
    reports = s3.list_objects_v2(Bucket=plan.compliance_bucket, Prefix="reports/complete-recovery/")["Contents"]
    doc = json.loads(s3.get_object(Bucket=plan.compliance_bucket, Key=reports[0]["Key"])["Body"].read())
    assert doc["gdpr_ledger"] == {"erased_skipped": 2}
    assert doc["objects"] == doc["verified"] == 2 + len(plan.archived_buckets)


# --------------------------------------------------------------------------- db_records_recovery
def test_db_records_recovery_does_not_reinsert_erased_users(run_dag, s3, plan, uploads, app_db):
    from dags.db_records_recovery import dag

    bucket = plan.backup.bucket
    with psycopg.connect(app_db, autocommit=True) as conn:
        conn.cursor().executemany(
            "INSERT INTO user_uploads (user_id, s3_bucket, s3_key, s3_url) VALUES (%s, %s, %s, %s)",
            [(u, uploads, f"user-uploads/{u}/f{i}.pdf", f"s3://{uploads}/user-uploads/{u}/f{i}.pdf")
             for u in ("u1", "u10", "u2") for i in range(2)])
        conn.cursor().executemany(
            "INSERT INTO business_profiles (user_id, business_name, avatar_s3_url, logo_s3_url)"
            " VALUES (%s, %s, %s, %s)",
            [(u, f"{u} Bistro", f"s3://matbakh-files-profile/avatars/{u}.png", f"https://cdn.example/{u}/logo.png")
             for u in ("u1", "u10")])
        for name in ("user_uploads", "business_profiles"):
            export_table(conn, plan.table(name), s3, bucket, backup.table_export_key("2026-12-01", name))
        conn.execute("DELETE FROM user_uploads WHERE user_id IN ('u1', 'u10')")
        conn.execute("DELETE FROM business_profiles")
    erase_u1(s3, plan, uploads)

    conf = {"snapshot_date": "latest", "url_rewrite_from": None, "url_rewrite_to": None, "dry_run": False}
    runs = {name: run_dag(dag, conf={**conf, "table": name}) for name in ("user_uploads", "business_profiles")}
    assert all(r.state == "success" for r in runs.values()), {n: r.failed() for n, r in runs.items()}
    with psycopg.connect(app_db) as conn:
        users = dict(conn.execute("SELECT user_id, count(*) FROM user_uploads GROUP BY user_id").fetchall())
        rows = conn.execute("SELECT user_id, avatar_s3_url, logo_s3_url FROM business_profiles").fetchall()
        profiles = {r[0]: r[1:] for r in rows}
    assert users == {"u10": 2, "u2": 2}, "u1's upload rows are not re-inserted"
    assert profiles == {"u1": (None, None),
                        "u10": ("s3://matbakh-files-profile/avatars/u10.png", "https://cdn.example/u10/logo.png")}
    doc = report(s3, plan, "db-records-recovery", runs["user_uploads"].run_id)
    assert doc["gdpr_ledger"] == {"erased_users": 1, "erased_rows_skipped": 2, "erased_urls_nulled": 0}
    assert (doc["inserted"], doc["already_present"]) == (2, 2)
    doc = report(s3, plan, "db-records-recovery", runs["business_profiles"].run_id)
    assert doc["gdpr_ledger"] == {"erased_users": 1, "erased_rows_skipped": 0, "erased_urls_nulled": 1}
    assert doc["inserted"] == 2
