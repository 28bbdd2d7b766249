"""Integrity of every DAG file in dags/ (DESIGN §2 and §6): imports cleanly, ids and schedules
match the catalogue, tags, docs, owner, retries with backoff, a failure notifier; manual DAGs
take validated params. Runs over whatever is in dags/ — new DAGs are covered automatically."""

import time
from pathlib import Path

import pytest

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"
DAG_FILES = sorted(p for p in DAGS_DIR.glob("*.py") if not p.name.startswith("_"))

# The contract: dag_id -> schedule (None = manual only).
CATALOGUE = {
    "s3_daily_backup": "0 2 * * *",
    "s3_weekly_archive": "0 3 * * 0",
    "s3_temp_cleanup": "0 4 * * *",
    "s3_protection_setup": "@daily",
    "backup_monitoring": "@hourly",
    "monthly_recovery_test": "@monthly",
    "quarterly_dr_drill": "0 5 1 1,4,7,10 *",
    "s3_file_recovery": None,
    "s3_bulk_recovery": None,
    "s3_cross_region_recovery": None,
    "s3_complete_recovery": None,
    "db_records_recovery": None,
    "s3_regional_failover": None,
    "gdpr_user_erasure": None,
    "gdpr_user_export": None,
}


# DAGs that also run on Asset events: their time schedule (compared with the catalogue) and their assets.
ASSET_OR_TIME = {"backup_monitoring": "daily_snapshot__"}


def _schedule(dag):
    """The catalogue value of a DAG's schedule. An asset-or-time DAG must be exactly an AssetOrTimeSchedule
    whose timetable is the catalogue's cron (in UTC) and whose assets are the daily snapshot Asset of every
    plan bucket (any of them triggers a run)."""
    if dag.dag_id not in ASSET_OR_TIME:
        return dag.schedule
    from airflow.timetables.assets import AssetOrTimeSchedule
    from airflow.timetables.trigger import CronTriggerTimetable

    from dataprotection.config import load_plan

    schedule = dag.schedule
    assert isinstance(schedule, AssetOrTimeSchedule), f"{dag.dag_id}: schedule must be an AssetOrTimeSchedule"
    timetable = schedule.timetable
    assert isinstance(timetable, CronTriggerTimetable) and str(timetable._timezone) == "UTC"
    plan = load_plan()
    prefix = ASSET_OR_TIME[dag.dag_id]
    expected = {(f"{prefix}{b}", f"s3://{plan.backup.bucket}/snapshots/{b}") for b in plan.bucket_names}
    condition = schedule.asset_condition
    # the parsed DAG holds serialized forms (AssetAny of SerializedAsset; URIs normalised without a final '/')
    assert type(condition).__name__ in ("AssetAny", "SerializedAssetAny"), \
        f"{dag.dag_id}: any one fresh snapshot must trigger a run (AssetAny, not a list, which means all)"
    got = [(a.name, a.uri.rstrip("/")) for a in condition.objects]
    assert all(type(a).__name__ in ("Asset", "SerializedAsset") for a in condition.objects)
    assert sorted(got) == sorted(expected), f"{dag.dag_id}: assets must be the daily snapshot of every plan bucket"
    cron = {"0 * * * *": "@hourly"}.get(timetable._expression, timetable._expression)
    return cron


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    started = time.monotonic()
    bag = DagBag(dag_folder=str(DAGS_DIR))
    bag.parse_seconds = time.monotonic() - started
    return bag


def test_dags_folder_imports_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert len(dagbag.dags) == len(DAG_FILES)


def test_parsing_is_fast(dagbag):
    # DAG files are parsed every 30 s by the dag-processor: no I/O at top level.
    assert dagbag.parse_seconds < 5 + 2 * len(DAG_FILES)


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.stem)
def test_dag_contract(dagbag, path):
    dag = dagbag.dags.get(path.stem)
    assert dag is not None, f"{path.name} must define a DAG whose dag_id is {path.stem!r}"
    assert dag.dag_id in CATALOGUE, f"{dag.dag_id} is not in the DAG catalogue (DESIGN §2)"
    assert _schedule(dag) == CATALOGUE[dag.dag_id], f"{dag.dag_id}: schedule is part of the contract"
    assert dag.tags, "tags are required"
    assert dag.doc_md and len(dag.doc_md) > 80, "doc_md must explain the DAG"
    assert not dag.catchup
    for task in dag.tasks:
        assert task.owner and task.owner != "airflow", f"{task.task_id}: set an owner"
        assert task.retries >= 2, f"{task.task_id}: retries >= 2"
        assert task.retry_exponential_backoff, f"{task.task_id}: exponential backoff"
        assert task.on_failure_callback, f"{task.task_id}: failure notifier missing"


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.stem)
def test_manual_dags_validate_params(dagbag, path):
    dag = dagbag.dags.get(path.stem)
    if CATALOGUE.get(dag.dag_id, "x") is not None:
        pytest.skip("scheduled DAG")
    assert dag.params, "manual DAGs declare typed params"
    for name, param in dag.params.items():
        schema = param.schema
        assert schema.get("type"), f"param {name} needs a JSON-schema type"
        assert param.description, f"param {name} needs a description for the trigger form"
    if "dry_run" in dag.params:
        assert dag.params["dry_run"] is True, "destructive DAGs default to dry_run=True"


BAD_PARAMS = {
    "s3_complete_recovery": [
        {"recovery_date": "yesterday"},
        {"recovery_date": "2026-12-01; DROP TABLE x"},
        {"tier": "Fast"},
        {"restore_days": 0},
        {"restore_days": 366},
        {"target_suffix": "/../../etc"},
        {"target_suffix": ""},
        {"dry_run": "no"},
    ],
    "s3_cross_region_recovery": [
        {"source_bucket": "matbakh-backups"},
        {"source_bucket": "../../etc"},
        {"source_bucket": ""},
        {"target": "elsewhere"},
        {"target": ""},
        {"dry_run": "no"},
    ],
    "db_records_recovery": [
        {"table": "pg_authid"},
        {"table": "user_uploads; DROP TABLE user_uploads"},
        {"snapshot_date": "yesterday"},
        {"snapshot_date": "2026-13-01"},
        {"snapshot_date": "2026-12-01; DROP TABLE x"},
        {"url_rewrite_from": ""},
        {"url_rewrite_to": "x" * 3000},
        {"url_rewrite_from": 42},
        {"dry_run": "no"},
    ],
    "s3_regional_failover": [
        {"direction": "sideways"},
        {"direction": ""},
        {"direction": "failover; rm -rf /"},
        {"dry_run": "no"},
    ],
    "s3_file_recovery": [
        {"bucket": "not-in-the-plan"},
        {"bucket": "matbakh-backups"},
        {"key": ""},
        {"key": "a.txt\nb.txt"},
        {"mode": "oldest"},
        {"version_id": "v1; rm -rf /"},
        {"as_of": "yesterday"},
        {"as_of": "2026-12-01"},
        {"as_of": "2026-12-01T10:00:00"},
        {"as_of": "2026-13-01T10:00:00Z"},
        {"source": "tape"},
        {"destination": "elsewhere"},
        {"recovery_prefix": ""},
        {"recovery_prefix": "recovered"},
        {"recovery_prefix": "../outside/"},
        {"recovery_prefix": "/absolute/"},
    ],
    "s3_bulk_recovery": [
        {"bucket": "not-in-the-plan"},
        {"prefix": ""},
        {"prefix": "user-uploads/u100"},
        {"as_of": "now"},
        {"as_of": "2026-12-01 10:00:00"},
        {"as_of": "2026-12-01T25:00:00Z"},
        {"source": "replica"},
        {"destination": "elsewhere"},
        {"target_bucket": "Not_A_Bucket"},
        {"target_prefix": "a/../b/"},
        {"target_prefix": "no-slash"},
        {"delete_newer": "yes"},
        {"dry_run": "no"},
    ],
}


@pytest.mark.parametrize(
    ("dag_id", "bad"), [(d, b) for d, cases in BAD_PARAMS.items() for b in cases], ids=lambda v: str(v)
)
def test_trigger_form_rejects_bad_params(dagbag, dag_id, bad):
    import copy

    from airflow.sdk.exceptions import ParamValidationError

    dag = dagbag.dags.get(dag_id)
    if dag is None:
        pytest.skip(f"{dag_id} not in dags/ yet")
    copy.deepcopy(dag.params).validate()  # the defaults are valid
    for name, value in bad.items():
        param = copy.deepcopy(dag.params.get_param(name))
        with pytest.raises(ParamValidationError):
            param.resolve(value)


# --------------------------------------------------------------------------- gdpr_user_erasure / export
# Both need a user id and a ticket: no default is valid, so an empty trigger form cannot start a run.
GDPR_GOOD = {
    "gdpr_user_erasure": {"user_id": "u1", "request_reference": "DPO-2026-0042", "dry_run": True},
    "gdpr_user_export": {"user_id": "u1", "request_reference": "DPO-2026-0042"},
}
GDPR_BAD = [
    {"user_id": "x' OR '1'='1"},
    {"user_id": "1; DROP TABLE user_uploads"},
    {"user_id": "../u1"},
    {"user_id": ""},
    {"user_id": "u" * 65},
    {"user_id": None},
    {"request_reference": ""},
    {"request_reference": "DPO-1; rm -rf /"},
    {"request_reference": "../etc"},
    {"request_reference": None},
]


@pytest.mark.parametrize(
    ("dag_id", "bad"),
    [(d, b) for d in GDPR_GOOD for b in GDPR_BAD] + [("gdpr_user_erasure", {"dry_run": "no"})],
    ids=lambda v: str(v)[:40],
)
def test_gdpr_params_reject_bad_input(dagbag, dag_id, bad):
    import copy

    from airflow.sdk.exceptions import ParamValidationError

    dag = dagbag.dags.get(dag_id)
    assert dag is not None, f"{dag_id} is in the DAG catalogue"
    assert set(dag.params) == set(GDPR_GOOD[dag_id])
    with pytest.raises(ParamValidationError):
        copy.deepcopy(dag.params).validate()  # the empty form is refused
    good = copy.deepcopy(dag.params)
    good.update(GDPR_GOOD[dag_id])
    assert good.validate() == GDPR_GOOD[dag_id]
    params = copy.deepcopy(dag.params)
    with pytest.raises(ParamValidationError):
        params.update({**GDPR_GOOD[dag_id], **bad})
        params.validate()
