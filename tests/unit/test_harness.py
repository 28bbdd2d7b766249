"""The harness itself: isolation of S3 and PostgreSQL state between tests, and the dag.test helper."""

import psycopg
import pytest

from tests.fixtures.trivial_dag import dag as trivial_dag

_seen = {}


@pytest.mark.parametrize("attempt", [1, 2])
def test_moto_state_does_not_leak(s3, attempt):
    assert s3.list_buckets()["Buckets"] == [], "a previous test's bucket is still there"
    s3.create_bucket(Bucket="leak-check", CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    s3.put_object(Bucket="leak-check", Key="k", Body=b"x")
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["leak-check"]


@pytest.mark.xdist_group("postgres-leak")  # both attempts in one worker: they compare database names
@pytest.mark.parametrize("attempt", [1, 2])
def test_postgres_state_does_not_leak(app_db, attempt):
    with psycopg.connect(app_db) as conn:
        assert conn.execute("SELECT count(*) FROM user_uploads").fetchone()[0] == 0
        conn.execute(
            "INSERT INTO user_uploads (user_id, s3_bucket, s3_key) VALUES (%s, %s, %s)", ("u1", "b", "k")
        )
        assert conn.execute("SELECT count(*) FROM user_uploads").fetchone()[0] == 1
        name = conn.execute("SELECT current_database()").fetchone()[0]
    _seen.setdefault("dbs", set()).add(name)
    assert len(_seen["dbs"]) == attempt, "each test must get a database of its own"


@pytest.mark.airflow
def test_run_dag_reports_task_states(run_dag):
    ok = run_dag(trivial_dag, conf={"n": 3})
    assert ok.state == "success"
    assert ok.tasks == {
        "numbers": "success",
        "square[0]": "success",
        "square[1]": "success",
        "square[2]": "success",
        "total": "success",
    }
    bad = run_dag(trivial_dag, conf={"n": 1, "fail": True})
    assert bad.state == "failed"
    assert bad.tasks["total"] == "failed"
    assert bad.failed() == ["total"]
