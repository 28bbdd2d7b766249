"""GDPR export core (dataprotection.gdpr.export) against the moto S3 server and a real PostgreSQL.

Every test builds rows with parameterised SQL and objects with real puts, runs the export, downloads
the ZIP and checks its members against the manifest (names, sizes, sha256) and against S3."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import tracemalloc
import zipfile
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from dataprotection.gdpr.export import (
    ExportError,
    NameAllocator,
    delete_expired_exports,
    export_key,
    export_user,
    report_doc,
    safe_filename,
)
from dataprotection.gdpr.footprint import ErasureInputError, check_request_reference, check_user_id, prefix_owner
from devstack.seed import create_buckets

UPLOADS = "matbakh-files-uploads"
PROFILE = "matbakh-files-profile"
REF = "DPO-2026-0042"
RUN_ID = "manual__2026-12-03T10:00:00+00:00"
NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


# --------------------------------------------------------------------------- helpers
@pytest.fixture
def conn(app_db):
    with psycopg.connect(app_db, autocommit=True) as connection:
        yield connection


@pytest.fixture
def buckets(s3, s3_backup, plan):
    create_buckets(plan, s3, s3_backup)


def url(bucket: str, key: str) -> str:
    return f"https://{bucket}.s3.eu-central-1.amazonaws.com/{key}"


def add_upload(conn, user_id: str, bucket: str, key: str, filename: str | None, s3_url: str | None = None) -> int:
    return conn.execute(
        "INSERT INTO user_uploads (user_id, s3_bucket, s3_key, s3_url, original_filename, content_type, file_size)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (user_id, bucket, key, s3_url, filename, "application/octet-stream", 1),
    ).fetchone()[0]


def add_profile(conn, user_id: str, name: str, avatar: str | None = None, logo: str | None = None) -> None:
    conn.execute(
        "INSERT INTO business_profiles (user_id, business_name, avatar_s3_url, logo_s3_url) VALUES (%s, %s, %s, %s)",
        (user_id, name, avatar, logo),
    )


def put(s3, bucket: str, key: str, body: bytes) -> str | None:
    return s3.put_object(Bucket=bucket, Key=key, Body=body).get("VersionId")


def run_export(conn, s3, plan, user_id: str, **kwargs):
    return export_user(conn, s3, plan, user_id=user_id, request_reference=REF, run_id=RUN_ID, created_at=NOW,
                       **kwargs)


def open_zip(s3, result) -> zipfile.ZipFile:
    data = s3.get_object(Bucket=result.bucket, Key=result.key)["Body"].read()
    assert hashlib.sha256(data).hexdigest() == result.sha256 and len(data) == result.size
    return zipfile.ZipFile(io.BytesIO(data))


def assert_manifest_matches_zip(zf: zipfile.ZipFile, manifest: dict) -> None:
    members = {name: zf.read(name) for name in zf.namelist()}
    assert json.loads(members["manifest.json"]) == manifest
    for f in manifest["files"]:
        assert f["name"].startswith("files/")
        assert hashlib.sha256(members[f["name"]]).hexdigest() == f["sha256"]
        assert len(members[f["name"]]) == f["size"]
    for t in manifest["tables"].values():
        for fmt in ("csv", "json"):
            assert hashlib.sha256(members[t[fmt]["name"]]).hexdigest() == t[fmt]["sha256"]
    listed = {f["name"] for f in manifest["files"]} | {t[fmt]["name"] for t in manifest["tables"].values()
                                                        for fmt in ("csv", "json")}
    assert set(members) == listed | {"manifest.json"}, "nothing in the ZIP that the manifest does not list"
    for name in members:
        assert ".." not in name and not name.startswith("/") and "\\" not in name, name


# --------------------------------------------------------------------------- naming
@pytest.mark.parametrize(
    ("original", "key", "expected"),
    [
        ("../../etc/passwd", "user-uploads/u1/x", "passwd"),
        ("/abs/name", "user-uploads/u1/x", "name"),
        ("C:\\Users\\eve\\evil.exe", "k", "evil.exe"),
        ("C:evil.txt", "k", "evil.txt"),
        ("..\\..\\windows\\system.ini", "k", "system.ini"),
        ("a\x00b\nc.txt", "k", "abc.txt"),
        ("report..pdf", "k", "report.pdf"),
        ("\u202efdp.exe", "k", "fdp.exe"),
        ("nul.txt", "k", "_nul.txt"),
        ("what?<>|*.txt", "k", "what_____.txt"),
        ("Résumé final.pdf", "k", "Résumé final.pdf"),
        ("..", "user-uploads/u1/from-key.pdf", "from-key.pdf"),
        ("", "user-uploads/u1/from-key.pdf", "from-key.pdf"),
        (None, "avatars/u1/../x.png", "x.png"),
        ("/", "user-uploads/u1/", "file"),
        (None, "..", "file"),
    ],
)
def test_safe_filename_is_a_base_name(original, key, expected):
    assert safe_filename(original, key) == expected


def test_long_names_are_truncated_keeping_the_extension():
    name = safe_filename("ü" * 300 + ".pdf", "k")
    assert name.endswith(".pdf") and len(name.encode("utf-8")) <= 180


def test_colliding_names_get_a_counter():
    names = NameAllocator()
    assert [names.take(n) for n in ("report.pdf", "report.pdf", "Report.PDF", "README", "README", "file")] == [
        "report.pdf", "report (2).pdf", "Report (3).PDF", "README", "README (2)", "file"]


def test_export_key_is_run_scoped_and_safe():
    assert export_key("JIRA:PRIV-17/a b", RUN_ID) == "exports/JIRA_PRIV-17_a_b/manual__2026-12-03T10_00_00_00_00.zip"
    assert export_key("..", "..") == "exports/_/_.zip"


def test_bad_input_is_refused_naming_the_field(plan):
    for bad in ("x' OR '1'='1", "1; DROP TABLE user_uploads", "../u1", "", "u" * 65, None, 42):
        with pytest.raises(ErasureInputError, match="^user_id: "):
            check_user_id(plan, bad)
    for bad in ("", "../x", "a b", None):
        with pytest.raises(ErasureInputError, match="^request_reference: "):
            check_request_reference(bad)


def test_the_canaries_folder_is_no_user(plan):
    # the failover and drill canaries live in the uploads bucket's per-user namespace (user-uploads/_dataprotection/)
    assert plan.failover.canary_name.startswith("_dataprotection/")
    assert plan.drill.canary_prefix.startswith("_dataprotection/")
    assert re.fullmatch(plan.gdpr.user_id_pattern, "_dataprotection")  # the pattern alone would accept it
    with pytest.raises(ErasureInputError, match=r"^user_id: '_dataprotection' is reserved"):
        check_user_id(plan, "_dataprotection")
    uploads = plan.gdpr.user_prefixes[0].bucket
    assert prefix_owner(plan, uploads, "user-uploads/_dataprotection/failover-canary.txt") is None
    assert prefix_owner(plan, uploads, "user-uploads/u_17/a.txt") == "u_17"
    assert check_user_id(plan, "_dataprotection2") == "_dataprotection2"


# --------------------------------------------------------------------------- the export
def test_export_has_rows_files_and_a_matching_manifest(conn, s3, plan, buckets):
    u1 = "user-uploads/u1/"
    a_v1 = put(s3, UPLOADS, u1 + "a/report.pdf", b"old content of report a")
    a_v2 = put(s3, UPLOADS, u1 + "a/report.pdf", b"report a, current")
    put(s3, UPLOADS, u1 + "b/report.pdf", b"report b")
    put(s3, UPLOADS, u1 + "x1", b"not really /etc/passwd")
    put(s3, UPLOADS, u1 + "x2", b"absolute")
    put(s3, UPLOADS, u1 + "empty.txt", b"")
    put(s3, UPLOADS, u1 + "notes/only-in-the-folder.txt", b"no row names me")
    put(s3, PROFILE, "avatars/u1/avatar.png", b"\x89PNG avatar")
    put(s3, PROFILE, "logos/u1/my logo+1.png", b"\x89PNG logo")
    # other users' data that a sloppy prefix match would pick up
    put(s3, UPLOADS, "user-uploads/u10/secret.txt", b"u10 SECRET")
    put(s3, UPLOADS, "user-uploads/u1.bak", b"u1.bak SECRET")
    put(s3, UPLOADS, "user-uploads/u1-old/x.txt", b"u1-old SECRET")
    put(s3, PROFILE, "avatars/u10/avatar.png", b"u10 avatar SECRET")

    add_upload(conn, "u1", UPLOADS, u1 + "a/report.pdf", "report.pdf", url(UPLOADS, u1 + "a/report.pdf"))
    add_upload(conn, "u1", UPLOADS, u1 + "b/report.pdf", "report.pdf")
    add_upload(conn, "u1", UPLOADS, u1 + "x1", "../../etc/passwd")
    add_upload(conn, "u1", UPLOADS, u1 + "x2", "/abs/name")
    add_upload(conn, "u1", UPLOADS, u1 + "empty.txt", None)
    add_upload(conn, "u1", UPLOADS, u1 + "gone.pdf", "gone.pdf")  # the object was never there
    add_upload(conn, "u1", "someone-elses-bucket", "whatever.pdf", "elsewhere.pdf")  # not a plan bucket
    add_upload(conn, "u10", UPLOADS, "user-uploads/u10/secret.txt", "secret.txt")
    add_profile(conn, "u1", "Alice's Bakery", url(PROFILE, "avatars/u1/avatar.png"),
                url(PROFILE, "logos/u1/my%20logo%2B1.png"))  # percent-encoded in the URL
    add_profile(conn, "u10", "Someone Else", url(PROFILE, "avatars/u10/avatar.png"))

    result = run_export(conn, s3, plan, "u1")
    manifest = result.manifest
    zf = open_zip(s3, result)
    assert_manifest_matches_zip(zf, manifest)

    files = {f["name"]: f for f in manifest["files"]}
    assert set(files) == {"files/report.pdf", "files/report (2).pdf", "files/passwd", "files/name",
                          "files/empty.txt", "files/only-in-the-folder.txt", "files/avatar.png",
                          "files/my logo+1.png"}
    assert zf.read("files/report.pdf") == b"report a, current", "the current version"
    assert files["files/report.pdf"]["version_id"] == a_v2 != a_v1
    assert files["files/report.pdf"]["source"] == "user_uploads.s3_key"
    assert zf.read("files/report (2).pdf") == b"report b"
    assert zf.read("files/passwd") == b"not really /etc/passwd"
    assert zf.read("files/empty.txt") == b""
    assert files["files/only-in-the-folder.txt"]["source"] == "prefix"
    assert files["files/my logo+1.png"]["key"] == "logos/u1/my logo+1.png"
    assert len({(f["bucket"], f["key"]) for f in manifest["files"]}) == len(files) == 8, "one entry per object"
    everything = b"".join(zf.read(n) for n in zf.namelist())
    assert b"SECRET" not in everything
    assert b"Someone Else" not in everything

    assert manifest["missing"] == [{"bucket": UPLOADS, "key": u1 + "gone.pdf", "table": "user_uploads",
                                    "column": "s3_key", "reason": "object does not exist"}]
    assert [s["bucket"] for s in manifest["skipped"]] == ["someone-elses-bucket"]
    assert manifest["request_reference"] == REF and manifest["created_at"] == "2026-12-03T10:00:00Z"
    assert manifest["expires_at"] == "2027-01-02T10:00:00Z"
    assert manifest["tables"]["user_uploads"]["rows"] == 7 and manifest["tables"]["business_profiles"]["rows"] == 1
    assert manifest["totals"] == {"tables": 2, "rows": 8, "files": 8, "bytes": sum(f["size"] for f in files.values()),
                                  "missing": 1, "unavailable": 0, "skipped": 1}

    uploads = list(csv.DictReader(io.StringIO(zf.read("rows/user_uploads.csv").decode("utf-8"))))
    assert [r["original_filename"] for r in uploads][:4] == ["report.pdf", "report.pdf", "../../etc/passwd",
                                                             "/abs/name"], "rows keep their values"
    assert {r["user_id"] for r in uploads} == {"u1"}
    profiles = json.loads(zf.read("rows/business_profiles.json"))
    assert [p["business_name"] for p in profiles] == ["Alice's Bakery"]
    assert datetime.fromisoformat(profiles[0]["created_at"]).tzinfo is not None, "ISO datetimes with zone"
    assert json.loads(zf.read("rows/user_uploads.json"))[4]["original_filename"] is None, "NULL stays null"

    head = s3.head_object(Bucket=plan.export_bucket, Key=result.key)
    assert result.key == "exports/DPO-2026-0042/manual__2026-12-03T10_00_00_00_00.zip"
    assert head["ServerSideEncryption"] == "AES256"
    assert head["Metadata"]["expires-at"] == manifest["expires_at"]
    tags = {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=plan.export_bucket, Key=result.key)["TagSet"]}
    assert tags["dataprotection-expires"] == "2027-01-02"

    assert "X-Amz-Expires=604800" in result.link["url"] and result.link["expires_in_seconds"] == 604800
    report = report_doc(result, RUN_ID)
    text = json.dumps(report)
    assert report["status"] == "exported_incomplete" and "url" not in report["link"]
    for secret in ("Alice", "not really", "report a, current", "X-Amz-Signature"):
        assert secret not in text, secret


def test_a_user_with_nothing_gets_an_empty_export(conn, s3, plan, buckets):
    add_profile(conn, "u2", "Someone Else")
    put(s3, UPLOADS, "user-uploads/u2/x.txt", b"u2")
    result = run_export(conn, s3, plan, "u1")
    zf = open_zip(s3, result)
    assert_manifest_matches_zip(zf, result.manifest)
    assert result.manifest["files"] == [] and result.manifest["totals"]["rows"] == 0 and result.empty
    assert not [n for n in zf.namelist() if n.startswith("files/")]
    assert zf.read("rows/user_uploads.csv").decode().startswith("id,user_id,s3_bucket,s3_key,")
    assert json.loads(zf.read("rows/business_profiles.json")) == []
    report = report_doc(result, RUN_ID)
    assert report["status"] == "exported_empty" and "empty files list and zero rows" in report["note"]


def test_rerunning_rewrites_the_same_run_scoped_export(conn, s3, plan, buckets):
    put(s3, UPLOADS, "user-uploads/u1/a.txt", b"a")
    first = run_export(conn, s3, plan, "u1")
    second = run_export(conn, s3, plan, "u1")
    assert first.key == second.key and first.manifest == second.manifest
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=plan.export_bucket).get("Contents", [])]
    assert keys == [first.key]


def test_a_50_mb_object_streams_with_bounded_memory(conn, s3, plan, buckets, tmp_path):
    key, size, part = "user-uploads/u1/big video.bin", 50 * 1024 * 1024, 10 * 1024 * 1024
    digest = hashlib.sha256()
    upload = s3.create_multipart_upload(Bucket=UPLOADS, Key=key)
    parts = []
    for n in range(1, size // part + 1):
        body = os.urandom(part)
        digest.update(body)
        etag = s3.upload_part(Bucket=UPLOADS, Key=key, UploadId=upload["UploadId"], PartNumber=n, Body=body)["ETag"]
        parts.append({"PartNumber": n, "ETag": etag})
    del body
    s3.complete_multipart_upload(Bucket=UPLOADS, Key=key, UploadId=upload["UploadId"],
                                 MultipartUpload={"Parts": parts})
    add_upload(conn, "u1", UPLOADS, key, "big video.bin")

    tracemalloc.start()
    try:
        result = run_export(conn, s3, plan, "u1")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"\npeak traced memory exporting a 50 MB object: {peak / 2**20:.1f} MiB (archive {result.size} bytes, "
          f"{result.parts} parts)")
    assert peak < 20 * 1024 * 1024, f"peak {peak} bytes"
    assert result.parts >= 6, "uploaded part by part"

    path = tmp_path / "export.zip"
    s3.download_file(plan.export_bucket, result.key, str(path))
    with zipfile.ZipFile(path) as zf:
        member = hashlib.sha256()
        with zf.open("files/big video.bin") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                member.update(chunk)
        assert json.loads(zf.read("manifest.json")) == result.manifest
    assert result.manifest["files"][0]["sha256"] == member.hexdigest() == digest.hexdigest()
    assert result.manifest["files"][0]["size"] == size


def test_a_failed_export_aborts_its_multipart_upload(conn, s3, plan, buckets):
    put(s3, UPLOADS, "user-uploads/u1/first.bin", os.urandom(6 * 1024 * 1024))  # fills the first part
    put(s3, UPLOADS, "user-uploads/u1/denied.bin", b"x")
    add_upload(conn, "u1", UPLOADS, "user-uploads/u1/first.bin", "first.bin")
    add_upload(conn, "u1", UPLOADS, "user-uploads/u1/denied.bin", "denied.bin")
    s3.put_bucket_policy(Bucket=UPLOADS, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject",
         "Resource": f"arn:aws:s3:::{UPLOADS}/user-uploads/u1/denied.bin"}]}))
    try:
        with pytest.raises(ExportError, match="cannot read s3://.*denied.bin: (AccessDenied|403)"):
            run_export(conn, s3, plan, "u1", part_size=5 * 1024 * 1024)
    finally:
        s3.delete_bucket_policy(Bucket=UPLOADS)
    assert not s3.list_multipart_uploads(Bucket=plan.export_bucket).get("Uploads")
    assert not s3.list_objects_v2(Bucket=plan.export_bucket).get("Contents")


def test_expired_exports_are_deleted(s3, plan, buckets):
    for key in ("exports/A/run1.zip", "exports/B/run2.zip", "elsewhere/keep.zip"):
        put(s3, plan.export_bucket, key, b"zip")
    now = datetime.now(UTC)
    assert delete_expired_exports(s3, plan, now + timedelta(days=29))["deleted"] == 0
    result = delete_expired_exports(s3, plan, now + timedelta(days=31))
    assert result["deleted"] == 2 and result["kept"] == 0 and result["older_than_days"] == 30
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=plan.export_bucket).get("Contents", [])]
    assert keys == ["elsewhere/keep.zip"]


def test_a_per_user_prefix_without_a_trailing_slash_is_refused(conn, s3, plan, buckets):
    from dataprotection.config import UserPrefix

    loose = UserPrefix(bucket=UPLOADS, prefix="user-uploads/{user_id}")  # would match user-uploads/u10/...
    bad_plan = plan.model_copy(update={"gdpr": plan.gdpr.model_copy(update={"user_prefixes": [loose]})})
    with pytest.raises(ExportError, match="gdpr.user_prefixes: .* must end with '/'"):
        run_export(conn, s3, bad_plan, "u1")
    assert not s3.list_multipart_uploads(Bucket=plan.export_bucket).get("Uploads")
