"""monthly_recovery_test end to end: passes on healthy data; a corrupted stored copy fails it, naming the
object; the scratch bucket and schema are gone after both runs."""

from __future__ import annotations

import json

import psycopg
import pytest
import yaml
from botocore.exceptions import ClientError

from dataprotection import recoverytest as rt
from dataprotection.config import DEFAULT_PLAN_PATH, load_plan
from dataprotection.reports import report_key
from dataprotection.snapshot import iter_manifest
from tests.e2e.recovery_world import backed_up_world

pytestmark = pytest.mark.airflow


@pytest.fixture
def plan(tmp_path, monkeypatch):
    """The shipped plan with a sample as large as the demo buckets: every stored copy is checked."""
    data = yaml.safe_load(DEFAULT_PLAN_PATH.read_text())
    data["recovery_test"]["sample_size"] = 1000
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("DATAPROTECTION_CONFIG", str(path))
    return load_plan()


@pytest.fixture
def dag():
    from dags.monthly_recovery_test import dag

    return dag


def _scratch_gone(s3, app_db, plan, run_id):
    bucket, schema = rt.scratch_names(plan, run_id)
    with pytest.raises(ClientError):
        s3.head_bucket(Bucket=bucket)
    with psycopg.connect(app_db) as conn:
        n = conn.execute("SELECT count(*) FROM information_schema.schemata WHERE schema_name = %s",
                         (schema,)).fetchone()[0]
    assert n == 0, f"scratch schema {schema} left behind"


def _report(s3, plan, run_id):
    return json.loads(s3.get_object(Bucket=plan.compliance_bucket,
                                    Key=report_key("recovery-test", run_id))["Body"].read())


def test_passes_on_healthy_data_and_leaves_no_scratch(dag, run_dag, plan, s3, s3_backup, app_db):
    sid = backed_up_world(plan, s3, s3_backup, app_db)
    run = run_dag(dag)
    assert run.state == "success", run.failed()
    assert run.tasks["remove_scratch"] == "success"
    # the archive scenario's restore is requested, then waited for by the (deferrable) restore sensor
    assert run.tasks["archive_restore_request"] == run.tasks["archive_restore_wait"] == "success"
    _scratch_gone(s3, app_db, plan, run.run_id)
    report = _report(s3, plan, run.run_id)
    assert report["passed"] is True
    by = {r["scenario"]: r for r in report["scenarios"]}
    assert list(by) == list(rt.SCENARIOS)
    live = sum(len(list(iter_manifest(s3, plan.backup.bucket, b, sid))) for b in plan.bucket_names)
    assert by["snapshot_sample"]["objects"] == live
    assert by["point_in_time"]["objects"] > 0 and by["archive_object"]["objects"] == 1
    assert by["table_export"]["objects"] == len(plan.database.tables)
    for r in report["scenarios"]:
        assert r["mismatches"] == [] and r["passed"] is True
        assert 0 < r["rto_seconds"] <= r["target_rto_seconds"]
        assert r["target_rto_seconds"] == plan.targets[r["target"]].rto_minutes * 60


def test_corrupted_stored_copy_fails_naming_it_and_leaves_no_scratch(dag, run_dag, plan, s3, s3_backup, app_db):
    sid = backed_up_world(plan, s3, s3_backup, app_db)
    bucket = plan.bucket_names[1]
    entry = next(e for e in iter_manifest(s3, plan.backup.bucket, bucket, sid) if e.size > 0)
    s3.put_object(Bucket=plan.backup.bucket, Key=entry.location, Body=b"other bytes than were backed up")
    run = run_dag(dag)
    assert run.state == "failed"
    assert run.tasks["write_report"] == "failed" and run.tasks["remove_scratch"] == "success"
    _scratch_gone(s3, app_db, plan, run.run_id)
    report = _report(s3, plan, run.run_id)
    assert report["passed"] is False
    by = {r["scenario"]: r for r in report["scenarios"]}
    assert [(m["bucket"], m["key"], m["stored_copy"]) for m in by["snapshot_sample"]["mismatches"]] == [
        (bucket, entry.key, f"s3://{plan.backup.bucket}/{entry.location}")]
    assert by["snapshot_sample"]["passed"] is False and by["table_export"]["passed"] is True
    assert rt.first_problem(report["scenarios"]).startswith(f"snapshot_sample: {entry.key} ")
