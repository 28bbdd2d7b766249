"""Protection settings (core) against the moto server: desired state, drift, fixing only the drift."""

import json

import pytest

from dataprotection import lifecycle, protection
from dataprotection.protection import Enforcer
from devstack.seed import create_buckets


@pytest.fixture
def iam(s3_endpoint, plan, boto_session):
    return boto_session.client("iam", region_name=plan.regions.primary, endpoint_url=s3_endpoint)


def enforcer(plan, s3, s3_backup, iam):
    return Enforcer(plan, s3, s3_backup, iam)


def bucket_state(plan, s3, s3_backup) -> dict:
    """Everything S3 reports about the protection of every plan bucket (for before/after comparisons)."""
    out = {}
    for t in protection.targets(plan):
        client = s3_backup if t.region == plan.regions.backup else s3
        state = {}
        for name, call in (("versioning", client.get_bucket_versioning), ("encryption", client.get_bucket_encryption),
                           ("pab", client.get_public_access_block),
                           ("lifecycle", client.get_bucket_lifecycle_configuration),
                           ("replication", client.get_bucket_replication)):
            try:
                resp = call(Bucket=t.name)
                resp.pop("ResponseMetadata", None)
                state[name] = resp
            except client.exceptions.ClientError as exc:
                state[name] = exc.response["Error"]["Code"]
        out[t.name] = state
    return out


def test_fresh_buckets_are_configured_then_nothing_changes(plan, s3, s3_backup, iam):
    create_buckets(plan, s3, s3_backup)
    first = enforcer(plan, s3, s3_backup, iam).run(apply=True)
    assert first.drifts and not first.unfixed
    fields = {(d.bucket, d.field) for d in first.drifts}
    role = f"iam:role/{plan.protection.replication_role}"
    assert (role, "exists") in fields
    for b in plan.source_buckets:
        assert {(b.name, "encryption"), (b.name, "public_access_block"), (b.name, "replication")} <= fields
        assert (b.replica, "encryption") in fields
    # service buckets: versioning on (seeded unversioned), except the export bucket (not enforced)
    assert (plan.backup.bucket, "versioning") in fields and (plan.archive.bucket, "versioning") in fields
    assert not any(d.bucket == plan.export_bucket and d.field == "versioning" for d in first.drifts)

    state = bucket_state(plan, s3, s3_backup)
    for t in protection.targets(plan):
        s = state[t.name]
        assert s["encryption"]["ServerSideEncryptionConfiguration"]["Rules"][0][
            "ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
        assert all(s["pab"]["PublicAccessBlockConfiguration"].values())
        assert [r["ID"] for r in s["lifecycle"]["Rules"]] == [r["ID"] for r in t.lifecycle_rules]
        if t.kind != "export":
            assert s["versioning"]["Status"] == "Enabled"
    uploads = state[plan.bucket_names[0]]["lifecycle"]["Rules"]
    by_id = {r["ID"]: r for r in uploads}
    assert by_id["user-uploads"]["Transitions"] == [{"Days": 30, "StorageClass": "STANDARD_IA"},
                                                   {"Days": 90, "StorageClass": "GLACIER"},
                                                   {"Days": 365, "StorageClass": "DEEP_ARCHIVE"}]
    assert by_id["user-uploads"]["Expiration"] == {"Days": 2555}
    assert by_id["temp-files"]["Filter"] == {"Prefix": "temp/"}
    assert by_id["temp-files"]["NoncurrentVersionExpiration"] == {
        "NoncurrentDays": plan.protection.temporary_noncurrent_expire_days}
    assert "profile-images" not in by_id  # a rule of another bucket
    assert by_id[lifecycle.BUCKET_WIDE_ID]["AbortIncompleteMultipartUpload"] == {
        "DaysAfterInitiation": plan.protection.abort_incomplete_multipart_days}
    exports = {r["ID"]: r for r in state[plan.export_bucket]["lifecycle"]["Rules"]}
    assert exports[lifecycle.EXPORTS_ID]["Expiration"] == {"Days": plan.gdpr.export_expire_days}

    policy = iam.get_role_policy(RoleName=plan.protection.replication_role,
                                 PolicyName=plan.protection.replication_role)["PolicyDocument"]
    replicate = next(s for s in policy["Statement"] if "s3:ReplicateObject" in s["Action"])
    assert sorted(replicate["Resource"]) == sorted(f"arn:aws:s3:::{b.replica}/*" for b in plan.source_buckets)

    again = enforcer(plan, s3, s3_backup, iam).run(apply=True)
    assert again.drifts == [] and again.changes == []
    assert bucket_state(plan, s3, s3_backup) == state


def test_each_source_replicates_only_into_its_own_replica(plan, s3, s3_backup, iam):
    """Regression: the runbook applied one configuration (uploads -> uploads replica) to both buckets."""
    create_buckets(plan, s3, s3_backup)
    enforcer(plan, s3, s3_backup, iam).run(apply=True)
    arn = iam.get_role(RoleName=plan.protection.replication_role)["Role"]["Arn"]
    replicas = {b.replica for b in plan.source_buckets}
    for b in plan.source_buckets:
        cfg = s3.get_bucket_replication(Bucket=b.name)["ReplicationConfiguration"]
        assert cfg["Role"] == arn
        destinations = {r["Destination"]["Bucket"] for r in cfg["Rules"]}
        assert destinations == {f"arn:aws:s3:::{b.replica}"}
        assert not destinations & {f"arn:aws:s3:::{r}" for r in replicas - {b.replica}}
        assert [r["ID"] for r in cfg["Rules"]] == [
            protection.replication_rule_id(p, b.replication.delete_markers) for p in b.replication.prefixes]
        assert {r["Destination"]["StorageClass"] for r in cfg["Rules"]} == {b.replication.storage_class}

    # the runbook's bug, done by hand: the uploads configuration applied to the profile bucket
    uploads, profile = plan.source_buckets[0], plan.source_buckets[1]
    wrong = s3.get_bucket_replication(Bucket=uploads.name)["ReplicationConfiguration"]
    s3.put_bucket_replication(Bucket=profile.name, ReplicationConfiguration=wrong)
    drifts = enforcer(plan, s3, s3_backup, iam).run(apply=False).drifts
    assert [(d.bucket, d.field) for d in drifts] == [(profile.name, "replication")]
    assert drifts[0].actual["rules"][0]["destination"] == f"arn:aws:s3:::{uploads.replica}"
    assert drifts[0].expected["rules"][0]["destination"] == f"arn:aws:s3:::{profile.replica}"


def test_report_only_changes_nothing(plan, s3, s3_backup, iam):
    create_buckets(plan, s3, s3_backup)
    before = bucket_state(plan, s3, s3_backup)
    result = enforcer(plan, s3, s3_backup, iam).run(apply=False)
    assert result.drifts and len(result.unfixed) == len(result.drifts) and result.changes == []
    assert bucket_state(plan, s3, s3_backup) == before
    assert iam.list_roles()["Roles"] == []


def test_missing_source_bucket_is_reported_not_created_service_buckets_are(plan, s3, s3_backup, iam):
    create_buckets(plan, s3, s3_backup)
    gone = plan.bucket_names[2]
    s3.delete_bucket(Bucket=gone)
    s3.delete_bucket(Bucket=plan.archive.bucket)
    result = enforcer(plan, s3, s3_backup, iam).run(apply=True)
    unfixed = [(d.bucket, d.field) for d in result.unfixed]
    assert unfixed == [(gone, "exists")]
    assert not protection.bucket_exists(s3, gone)
    assert protection.bucket_exists(s3, plan.archive.bucket)
    assert f"create_bucket {plan.archive.bucket} ({plan.regions.primary})" in result.changes
    assert s3.get_bucket_versioning(Bucket=plan.archive.bucket)["Status"] == "Enabled"


def test_changed_plan_prefix_is_drift_although_s3_does_not_echo_filters(plan, s3, s3_backup, iam):
    """moto returns Filter {"Prefix": ""} whatever was stored: the rule ID carries the prefix."""
    create_buckets(plan, s3, s3_backup)
    enforcer(plan, s3, s3_backup, iam).run(apply=True)
    changed = plan.model_copy(update={"source_buckets": [
        plan.source_buckets[0].model_copy(update={"replication": plan.source_buckets[0].replication.model_copy(
            update={"prefixes": ["user-uploads/", "shared/"]})}),
        *plan.source_buckets[1:]]})
    drifts = Enforcer(changed, s3, s3_backup, iam).diff()
    assert [(d.bucket, d.field) for d in drifts] == [(plan.bucket_names[0], "replication")]
    assert len(drifts[0].expected["rules"]) == 2 and len(drifts[0].actual["rules"]) == 1


def test_normalized_lifecycle_ignores_response_shape():
    put = lifecycle._rule("r", "a/", transitions=[(30, "STANDARD_IA")], expire_days=90, noncurrent_days=7,
                          abort_days=3)
    legacy = {"ID": "r", "Status": "Enabled", "Prefix": "a/",
              "Transitions": [{"Days": 30, "StorageClass": "STANDARD_IA"}],
              "Expiration": {"Days": 90}, "NoncurrentVersionExpiration": {"NoncurrentDays": 7},
              "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 3}}
    wrapped = {**put, "Filter": {"And": {"Prefix": "a/"}}}
    assert lifecycle.normalize_rule(put) == lifecycle.normalize_rule(legacy) == lifecycle.normalize_rule(wrapped)
    tagged = {**put, "Filter": {"And": {"Prefix": "a/", "Tags": [{"Key": "k", "Value": "v"}]}}}
    assert lifecycle.normalize_rule(tagged) != lifecycle.normalize_rule(put)
    assert json.dumps(lifecycle.normalize_rule(put), sort_keys=True)
