"""Every restore path re-applies the GDPR erasure ledger (dataprotection.gdpr.ledger), against the moto
server and a real PostgreSQL: file and bulk point-in-time recovery, snapshot restore (complete recovery),
cross-region recovery from the replica, and database records recovery.

The fixture data is the one a naive filter gets wrong: user u1 is erased; u10 (whose id starts with u1)
and the key `user-uploads/u1.bak` (outside u1's folder, not in the ledger) must come back.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from dataprotection import backup
from dataprotection import crossregion as cr
from dataprotection import pointintime as pit
from dataprotection.gdpr import ledger
from dataprotection.gdpr.ledger import LedgerEntry, Redactor, key_hash, user_hash
from dataprotection.operators.dbrecovery import recover_rows
from dataprotection.recovery import ensure_recovery_bucket
from dataprotection.restore import restore_snapshot
from dataprotection.snapshot import SnapshotSpec, take_snapshot
from dataprotection.tables import export_table, load_export_into_temp, redact_erased_users, temp_user_ids
from devstack.replication import ReplicationEmulator
from devstack.seed import create_buckets
from tests.unit.test_pointintime import Timeline, live

SECRET = os.environ["AIRFLOW_VAR_DATAPROTECTION_GDPR_HASH_KEY"].encode()  # set by tests/conftest.py
U1_KEYS = ["user-uploads/u1/menu.pdf", "user-uploads/u1/docs/a b+c.txt"]
KEPT = ["user-uploads/u10/menu.pdf", "user-uploads/u1.bak"]  # u10's key, and a key outside u1's folder
U1_LOOSE = "shared/invoice-for-u1.pdf"  # u1's, but outside any per-user folder: erased by its key hash only


def body(key: str, version: int = 1) -> bytes:
    return f"{key} v{version}".encode()


def erase(s3, plan, user_id: str, bucket: str, keys: list[str]) -> Redactor:
    """Record an erasure of `user_id` and `keys` in the ledger (as the erasure DAG does); return the Redactor."""
    ledger.append(s3, plan, LedgerEntry(event="erased", request_reference="T-1", user_hash=user_hash(SECRET, user_id),
                                        run_id="test", key_hashes=[key_hash(SECRET, bucket, k) for k in keys]))
    return Redactor.load(s3, plan, SECRET)


@pytest.fixture
def uploads(plan, s3, s3_backup):
    create_buckets(plan, s3, s3_backup)
    return plan.source_buckets[0].name


def test_redactor_matches_exact_keys_and_folders_only(plan, s3, uploads):
    assert not Redactor.load(s3, plan, SECRET), "no ledger: nothing is filtered"
    redactor = erase(s3, plan, "u1", uploads, [*U1_KEYS, U1_LOOSE])
    replica = plan.bucket(uploads).replica
    assert all(redactor.erased_key(b, k) for b in (uploads, replica) for k in [*U1_KEYS, U1_LOOSE])
    assert redactor.erased_key(uploads, "user-uploads/u1/not-in-the-ledger.txt"), "u1's folder"
    assert not any(redactor.erased_key(b, k) for b in (uploads, replica) for k in KEPT)
    assert redactor.erased_user("u1") and not redactor.erased_user("u10")


# --------------------------------------------------------------------------- s3_file_recovery
def test_file_recovery_resolves_erased_keys_to_erased_and_copies_nothing(plan, s3, uploads):
    keys = [*U1_KEYS, U1_LOOSE, *KEPT]
    for key in keys:
        s3.put_object(Bucket=uploads, Key=key, Body=body(key))
        s3.delete_object(Bucket=uploads, Key=key)
    redactor = erase(s3, plan, "u1", uploads, [*U1_KEYS, U1_LOOSE])

    for key in keys:
        resolution = pit.resolve_file(s3, s3, bucket=uploads, key=key, mode="latest", redactor=redactor)
        restored = pit.restore_file(s3, resolution, dest_bucket=uploads, dest_key=key)
        if key in KEPT:
            assert (resolution["status"], restored["action"]) == ("found", "restored"), key
        else:
            assert resolution["status"] == "erased", key
            assert resolution["reason"] == "erased under GDPR (ledger); not restored"
            assert "origin" not in resolution and restored["action"] == "none"
    assert live(s3, uploads) == {k: body(k) for k in KEPT}

    snapshot = pit.resolve_file(s3, s3, bucket=uploads, key=U1_KEYS[0], mode="latest", source="snapshot",
                                store_bucket=plan.backup.bucket, redactor=redactor)
    assert snapshot["status"] == "erased", "also from a snapshot (none needs to exist)"
    unfiltered = pit.resolve_file(s3, s3, bucket=uploads, key=U1_KEYS[0], mode="latest")
    assert unfiltered["status"] == "found", "without a redactor nothing changes"


# --------------------------------------------------------------------------- s3_bulk_recovery
def test_bulk_from_versions_never_copies_or_deletes_erased_keys(plan, s3, uploads):
    tl = Timeline(s3, uploads)
    t = tl.tick({k: body(k) for k in [*U1_KEYS, *KEPT]})
    newer = {"user-uploads/u1/after-t.txt": b"u1 new", "user-uploads/u10/after-t.txt": b"u10 new"}
    tl.tick({**{k: body(k, 2) for k in [*U1_KEYS, *KEPT]}, **newer})
    redactor = erase(s3, plan, "u1", uploads, [*U1_KEYS, "user-uploads/u1/after-t.txt"])
    request = pit.BulkRequest(bucket=uploads, prefix="user-uploads/", as_of=tl.as_of(t), delete_newer=True,
                              dry_run=True)

    dry = pit.bulk_recover(s3, request, redactor=redactor)
    assert {k: v for k, v in dry.counts.items() if v} == {"erased": 3, "restore": 2, "delete": 1}
    assert dry.erased_skipped == 3
    erased = sorted(d["key"] for d in dry.sample if d["action"] == "erased")
    assert erased == sorted([*U1_KEYS, "user-uploads/u1/after-t.txt"])
    assert all(d["reason"] == pit.ERASED_REASON and "version_id" not in d for d in dry.sample
               if d["action"] == "erased")

    real = pit.bulk_recover(s3, dataclasses.replace(request, dry_run=False), redactor=redactor)
    assert (real.counts["erased"], real.counts["restore"], real.counts["delete"], real.counts["failed"]) == (3, 2, 1, 0)
    now = live(s3, uploads)
    assert {k: now[k] for k in KEPT} == {k: body(k) for k in KEPT}, "u10 and u1.bak are back as of T"
    assert "user-uploads/u10/after-t.txt" not in now, "delete_newer still applies to other users"
    assert {k: now[k] for k in U1_KEYS} == {k: body(k, 2) for k in U1_KEYS}, "erased keys are not touched"
    assert now["user-uploads/u1/after-t.txt"] == b"u1 new", "nor deleted by delete_newer"


def test_bulk_from_a_snapshot_skips_erased_entries(plan, s3, uploads):
    keys = [*U1_KEYS, *KEPT]
    for key in keys:
        s3.put_object(Bucket=uploads, Key=key, Body=body(key))
    day = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    take_snapshot(s3, s3, SnapshotSpec(uploads, plan.backup.bucket, day, logical_time=f"{day}T02:00:00Z"))
    for key in keys:
        s3.delete_object(Bucket=uploads, Key=key)
    s3.put_object(Bucket=uploads, Key="user-uploads/u1/late.txt", Body=b"after the snapshot")
    redactor = erase(s3, plan, "u1", uploads, U1_KEYS)

    base = {"bucket": uploads, "prefix": "user-uploads/", "as_of": datetime.now(UTC), "source": "snapshot",
            "snapshot_id": day, "store_bucket": plan.backup.bucket, "dry_run": False}
    elsewhere = pit.bulk_recover(s3, pit.BulkRequest(**base, target_bucket=uploads, target_prefix="recovered/"),
                                 redactor=redactor)
    assert (elsewhere.erased_skipped, elsewhere.counts["restore"], elsewhere.counts["failed"]) == (2, 2, 0)
    assert live(s3, uploads, "recovered/") == {f"recovered/{k}": body(k) for k in KEPT}

    in_place = pit.bulk_recover(s3, pit.BulkRequest(**base, delete_newer=True), redactor=redactor)
    assert (in_place.erased_skipped, in_place.counts["restore"], in_place.counts["failed"]) == (3, 2, 0)
    assert live(s3, uploads, "user-uploads/") == {**{k: body(k) for k in KEPT},
                                                  "user-uploads/u1/late.txt": b"after the snapshot"}


# --------------------------------------------------------------------------- s3_complete_recovery (snapshot restore)
@pytest.mark.parametrize("skip_existing", [False, True])
def test_snapshot_restore_skips_erased_entries_and_verifies_the_rest(plan, s3, uploads, skip_existing):
    keys = [*U1_KEYS, U1_LOOSE, *KEPT]
    for key in keys:
        s3.put_object(Bucket=uploads, Key=key, Body=body(key))
    take_snapshot(s3, s3, SnapshotSpec(uploads, plan.backup.bucket, "2026-12-01"))
    redactor = erase(s3, plan, "u1", uploads, [*U1_KEYS, U1_LOOSE])
    target = "ledger-restore-target"
    ensure_recovery_bucket(s3, target, plan.regions.primary)

    result = restore_snapshot(s3, s3, store_bucket=plan.backup.bucket, source_bucket=uploads, snapshot_id="2026-12-01",
                              target_bucket=target, skip_existing=skip_existing, redactor=redactor)
    assert result.ok and not result.missing_after, "erased entries are not expected in the target"
    assert (result.objects, result.verified, result.erased_skipped) == (2, 2, 3)
    assert live(s3, target) == {k: body(k) for k in KEPT}


# --------------------------------------------------------------------------- s3_cross_region_recovery
@pytest.fixture
def replicated(plan, s3, s3_endpoint, uploads):
    for key in [*U1_KEYS, *KEPT]:
        s3.put_object(Bucket=uploads, Key=key, Body=body(key))
    ReplicationEmulator(plan, endpoint_url=s3_endpoint).run_once()
    return uploads


def test_cross_region_recovery_skips_erased_replica_keys(plan, s3, s3_backup, replicated):
    spec = cr.recovery_spec(plan, replicated, "new")
    ensure_recovery_bucket(s3, spec.target_bucket, spec.target_region)
    redactor = erase(s3, plan, "u1", replicated, U1_KEYS)

    planned = cr.plan_recovery(s3_backup, s3, spec, redactor)
    assert (planned.objects, planned.copied, planned.erased_skipped) == (2, 2, 2)
    copied = cr.copy_from_replica(s3_backup, s3, spec, redactor)
    assert (copied.copied, copied.erased_skipped) == (2, 2)
    assert live(s3, spec.target_bucket) == {k: body(k) for k in KEPT}
    verified = cr.verify_recovery(s3_backup, s3, spec, redactor)
    assert verified.ok and (verified.objects, verified.missing, verified.erased_skipped) == (2, 0, 2)
    unfiltered = cr.verify_recovery(s3_backup, s3, spec)
    assert (unfiltered.ok, unfiltered.missing) == (False, 2), "without the ledger they would be missing"


def test_cross_region_recovery_into_the_original_bucket_leaves_erased_keys_out(plan, s3, s3_backup, replicated):
    for key in [*U1_KEYS, *KEPT]:  # the bucket is lost; the erasure did not reach the replica
        s3.delete_object(Bucket=replicated, Key=key)
    spec = cr.recovery_spec(plan, replicated, "original")
    redactor = erase(s3, plan, "u1", replicated, U1_KEYS)
    copied = cr.copy_from_replica(s3_backup, s3, spec, redactor)
    assert (copied.copied, copied.erased_skipped) == (2, 2)
    assert live(s3, replicated, "user-uploads/") == {k: body(k) for k in KEPT}
    assert cr.verify_recovery(s3_backup, s3, spec, redactor).ok


# --------------------------------------------------------------------------- db_records_recovery
EVIL_USER = "x'); DROP TABLE user_uploads; --"  # an id that is data, never SQL


@pytest.fixture
def conn(app_db):
    with psycopg.connect(app_db, autocommit=True) as connection:
        yield connection


def _fill(conn) -> None:
    conn.cursor().executemany(
        "INSERT INTO user_uploads (user_id, s3_bucket, s3_key, s3_url) VALUES (%s, %s, %s, %s)",
        [(u, "matbakh-files-uploads", f"user-uploads/{u}/f{i}.pdf", f"s3://matbakh-files-uploads/user-uploads/{u}/f{i}")
         for u, n in (("u1", 3), ("u10", 2), ("u2", 1), (EVIL_USER, 1)) for i in range(n)],
    )
    conn.cursor().executemany(
        "INSERT INTO business_profiles (user_id, business_name, avatar_s3_url, logo_s3_url) VALUES (%s, %s, %s, %s)",
        [(u, f"{u} GmbH", f"s3://matbakh-files-profile/avatars/{u}.png", f"s3://matbakh-files-profile/logos/{u}.png")
         for u in ("u1", "u10", "u2")],
    )


def _export(conn, s3, plan, name: str) -> str:
    key = backup.table_export_key("2026-12-01", name)
    export_table(conn, plan.table(name), s3, plan.backup.bucket, key)
    return key


def test_temp_user_ids_are_distinct_and_streamed(plan, s3, uploads, conn):
    _fill(conn)
    key = _export(conn, s3, plan, "user_uploads")
    with conn.transaction():
        temp, _ = load_export_into_temp(conn, plan.table("user_uploads"), s3, plan.backup.bucket, key)
        ids = list(temp_user_ids(conn, plan.table("user_uploads"), temp, itersize=1))
        assert sorted(ids) == sorted(["u1", "u10", "u2", EVIL_USER])
        assert redact_erased_users(conn, plan.table("user_uploads"), temp, None) == {
            "erased_users": 0, "erased_rows_skipped": 0, "erased_urls_nulled": 0}


def test_records_recovery_never_reinserts_erased_users(plan, s3, uploads, conn, caplog):
    _fill(conn)
    keys = {name: _export(conn, s3, plan, name) for name in ("user_uploads", "business_profiles")}
    conn.execute("DELETE FROM user_uploads WHERE user_id <> 'u2'")
    conn.execute("DELETE FROM business_profiles")
    ledger.append(s3, plan, LedgerEntry(event="erased", request_reference="T-2", user_hash=user_hash(SECRET, EVIL_USER),
                                        run_id="test"))
    redactor = erase(s3, plan, "u1", uploads, [])

    caplog.set_level(logging.DEBUG, logger="dataprotection")
    uploads_table, profiles = plan.table("user_uploads"), plan.table("business_profiles")
    result = recover_rows(conn, uploads_table, s3, plan.backup.bucket, keys["user_uploads"], dry_run=False,
                          redactor=redactor)
    assert result["gdpr_ledger"] == {"erased_users": 2, "erased_rows_skipped": 4, "erased_urls_nulled": 0}
    assert (result["rows_in_export"], result["inserted"], result["already_present"]) == (7, 2, 1)
    rows = conn.execute("SELECT user_id, count(*) FROM user_uploads GROUP BY user_id").fetchall()
    assert dict(rows) == {"u10": 2, "u2": 1}, "u1's (and the other erased user's) rows are not re-inserted"

    result = recover_rows(conn, profiles, s3, plan.backup.bucket, keys["business_profiles"], dry_run=False,
                          redactor=redactor)
    assert result["gdpr_ledger"] == {"erased_users": 1, "erased_rows_skipped": 0, "erased_urls_nulled": 1}
    assert result["inserted"] == 3
    urls = {r[0]: r[1:] for r in conn.execute("SELECT user_id, avatar_s3_url, logo_s3_url FROM business_profiles")}
    assert urls["u1"] == (None, None), "u1's profile comes back without its URLs"
    assert urls["u10"] == ("s3://matbakh-files-profile/avatars/u10.png", "s3://matbakh-files-profile/logos/u10.png")
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("dataprotection")]
    assert messages and not any("u1" in m or EVIL_USER in m for m in messages), "user ids are never logged"

    again = recover_rows(conn, uploads_table, s3, plan.backup.bucket, keys["user_uploads"], dry_run=False,
                         redactor=redactor)
    assert again["inserted"] == 0 and again["gdpr_ledger"]["erased_rows_skipped"] == 4, "re-running inserts nothing"


def test_records_recovery_without_a_ledger_is_unchanged(plan, s3, uploads, conn):
    _fill(conn)
    key = _export(conn, s3, plan, "user_uploads")
    conn.execute("DELETE FROM user_uploads WHERE user_id = 'u1'")
    empty = Redactor.load(s3, plan, SECRET)
    result = recover_rows(conn, plan.table("user_uploads"), s3, plan.backup.bucket, key, dry_run=False,
                          redactor=empty)
    assert result["inserted"] == 3 and result["gdpr_ledger"]["erased_users"] == 0
