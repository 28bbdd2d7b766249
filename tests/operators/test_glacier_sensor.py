"""S3GlacierRestoreSensor and S3GlacierRestoreTrigger against the moto server, with a simulated restore delay
(moto's state manager: `s3::keyrestore` progresses by time; see `request_slow_restores` for its quirks)."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest

from dataprotection.archive import check_restores, request_restores, snapshot_locations
from dataprotection.snapshot import SnapshotSpec, take_snapshot
from dataprotection.triggers.glacier import S3GlacierRestoreTrigger
from tests.fixtures.glacier_sensor_dags import request_slow_restores

BUCKET = "glacier-sensor-test"
KEYS = ["archive/a.bin", "archive/b c+d%.bin", "archive/nested/e.bin"]


@pytest.fixture
def archived(s3, s3_endpoint, plan):
    """A bucket with DEEP_ARCHIVE objects (no restore requested yet); returns the s3 client."""
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": plan.regions.primary})
    for key in KEYS:
        s3.put_object(Bucket=BUCKET, Key=key, Body=key.encode(), StorageClass="DEEP_ARCHIVE")
    return s3


def _trigger(plan, **kw) -> S3GlacierRestoreTrigger:
    kw.setdefault("bucket", BUCKET)
    kw.setdefault("keys", list(KEYS))
    kw.setdefault("aws_conn_id", "aws_default")
    kw.setdefault("region", plan.regions.primary)
    kw.setdefault("poll_interval", 0.5)
    kw.setdefault("concurrency", 4)
    return S3GlacierRestoreTrigger(**kw)


def _first_event(trigger: S3GlacierRestoreTrigger, limit: float = 20):
    async def first():
        gen = trigger.run()
        try:
            return await asyncio.wait_for(anext(gen), limit)
        finally:
            await gen.aclose()

    return asyncio.run(first()).payload


# --------------------------------------------------------------------------- trigger
def test_trigger_serialize_round_trips(plan):
    trigger = _trigger(plan, timeout_at=1_900_000_000.5, concurrency=7, poll_interval=2.5)
    classpath, kwargs = trigger.serialize()
    assert classpath == "dataprotection.triggers.glacier.S3GlacierRestoreTrigger"
    assert kwargs == {"bucket": BUCKET, "keys": KEYS, "snapshot": None, "aws_conn_id": "aws_default",
                      "region": plan.regions.primary, "poll_interval": 2.5, "timeout_at": 1_900_000_000.5,
                      "concurrency": 7}
    from airflow.sdk._shared.module_loading import import_string

    assert import_string(classpath)(**kwargs).serialize() == (classpath, kwargs)
    # as Airflow stores and reloads them (serde), as dag.test() and the triggerer do
    from airflow.sdk.serde import deserialize, serialize

    assert deserialize(serialize(kwargs)) == kwargs
    snap = _trigger(plan, keys=None, snapshot={"store_bucket": "s", "source_bucket": "b", "snapshot_id": "2026-W01"})
    assert S3GlacierRestoreTrigger(**snap.serialize()[1]).serialize() == snap.serialize()


def test_trigger_succeeds_once_restores_complete(archived, s3_endpoint, plan, capfd):
    request_slow_restores(archived, s3_endpoint, BUCKET, KEYS, 3)
    started = time.monotonic()
    event = _first_event(_trigger(plan, timeout_at=time.time() + 20))
    logged = capfd.readouterr().out  # Airflow's logging (structlog) writes to stdout
    assert "s3://glacier-sensor-test: 0 of 3 restored (0 restored, 3 in progress" in logged
    assert "s3://glacier-sensor-test: 3 of 3 restored (3 restored, 0 in progress" in logged
    assert event["status"] == "success", event
    assert time.monotonic() - started > 1  # it really waited for moto's delay
    assert (event["total"], event["restored"], event["in_progress"], event["missing_count"]) == (3, 3, 0, 0)
    assert event["complete"] is True and event["bucket"] == BUCKET
    assert event["bytes"] == sum(len(k.encode()) for k in KEYS)


def test_trigger_waits_for_a_snapshots_stored_objects(s3, s3_endpoint, plan):
    for name in ("sensor-src", "sensor-archive"):
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": plan.regions.primary})
    for key in KEYS:
        s3.put_object(Bucket="sensor-src", Key=key, Body=b"x" * 10)
    take_snapshot(s3, s3, SnapshotSpec("sensor-src", "sensor-archive", "2026-W01", kind="weekly",
                                       storage_class="DEEP_ARCHIVE", concurrency=4))
    snapshot = {"store_bucket": "sensor-archive", "source_bucket": "sensor-src", "snapshot_id": "2026-W01"}
    locations = list(snapshot_locations(s3, **snapshot))
    assert len(locations) == len(KEYS)
    request_slow_restores(s3, s3_endpoint, "sensor-archive", locations, 2)
    event = _first_event(_trigger(plan, bucket="sensor-archive", keys=None, snapshot=snapshot,
                                  timeout_at=time.time() + 20))
    assert event["status"] == "success", event
    assert (event["total"], event["restored"]) == (3, 3)


def test_trigger_times_out_with_a_clear_message(archived, s3_endpoint, plan):
    request_slow_restores(archived, s3_endpoint, BUCKET, KEYS[:2], 120)  # the third one is never requested
    started = time.monotonic()
    event = _first_event(_trigger(plan, timeout_at=time.time() + 1.2))
    assert time.monotonic() - started < 5
    assert event["status"] == "timeout", event
    assert event["message"].startswith(f"restore of s3://{BUCKET} not complete: 0 of 3 restored after ")
    assert "2 still in progress, 1 never requested" in event["message"]
    assert (event["in_progress"], event["not_requested"]) == (2, 1)


def test_trigger_reports_missing_keys(archived, plan):
    request_restores(archived, BUCKET, KEYS, days=1)
    event = _first_event(_trigger(plan, keys=[*KEYS, "archive/gone.bin"], timeout_at=time.time() + 20))
    assert event["status"] == "error" and event["reason"] == "missing", event
    assert "1 of 4 objects do not exist in s3://glacier-sensor-test: 'archive/gone.bin'" in event["message"]
    assert event["missing"] == ["archive/gone.bin"]


def test_trigger_turns_s3_errors_into_events(archived, plan):
    # a bucket that does not exist: every HEAD is a 404; the message blames the bucket, not the keys
    event = _first_event(_trigger(plan, bucket="no-such-bucket", timeout_at=None))
    assert event["status"] == "error", event
    assert event["message"].startswith("the bucket s3://no-such-bucket does not exist, so none of the 3 objects")
    # reading a snapshot manifest from a bucket that does not exist: an S3 exception, as an event
    snapshot = {"store_bucket": "no-such-bucket", "source_bucket": "src", "snapshot_id": "2026-W01"}
    event = _first_event(_trigger(plan, bucket="no-such-bucket", keys=None, snapshot=snapshot))
    assert event == {"status": "error", "reason": "exception", "message": event["message"]}
    assert "NoSuchBucket" in event["message"] and "s3://no-such-bucket" in event["message"]
    # a snapshot that is not complete (no summary): the core's error, as an event
    snapshot = {"store_bucket": BUCKET, "source_bucket": "src", "snapshot_id": "2026-W01"}
    event = _first_event(_trigger(plan, keys=None, snapshot=snapshot))
    assert event["reason"] == "exception" and "SnapshotError" in event["message"], event
    # HEAD refused (403) by a bucket policy: a ClientError inside the thread, as an event
    deny = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": f"arn:aws:s3:::{BUCKET}/*"}]}
    archived.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps(deny))
    event = _first_event(_trigger(plan, timeout_at=time.time() + 10))
    assert event["status"] == "error" and event["reason"] == "exception", event
    assert "ClientError" in event["message"] and "403" in event["message"]


# --------------------------------------------------------------------------- execute_complete
@pytest.fixture
def sensor():
    from dataprotection.sensors.glacier import S3GlacierRestoreSensor

    return S3GlacierRestoreSensor(task_id="wait", bucket=BUCKET, keys=KEYS, aws_conn_id="aws_default",
                                  region="eu-central-1", timeout=600)


def test_execute_complete_returns_counts_on_success(sensor):
    counts = sensor.execute_complete({}, {"status": "success", "total": 3, "restored": 3, "ready": 3})
    assert counts == {"total": 3, "restored": 3, "ready": 3}
    json.dumps(counts)


@pytest.mark.parametrize(
    ("event", "error", "text"),
    [
        (None, "AirflowException", "without a trigger event"),
        ({"status": "error", "reason": "exception", "message": "checking restores failed: boom"},
         "AirflowException", "checking restores failed: boom"),
        ({"status": "error", "reason": "missing", "message": "1 of 3 objects do not exist"},
         "GlacierObjectsMissingError", "1 of 3 objects do not exist"),
        ({"status": "timeout", "message": "restore not complete: 1 of 3 restored after 600 s"},
         "AirflowSensorTimeout", "1 of 3 restored after 600 s"),
        ({"status": "surprise"}, "AirflowException", "unexpected trigger event"),
    ],
)
def test_execute_complete_raises_on_anything_but_success(sensor, event, error, text):
    from airflow.sdk.exceptions import AirflowException

    with pytest.raises(AirflowException, match=text) as info:
        sensor.execute_complete({}, event)
    assert type(info.value).__name__ == error
    if event and event["status"] == "timeout":
        assert "clear this task to wait again" in str(info.value)


def test_sensor_rejects_keys_and_snapshot_together(sensor):
    from airflow.sdk.exceptions import AirflowFailException

    sensor.snapshot = {"store_bucket": "s", "source_bucket": "b", "snapshot_id": "x"}
    with pytest.raises(AirflowFailException, match="exactly one of"):
        sensor.poke({})


# --------------------------------------------------------------------------- in DAG runs
def _task_rows(dag_id: str, run_id: str) -> dict[str, dict]:
    """State, duration and XCom return value of each task instance of a run, from the metadata DB."""
    from airflow.models import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = {ti.task_id: {"state": str(ti.state), "duration": ti.duration, "xcom": None}
                for ti in session.scalars(select(TaskInstance).where(TaskInstance.dag_id == dag_id,
                                                                      TaskInstance.run_id == run_id))}
        for x in session.scalars(XComModel.get_many(run_id=run_id, dag_ids=dag_id, key="return_value")):
            rows[x.task_id]["xcom"] = XComModel.deserialize_value(x)
    return rows


def _conf(**kw) -> dict:
    return {"bucket": BUCKET, "keys": KEYS, "request": KEYS, "restore_seconds": 3, **kw}


@pytest.mark.airflow
def test_poke_mode_waits_for_restores(archived, s3_endpoint, run_dag):
    from tests.fixtures.glacier_sensor_dags import poke_dag

    result = run_dag(poke_dag, conf=_conf())
    assert result.state == "success", result.tasks
    assert result.tasks == {"prepare": "success", "wait_for_restores": "success"}
    sensor = _task_rows("glacier_sensor_poke", result.run_id)["wait_for_restores"]
    assert sensor["duration"] > 2, sensor  # it poked while the 3 s restores were in progress
    assert sensor["xcom"]["complete"] is True and sensor["xcom"]["restored"] == 3, sensor
    assert check_restores(archived, BUCKET, KEYS).complete


@pytest.mark.airflow
def test_poke_mode_fails_clearly_when_an_object_is_missing(archived, s3_endpoint, run_dag, capfd):
    from tests.fixtures.glacier_sensor_dags import poke_dag

    started = time.monotonic()
    result = run_dag(poke_dag, conf=_conf(keys=[*KEYS, "archive/gone.bin"], restore_seconds=0))
    assert result.state == "failed"
    assert result.tasks == {"prepare": "success", "wait_for_restores": "failed"}
    assert time.monotonic() - started < 20  # failed at once, did not wait for the 30 s sensor timeout
    out = capfd.readouterr()
    assert "1 of 4 objects do not exist in s3://glacier-sensor-test: 'archive/gone.bin'" in out.out + out.err


class TaskStateRecorder:
    """Poll the metadata DB every 0.2 s: each (task_id, state, next_method) a DAG's task instances go through,
    with the seconds since recording started when it was first seen."""

    def __init__(self, dag_id: str) -> None:
        self.dag_id = dag_id
        self.seen: dict[tuple[str, str | None, str | None], float] = {}
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _poll(self) -> None:
        from airflow.models import TaskInstance
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            for ti in session.scalars(select(TaskInstance).where(TaskInstance.dag_id == self.dag_id)):
                key = (ti.task_id, str(ti.state) if ti.state else None, ti.next_method)
                self.seen.setdefault(key, round(time.monotonic() - self._started, 2))

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._poll()
            except Exception:  # SQLite busy while the run writes: try again next tick
                pass
            self._stop.wait(0.2)

    def __enter__(self):
        # Import every model and configure the ORM mappers here, in the main thread: doing it first in the
        # poller while dag.test() imports models deadlocks on the import lock.
        from airflow.models import import_all_models
        from sqlalchemy.orm import configure_mappers

        import_all_models()
        configure_mappers()
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)
        self._poll()  # the final states


@pytest.mark.airflow
def test_deferrable_mode_defers_then_succeeds(archived, s3_endpoint, run_dag, monkeypatch):
    from airflow.models import TaskInstance
    from airflow.sdk.execution_time import supervisor
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from tests.fixtures.glacier_sensor_dags import deferred_dag

    # dag.test() runs the trigger inline and moves the task instance from "deferred" back to "queued"
    # milliseconds after the task defers, so the 0.2 s poller can miss "deferred". So also read the metadata
    # DB (and S3) each time a try of the task hands control back to dag.test(): the state the execution
    # API recorded for it, before dag.test() changes it.
    at_handback = []
    real_run = supervisor.run_task_in_process

    def spy(ti, task):
        result = real_run(ti=ti, task=task)
        if ti.task_id == "wait_for_restores":
            with create_session() as session:
                row = session.scalars(select(TaskInstance).where(TaskInstance.id == ti.id)).one()
                at_handback.append((str(row.state), row.next_method, row.trigger_id is not None,
                                    check_restores(archived, BUCKET, KEYS).in_progress))
        return result

    monkeypatch.setattr(supervisor, "run_task_in_process", spy)
    with TaskStateRecorder("glacier_sensor_deferred") as recorder:
        result = run_dag(deferred_dag, conf=_conf())
    assert result.state == "success", result.tasks
    assert result.tasks == {"prepare": "success", "wait_for_restores": "success"}
    # first try: deferred to our trigger (resume at execute_complete) while all three restores were in progress
    assert at_handback[0] == ("deferred", "execute_complete", True, 3), at_handback
    assert at_handback[-1][:2] == ("success", None) and at_handback[-1][3] == 0, at_handback
    # the poller (0.2 s) sees the task parked on the trigger (deferred, or queued to resume at execute_complete
    # while dag.test() runs the trigger inline) before it sees it succeed
    sensor_seen = sorted(((t, state, nxt) for (tid, state, nxt), t in recorder.seen.items()
                          if tid == "wait_for_restores"), key=lambda x: x[0])
    parked = [t for t, state, nxt in sensor_seen if nxt == "execute_complete" and state in ("deferred", "queued")]
    assert parked and sensor_seen[-1][1] == "success" and max(parked) < sensor_seen[-1][0], recorder.seen
    sensor = _task_rows("glacier_sensor_deferred", result.run_id)["wait_for_restores"]
    assert sensor["xcom"]["complete"] is True and sensor["xcom"]["restored"] == 3, sensor
