"""gdpr_user_export end to end with dag.test() against the moto server and a real PostgreSQL.

Checks what a data subject receives: the ZIP behind the presigned link (members hashed against the
manifest), the link's bucket/key/expiry, the report in the compliance bucket (no row values, no file
contents), and that nothing of another user (`u10`, `user-uploads/u1.bak`) is in the export."""

from __future__ import annotations

import hashlib
import io
import json
import urllib.request
import zipfile
from urllib.parse import parse_qs, quote, urlsplit

import psycopg
import pytest

from dataprotection.gdpr.export import export_key
from dataprotection.reports import report_key
from devstack.seed import create_buckets
from tests.unit.test_gdpr_export import PROFILE, UPLOADS, add_profile, add_upload, assert_manifest_matches_zip, put, url

pytestmark = pytest.mark.airflow

REF = "DPO-2026-0042"


@pytest.fixture
def conn(app_db):
    with psycopg.connect(app_db, autocommit=True) as connection:
        yield connection


@pytest.fixture
def buckets(s3, s3_backup, plan):
    create_buckets(plan, s3, s3_backup)


def _report(s3, plan, run_id: str) -> dict:
    body = s3.get_object(Bucket=plan.compliance_bucket, Key=report_key("gdpr-export", run_id))["Body"]
    return json.loads(body.read())


def _xcom(dag_id: str, run_id: str, task_id: str):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        for x in session.scalars(XComModel.get_many(run_id=run_id, dag_ids=dag_id, task_ids=task_id,
                                                    key="return_value")):
            return XComModel.deserialize_value(x)
    return None


def _download(link: str) -> bytes:
    with urllib.request.urlopen(link, timeout=30) as response:
        return response.read()


def test_export_dag_end_to_end(run_dag, conn, s3, plan, buckets):
    from dags.gdpr_user_export import dag

    put(s3, UPLOADS, "user-uploads/u1/menu.pdf", b"MENU-CONTENT of u1")
    put(s3, UPLOADS, "user-uploads/u1/2026/menu.pdf", b"MENU-CONTENT, second file of that name")
    put(s3, UPLOADS, "user-uploads/u1/evil", b"EVIL-CONTENT")
    put(s3, PROFILE, "avatars/u1/me.png", b"AVATAR-CONTENT")
    put(s3, UPLOADS, "user-uploads/u10/theirs.pdf", b"SECRET of u10")
    put(s3, UPLOADS, "user-uploads/u1.bak", b"SECRET backup file next to the folder")
    add_upload(conn, "u1", UPLOADS, "user-uploads/u1/menu.pdf", "menu.pdf", url(UPLOADS, "user-uploads/u1/menu.pdf"))
    add_upload(conn, "u1", UPLOADS, "user-uploads/u1/2026/menu.pdf", "menu.pdf")
    add_upload(conn, "u1", UPLOADS, "user-uploads/u1/evil", "../../../../etc/cron.d/evil")
    add_upload(conn, "u1", UPLOADS, "user-uploads/u1/deleted.pdf", "deleted.pdf")
    add_upload(conn, "u10", UPLOADS, "user-uploads/u10/theirs.pdf", "theirs.pdf")
    add_profile(conn, "u1", "ROW-VALUE Alice Bakery", url(PROFILE, "avatars/u1/me.png"))
    add_profile(conn, "u10", "ROW-VALUE Someone Else")
    counts = conn.execute("SELECT (SELECT count(*) FROM user_uploads), (SELECT count(*) FROM business_profiles)"
                          ).fetchone()

    run = run_dag(dag, conf={"user_id": "u1", "request_reference": REF})
    assert run.state == "success", run.failed()
    assert run.tasks == {"check_request": "success", "delete_expired_exports": "success",
                         "export_user_data": "success"}

    result = _xcom("gdpr_user_export", run.run_id, "export_user_data")
    key = export_key(REF, run.run_id)
    assert result["bucket"] == plan.export_bucket and result["key"] == key
    assert key.startswith(f"exports/{REF}/") and key.endswith(".zip")

    # the presigned link: the right bucket and key, valid for the plan's days (7 = SigV4's maximum)
    link = urlsplit(result["url"])
    assert link.path == f"/{plan.export_bucket}/{quote(key)}"
    query = parse_qs(link.query)
    assert query["X-Amz-Expires"] == [str(plan.gdpr.export_link_days * 86400)] == ["604800"]
    assert "X-Amz-Signature" in query
    data = _download(result["url"])
    assert hashlib.sha256(data).hexdigest() == result["sha256"]

    zf = zipfile.ZipFile(io.BytesIO(data))
    manifest = json.loads(zf.read("manifest.json"))
    assert_manifest_matches_zip(zf, manifest)
    names = sorted(f["name"] for f in manifest["files"])
    assert names == ["files/evil", "files/me.png", "files/menu (2).pdf", "files/menu.pdf"]
    assert zf.read("files/menu.pdf") == b"MENU-CONTENT of u1"
    assert zf.read("files/evil") == b"EVIL-CONTENT"
    assert b"SECRET" not in b"".join(zf.read(n) for n in zf.namelist())
    assert [m["key"] for m in manifest["missing"]] == ["user-uploads/u1/deleted.pdf"]
    assert manifest["tables"]["user_uploads"]["rows"] == 4 and manifest["tables"]["business_profiles"]["rows"] == 1
    assert b"ROW-VALUE Alice Bakery" in zf.read("rows/business_profiles.csv")

    report = _report(s3, plan, run.run_id)
    assert report["status"] == "exported_incomplete" and report["request_reference"] == REF
    assert report["export"]["uri"] == f"s3://{plan.export_bucket}/{key}" == result["export"]
    assert report["export"]["sha256"] == result["sha256"] and report["export"]["size"] == len(data)
    assert report["link"] == {"expires_in_seconds": 604800, "expires_at": result["link_expires_at"]}
    assert report["manifest"] == manifest and report["totals"]["files"] == 4
    assert result["report"] == f"s3://{plan.compliance_bucket}/{report_key('gdpr-export', run.run_id)}"
    text = json.dumps(report)
    for forbidden in ("ROW-VALUE", "CONTENT", "SECRET", "X-Amz-Signature", "etc/cron.d"):
        assert forbidden not in text, forbidden

    after = conn.execute("SELECT (SELECT count(*) FROM user_uploads), (SELECT count(*) FROM business_profiles)"
                         ).fetchone()
    assert after == counts, "the export changes nothing in the database"
    assert s3.list_objects_v2(Bucket=UPLOADS, Prefix="user-uploads/")["KeyCount"] == 5, "nor in the buckets"


def test_export_of_a_user_with_nothing_succeeds_empty(run_dag, conn, s3, plan, buckets):
    from dags.gdpr_user_export import dag

    put(s3, UPLOADS, "user-uploads/u10/theirs.pdf", b"SECRET of u10")
    add_profile(conn, "u10", "ROW-VALUE Someone Else")
    run = run_dag(dag, conf={"user_id": "u1", "request_reference": "JIRA:PRIV-17"})
    assert run.state == "success", run.failed()

    report = _report(s3, plan, run.run_id)
    assert report["status"] == "exported_empty"
    assert "empty files list and zero rows" in report["note"]
    assert report["totals"]["rows"] == 0 and report["totals"]["files"] == 0 and report["manifest"]["files"] == []
    key = export_key("JIRA:PRIV-17", run.run_id)
    assert key.startswith("exports/JIRA_PRIV-17/") and report["export"]["key"] == key
    zf = zipfile.ZipFile(io.BytesIO(s3.get_object(Bucket=plan.export_bucket, Key=key)["Body"].read()))
    assert_manifest_matches_zip(zf, report["manifest"])
    assert sorted(zf.namelist()) == ["manifest.json", "rows/business_profiles.csv", "rows/business_profiles.json",
                                     "rows/user_uploads.csv", "rows/user_uploads.json"]


@pytest.mark.parametrize("bad", ["x' OR '1'='1", "../u1"])
def test_bad_user_id_never_starts_a_run(run_dag, s3, plan, buckets, bad):
    from airflow.sdk.exceptions import ParamValidationError

    from dags.gdpr_user_export import dag

    with pytest.raises(ParamValidationError, match="user_id"):
        run_dag(dag, conf={"user_id": bad, "request_reference": REF})
    assert not s3.list_objects_v2(Bucket=plan.export_bucket).get("Contents")
