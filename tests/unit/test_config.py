"""The protection plan: the shipped plan loads; each kind of mistake gives a one-line error naming the field."""

import copy

import pytest
import yaml

from dataprotection.config import DEFAULT_PLAN_PATH, PlanError, load_plan, parse_plan

BASE = yaml.safe_load(DEFAULT_PLAN_PATH.read_text())


def test_shipped_plan_loads():
    plan = load_plan(DEFAULT_PLAN_PATH)
    assert plan.bucket_names == ["matbakh-files-uploads", "matbakh-files-profile", "matbakh-files-reports"]
    assert plan.bucket("matbakh-files-uploads").replica == "matbakh-files-uploads-backup"
    assert plan.regions.primary == "eu-central-1" and plan.regions.backup == "eu-west-1"
    assert plan.excludes == ["temp/*", "tmp/*"]
    assert plan.archive.storage_class == "DEEP_ARCHIVE"
    assert plan.targets["regional_outage"].rto_minutes == 240
    assert [t.name for t in plan.database.tables] == ["user_uploads", "business_profiles"]


def _mutate(fn):
    data = copy.deepcopy(BASE)
    fn(data)
    return data


def _dup_bucket(d):
    d["source_buckets"].append(copy.deepcopy(d["source_buckets"][0]))


CASES = {
    "unknown key": (lambda d: d["backup"].update(retention=3), "backup.retention: unknown key"),
    "unknown top-level key": (lambda d: d.update(bukets=[]), "bukets: unknown key"),
    "missing bucket": (lambda d: d["backup"].pop("bucket"), "backup.bucket: required field is missing"),
    "retention names a bucket not in the plan": (
        lambda d: d["retention"][0].update(bucket="no-such-bucket"),
        "retention[0].bucket: 'no-such-bucket' is not a source bucket",
    ),
    "bad region": (
        lambda d: d["regions"].update(backup="eu-west1"),
        "regions.backup: 'eu-west1' is not an AWS region name such as eu-central-1",
    ),
    "negative retention": (
        lambda d: d["backup"].update(retention_days=-1),
        "backup.retention_days: Input should be greater than or equal to 1 (got -1)",
    ),
    "negative expiry in the retention table": (
        lambda d: d["retention"][2].update(expire_days=-30),
        "retention[2].expire_days: Input should be greater than or equal to 1 (got -30)",
    ),
    "duplicate bucket": (_dup_bucket, "buckets: duplicate bucket 'matbakh-files-uploads'"),
    "replica equal to its source": (
        lambda d: d["source_buckets"][1].update(replica="matbakh-files-profile"),
        "source_buckets[1]: replica must differ from the source bucket 'matbakh-files-profile'",
    ),
    "bad storage class": (
        lambda d: d["archive"].update(storage_class="ICE"),
        "archive.storage_class: 'ICE' is not allowed",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_plan_gives_one_line_error(case):
    mutate, expected = CASES[case]
    with pytest.raises(PlanError) as info:
        parse_plan(_mutate(mutate), source="plan.yaml")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("plan.yaml: " + expected), message


def test_plan_file_errors(tmp_path, monkeypatch):
    missing = tmp_path / "missing.yaml"
    with pytest.raises(PlanError, match="protection plan not found"):
        load_plan(missing)
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 1\nregions: [unclosed\n")
    with pytest.raises(PlanError, match="not valid YAML at line"):
        load_plan(broken)
    monkeypatch.setenv("DATAPROTECTION_CONFIG", str(broken))
    with pytest.raises(PlanError, match=str(broken)):
        load_plan()


# --------------------------------------------------------------------------- recovery_test / failover / drill
FAILOVER_CASES = {
    "drill record equal to the production record": (
        lambda d: d["drill"].update(record_name=d["failover"]["record_name"]),
        "drill.record_name: must differ from failover.record_name (the production record)",
    ),
    "drill function equal to the production function": (
        lambda d: d["drill"].update(function_name=d["failover"]["function_name"]),
        "drill.function_name: must differ from failover.function_name (the production function)",
    ),
    "reserved Lambda variable as the region variable": (
        lambda d: d["failover"].update(region_variable="AWS_REGION"),
        "failover.region_variable: 'AWS_REGION' is not allowed: use A-Z, 0-9, _ starting with a letter, not AWS_*",
    ),
    "bucket variable naming a bucket not in the plan": (
        lambda d: d["failover"]["bucket_variables"].update(UPLOADS_BUCKET="matbakh-backups"),
        "failover.bucket_variables.UPLOADS_BUCKET: 'matbakh-backups' is not a source bucket with a replica",
    ),
    "record outside the zone": (
        lambda d: d["failover"].update(record_name="files.example.org."),
        "failover.record_name: 'files.example.org.' is not in zone 'matbakh.app.'",
    ),
    "endpoint template without a region": (
        lambda d: d["failover"].update(endpoint_template="{bucket}.s3.amazonaws.com"),
        "failover.endpoint_template: '{bucket}.s3.amazonaws.com' must be a host name containing {bucket} and {region}",
    ),
    "zero sample size": (
        lambda d: d["recovery_test"].update(sample_size=0),
        "recovery_test.sample_size: Input should be greater than or equal to 1 (got 0)",
    ),
    "scenario target not in targets": (
        lambda d: d["recovery_test"]["scenario_targets"].update(table_export="meteor_strike"),
        "recovery_test.scenario_targets.table_export: 'meteor_strike' is not allowed",
    ),
    "negative replication wait": (
        lambda d: d["drill"].update(replication_wait_seconds=-1),
        "drill.replication_wait_seconds: Input should be greater than or equal to 0 (got -1)",
    ),
}


@pytest.mark.parametrize("case", sorted(FAILOVER_CASES))
def test_bad_failover_drill_or_recovery_test_section(case):
    mutate, expected = FAILOVER_CASES[case]
    with pytest.raises(PlanError) as info:
        parse_plan(_mutate(mutate), source="plan.yaml")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("plan.yaml: " + expected), message


def test_shipped_failover_and_drill_sections():
    plan = load_plan(DEFAULT_PLAN_PATH)
    assert plan.drill.record_name != plan.failover.record_name
    assert plan.drill.function_name != plan.failover.function_name
    assert plan.failover.region_variable != "AWS_REGION"
    assert set(plan.failover.bucket_variables.values()) <= set(plan.bucket_names)


# --------------------------------------------------------------------------- protection, monitoring, temp prefixes
PROTECTION_CASES = {
    "kms without a key": (lambda d: d["protection"].update(encryption="aws:kms"),
                          "protection: kms_key_id is required with encryption aws:kms and allowed only with it"),
    "unknown encryption": (lambda d: d["protection"].update(encryption="DES"),
                           "protection.encryption: 'DES' is not allowed"),
    "bad role name": (lambda d: d["protection"].update(replication_role="a role"),
                      "protection.replication_role: 'a role' does not match"),
    "zero noncurrent days": (lambda d: d["protection"].update(noncurrent_version_expire_days=0),
                             "protection.noncurrent_version_expire_days: Input should be greater than or equal to 1"),
    "unknown monitoring key": (lambda d: d["monitoring"].update(rpo_hours=3), "monitoring.rpo_hours: unknown key"),
    "zero snapshot age": (lambda d: d["monitoring"].update(snapshot_max_age_hours=0),
                          "monitoring.snapshot_max_age_hours: Input should be greater than or equal to 1"),
    "temporary prefix not a folder": (lambda d: d["retention"][3].update(prefix="temp"),
                                      "retention[3]: temporary prefix 'temp' must be a folder ending in '/'"),
    "transition after expiry": (lambda d: d["retention"][2].update(
        transitions=[{"days": 40, "storage_class": "GLACIER"}]),
                                "retention[2]: transition days [40] must be increasing and below expire_days 30"),
}


@pytest.mark.parametrize("case", sorted(PROTECTION_CASES))
def test_bad_protection_or_monitoring_section(case):
    mutate, expected = PROTECTION_CASES[case]
    with pytest.raises(PlanError) as info:
        parse_plan(_mutate(mutate), source="plan.yaml")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("plan.yaml: " + expected), message


def test_shipped_protection_and_monitoring_sections():
    plan = load_plan(DEFAULT_PLAN_PATH)
    assert plan.protection.encryption == "AES256" and plan.protection.kms_key_id is None
    assert plan.monitoring.snapshot_max_age_hours == 26 and plan.monitoring.archive_max_age_days == 8
    assert [r.prefix for r in plan.retention if r.temporary] == ["temp/", "tmp/"]
