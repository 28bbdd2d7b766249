"""s3_protection_setup end to end with dag.test(): configure, no-op, fix exactly the drift, report-only."""

import json

import pytest

from dataprotection.reports import report_key
from devstack.seed import create_buckets
from tests.unit.test_protection import bucket_state

pytestmark = pytest.mark.airflow


@pytest.fixture
def dag():
    from dags.s3_protection_setup import dag

    return dag


@pytest.fixture
def iam(s3_endpoint, plan, boto_session):
    return boto_session.client("iam", region_name=plan.regions.primary, endpoint_url=s3_endpoint)


def _report(s3, plan, run_id):
    key = report_key("protection-setup", run_id)
    return json.loads(s3.get_object(Bucket=plan.compliance_bucket, Key=key)["Body"].read())


def test_configure_then_no_drift_then_fix_exactly_three_then_report_only(dag, run_dag, s3, s3_backup, plan, iam):
    create_buckets(plan, s3, s3_backup)
    from airflow.dag_processing.dagbag import DagBag

    from tests.dags.test_dag_integrity import DAGS_DIR

    parsed = DagBag(dag_folder=str(DAGS_DIR / "s3_protection_setup.py")).dags["s3_protection_setup"]
    assert parsed.params["apply"] is True  # the scheduled (conf-less) run applies

    # 1. fresh buckets: everything configured (explicit conf: dag.test keeps a previous run's conf)
    first = run_dag(dag, conf={"apply": True})
    assert first.state == "success", first.failed()
    report = _report(s3, plan, first.run_id)
    assert report["kind"] == "protection-setup" and report["apply"] is True
    assert report["drift_count"] > 0 and report["unfixed"] == 0 and report["fixed"] == report["drift_count"]
    assert all(d["fixed"] for d in report["drifts"])
    for b in plan.source_buckets:
        cfg = s3.get_bucket_replication(Bucket=b.name)["ReplicationConfiguration"]
        assert {r["Destination"]["Bucket"] for r in cfg["Rules"]} == {f"arn:aws:s3:::{b.replica}"}
        assert s3_backup.get_bucket_versioning(Bucket=b.replica)["Status"] == "Enabled"
    iam.get_role(RoleName=plan.protection.replication_role)
    configured = bucket_state(plan, s3, s3_backup)

    # 2. second run: no drift, nothing changed
    second = run_dag(dag, conf={"apply": True})
    assert second.state == "success", second.failed()
    report = _report(s3, plan, second.run_id)
    assert report["drift_count"] == 0 and report["drifts"] == [] and report["changes"] == []
    assert bucket_state(plan, s3, s3_backup) == configured

    # 3. by hand: versioning suspended, other encryption, one lifecycle rule changed
    uploads, profile, reports = plan.bucket_names
    s3.put_bucket_versioning(Bucket=uploads, VersioningConfiguration={"Status": "Suspended"})
    s3.put_bucket_encryption(Bucket=profile, ServerSideEncryptionConfiguration={"Rules": [
        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "alias/other"}}]})
    rules = s3.get_bucket_lifecycle_configuration(Bucket=reports)["Rules"]
    changed = next(r for r in rules if r["ID"] == "reports")
    changed["Expiration"] = {"Days": 3650}
    s3.put_bucket_lifecycle_configuration(Bucket=reports, LifecycleConfiguration={"Rules": rules})
    tampered = bucket_state(plan, s3, s3_backup)

    # 4. apply=false: reports exactly those three, changes nothing, fails
    dry = run_dag(dag, conf={"apply": False})
    assert dry.state == "failed" and dry.failed() == ["enforce_protection"]
    report = _report(s3, plan, dry.run_id)
    assert report["apply"] is False and report["changes"] == [] and report["unfixed"] == 3
    assert sorted((d["bucket"], d["field"]) for d in report["drifts"]) == sorted(
        [(uploads, "versioning"), (profile, "encryption"), (reports, "lifecycle.reports")])
    assert bucket_state(plan, s3, s3_backup) == tampered

    # 5. the next applying run reports exactly those three drifts and fixes them
    third = run_dag(dag, conf={"apply": True})
    assert third.state == "success", third.failed()
    report = _report(s3, plan, third.run_id)
    drifts = {(d["bucket"], d["field"]): d for d in report["drifts"]}
    assert set(drifts) == {(uploads, "versioning"), (profile, "encryption"), (reports, "lifecycle.reports")}
    assert all(d["fixed"] for d in drifts.values())
    assert drifts[(uploads, "versioning")]["expected"] == "Enabled"
    assert drifts[(uploads, "versioning")]["actual"] == "Suspended"
    assert drifts[(profile, "encryption")]["actual"] == {"algorithm": "aws:kms", "kms_key_id": "alias/other"}
    assert drifts[(reports, "lifecycle.reports")]["actual"]["expiration_days"] == 3650
    assert drifts[(reports, "lifecycle.reports")]["expected"]["expiration_days"] == 30
    assert sorted(report["changes"]) == sorted([f"put_bucket_versioning {uploads}", f"put_bucket_encryption {profile}",
                                                f"put_bucket_lifecycle_configuration {reports}"])
    assert bucket_state(plan, s3, s3_backup) == configured


def test_missing_source_bucket_fails_the_run(dag, run_dag, s3, s3_backup, plan):
    create_buckets(plan, s3, s3_backup)
    s3.delete_bucket(Bucket=plan.bucket_names[2])
    run = run_dag(dag, conf={"apply": True})
    assert run.state == "failed" and run.failed() == ["enforce_protection"]
    report = _report(s3, plan, run.run_id)
    assert [(d["bucket"], d["field"], d["fixed"]) for d in report["drifts"] if not d["fixed"]] == [
        (plan.bucket_names[2], "exists", False)]
    # everything else was still fixed
    assert s3.get_bucket_replication(Bucket=plan.bucket_names[0])["ReplicationConfiguration"]["Rules"]
