"""gdpr_user_erasure end to end with dag.test() against the moto server and a real PostgreSQL; the
approval is answered through the same API function the UI's Required Actions page calls."""

from __future__ import annotations

import gzip
import json

import psycopg
import pytest

from dataprotection import manifest as mf
from dataprotection.gdpr.ledger import LEDGER_PREFIX
from dataprotection.gdpr.record import certificate_key, preview_key
from dataprotection.snapshot import iter_manifest, snapshot_ids
from tests.e2e.gdpr_world import OTHER_KEYS, U1_KEYS, all_versions, answer_approval, build, state

pytestmark = pytest.mark.airflow
REF = "DPO-2026-0042"
LOCKED = {"user-uploads/u1/held.pdf", "user-uploads/u1/retained.pdf"}


@pytest.fixture
def world(s3, s3_backup, plan, app_db, s3_endpoint):
    return build(s3, s3_backup, plan, app_db, s3_endpoint)


def _run(run_dag, answer: str | None = None, **conf):
    from dags.gdpr_user_erasure import dag

    thread = answer_approval("gdpr_user_erasure", "approve_erasure", answer) if answer else None
    result = run_dag(dag, conf={"user_id": "u1", "request_reference": REF, "dry_run": True, **conf})
    if thread is not None:
        thread.join(5)
    return result


def _doc(s3, bucket: str, key: str) -> dict:
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def _keys_of(versions) -> set[str]:
    return {k for k, *_ in versions}


def test_dry_run_and_rejection_change_nothing(run_dag, s3, s3_backup, plan, app_db, world):
    before = state(s3, s3_backup, plan, app_db)

    dry = _run(run_dag)
    assert dry.state == "success", dry.failed()
    assert dry.tasks["erase"] == "skipped" and dry.tasks["approve_erasure"] == "skipped"
    assert state(s3, s3_backup, plan, app_db) == before
    preview = _doc(s3, plan.compliance_bucket, preview_key(REF, dry.run_id))
    counts = preview["counts"]
    assert counts["rows"] == {"user_uploads": 5, "business_profiles": 1}
    assert {k["key"] for k in preview["keys"] if k["bucket"] == world["uploads"]} == set(U1_KEYS)
    assert {k["key"] for k in preview["keys"] if k["bucket"] == world["profile"]} == {"avatars/u1.png",
                                                                                      "logos/u1.png"}
    assert not {k["key"] for k in preview["keys"]} & set(OTHER_KEYS)
    assert counts["locked_versions"] == 2
    assert counts["delete_markers"] >= 2  # old.txt in the source and in the replica
    assert counts["by_store"][plan.backup.bucket]["manifest_entries"] > 0
    assert counts["by_store"][plan.archive.bucket]["manifest_entries"] > 0

    rejected = _run(run_dag, answer="Reject", dry_run=False)
    assert rejected.state == "success", rejected.failed()
    assert rejected.tasks["approve_erasure"] == "success"
    assert rejected.tasks["erase"] == "skipped" and rejected.tasks["certify"] == "skipped"
    assert state(s3, s3_backup, plan, app_db) == before
    assert not s3.list_objects_v2(Bucket=plan.compliance_bucket, Prefix=LEDGER_PREFIX).get("Contents")


def test_approved_erasure_removes_the_user_everywhere_and_certifies(run_dag, s3, s3_backup, plan, app_db, world):
    uploads, profile = world["uploads"], world["profile"]
    others_before = {b: [v for v in all_versions(s3, b) if "u1/" not in v[0] and "/u1." not in v[0]
                         and "invoice-7781" not in v[0]] for b in (uploads, profile)}

    run = _run(run_dag, answer="Approve", dry_run=False)
    assert run.state == "success", run.failed()

    # sources and replicas: 0 versions and 0 delete markers of every erased key, locked ones kept
    erased = (set(U1_KEYS) - LOCKED) | {"avatars/u1.png", "logos/u1.png"}
    for b in plan.source_buckets:
        for client, bucket in ((s3, b.name), (s3_backup, b.replica)):
            left = _keys_of(all_versions(client, bucket))
            assert not left & erased, (bucket, left & erased)
    assert _keys_of(all_versions(s3, uploads)) & LOCKED == LOCKED
    # other users untouched, including the look-alikes u10, u12 and user-uploads/u1.bak
    for bucket, versions in others_before.items():
        assert [v for v in all_versions(s3, bucket) if v in versions] == versions
    assert {"user-uploads/u10/menu.pdf", "user-uploads/u12/x.pdf", "user-uploads/u1.bak"} <= \
        _keys_of(all_versions(s3_backup, plan.bucket(uploads).replica))

    # backups and archives: no stored copy, no manifest entry; summaries consistent
    for store_bucket, sources in ((plan.backup.bucket, plan.bucket_names),
                                  (plan.archive.bucket, [b.name for b in plan.archived_buckets])):
        stored = [k for k, *_ in all_versions(s3, store_bucket) if k.startswith("data/")]
        assert not [k for k in stored if "/u1/" in k or "u1.png" in k or "invoice-7781" in k]
        assert any("u1.bak" in k for k in stored) or store_bucket == plan.archive.bucket
        for source in sources:
            for sid in snapshot_ids(s3, store_bucket, source):
                entries = list(iter_manifest(s3, store_bucket, source, sid))
                keys = {e.key for e in entries}
                assert not keys & erased, (store_bucket, sid, keys & erased)
                summary = mf.read_json(s3, store_bucket, mf.summary_key(source, sid))
                assert summary["objects"] == len(entries)
                if source == uploads:
                    assert {"user-uploads/u10/menu.pdf", "user-uploads/u1.bak"} <= keys
                    assert summary["redactions"][-1]["entries"] > 0
        # the store buckets are versioned: no old version of a rewritten manifest part may name an erased key
        parts = [(k, vid) for k, vid, marker, _ in all_versions(s3, store_bucket)
                 if k.endswith(".jsonl.gz") and not marker]
        assert len(parts) == len({k for k, _ in parts}), "old manifest versions left behind"
        for key, vid in parts:
            body = gzip.decompress(s3.get_object(Bucket=store_bucket, Key=key, VersionId=vid)["Body"].read())
            assert not [k for k in erased if k.encode() in body], key

    # database: u1's uploads gone, profile URLs nulled, everyone else untouched
    with psycopg.connect(app_db) as conn:
        assert conn.execute("SELECT count(*) FROM user_uploads WHERE user_id = 'u1'").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM user_uploads WHERE user_id <> 'u1'").fetchone()[0] == 3
        assert conn.execute("SELECT avatar_s3_url, logo_s3_url FROM business_profiles WHERE user_id = 'u1'"
                            ).fetchone() == (None, None)
        assert conn.execute("SELECT count(*) FROM business_profiles WHERE avatar_s3_url IS NOT NULL"
                            ).fetchone()[0] == 2

    # certificate and ledger: counts, blocked items with dates, no personal data
    cert = _doc(s3, plan.compliance_bucket, certificate_key(REF, run.run_id))
    assert cert["status"] == "erased_with_blocked" and cert["request_reference"] == REF
    assert len(cert["blocked"]) == 2
    assert {b["legal_hold"] for b in cert["blocked"]} == {True, False}
    assert [b for b in cert["blocked"] if not b["legal_hold"]][0]["retain_until"]
    assert cert["counts"]["rows"] == {"user_uploads": {"deleted": 5}, "business_profiles": {"urls_nulled": 1}}
    assert cert["counts"]["source_versions"] >= 7 and cert["counts"]["replica_versions"] >= 7
    assert cert["counts"]["stored_copies"] > 0 and cert["counts"]["manifest_entries"] > 0
    assert len(cert["deleted_versions_sha256"]) == 64
    text = json.dumps(cert)
    assert "u1" not in text.replace(cert["user_hash"], "") and "menu.pdf" not in text
    ledger = s3.list_objects_v2(Bucket=plan.compliance_bucket, Prefix=LEDGER_PREFIX)["Contents"]
    assert len(ledger) == 1
    entry = _doc(s3, plan.compliance_bucket, ledger[0]["Key"])
    assert entry["event"] == "erased_with_blocked" and entry["user_hash"] == cert["user_hash"]
    assert "u1/" not in json.dumps(entry)
    # the preview named keys: it is gone once the certificate is issued
    assert not s3.list_object_versions(Bucket=plan.compliance_bucket,
                                       Prefix=preview_key(REF, run.run_id)).get("Versions")

    # a re-run after a completed erasure is harmless and erases 0
    again = _run(run_dag, answer="Approve", dry_run=False)
    assert again.state == "success", again.failed()
    cert2 = _doc(s3, plan.compliance_bucket, certificate_key(REF, again.run_id))
    assert cert2["counts"]["deleted_object_versions"] == 0 and cert2["counts"]["stored_copies"] == 0
    assert cert2["counts"]["rows"] == {"user_uploads": {"deleted": 0}, "business_profiles": {"urls_nulled": 0}}
    assert len(cert2["blocked"]) == 2
