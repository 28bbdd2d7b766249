"""Table export/import (dataprotection.tables) against a real PostgreSQL and the moto S3 server."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json

import psycopg
import pytest
from botocore.exceptions import ClientError
from psycopg import sql

from dataprotection.config import Table
from dataprotection.tables import (
    MIN_PART_SIZE,
    CorruptExportError,
    TableExportError,
    export_table,
    insert_missing_rows,
    load_export_into_temp,
    read_export,
    verify_export,
)
from devstack.seed import seed_database

BUCKET = "matbakh-backups"
KEY = "tables/2026-11-03/user_uploads.csv.gz"
UPLOADS = Table(name="user_uploads", primary_key="id", user_column="user_id")
PROFILES = Table(name="business_profiles", primary_key="id", user_column="user_id")

AWKWARD = [
    # (user_id, s3_key, s3_url, original_filename, content_type, file_size, uploaded_at)
    ("u1", "k/null-vs-empty", None, "", None, None, "2026-01-01 00:00:00+00"),
    ("u1", "k/empty-vs-null", "", None, "", 0, "2026-01-01 00:00:00.000001+00"),
    ("u2", "k/newlines", "line1\nline2\r\nline3\rend", "trailing newline\n", "\n", 1, "2026-03-29 01:59:59+01"),
    ("u2", "k/commas,and,quotes", 'say "hi", then ""leave""', '"', ",", -1, "1999-12-31 23:59:59.999999-08"),
    ("u3", "k/unicode", "Résumé ✓ 🍜 مرحبا 中文 e\u0301", "naïve café.pdf", "text/plain; charset=utf-8", 2,
     "2026-07-01 12:00:00+05:30"),
    ("u3", "k/copy-markers", "\\.", "\\N", "NULL", 3, "2026-07-01 12:00:00+00"),
    ("u3", "k/spaces", "  padded  ", " ", "\t", 9_223_372_036_854_775_807, "2026-07-01 12:00:00+00"),
    ("u4", "k/long", "x" * 10 + "long ✓ text, \"quoted\"\n" * 100_000, "long", None, 4, "2026-07-01 12:00:00+00"),
]


@pytest.fixture
def conn(app_db):
    with psycopg.connect(app_db, autocommit=True) as connection:
        yield connection


@pytest.fixture
def bucket(s3):
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    return BUCKET


# --------------------------------------------------------------------------- helpers
def database_csv(conninfo: str, table: Table) -> bytes:
    """The table as the documented format says it must be, computed independently in the test."""
    with psycopg.connect(conninfo, autocommit=True) as other:
        other.execute("SET TimeZone = 'UTC'")
        statement = sql.SQL("COPY (SELECT * FROM {} ORDER BY {}) TO STDOUT WITH (FORMAT csv, HEADER true)").format(
            sql.Identifier(table.name), sql.Identifier(table.primary_key)
        )
        with other.cursor() as cur, cur.copy(statement) as copy:
            return b"".join(bytes(chunk) for chunk in copy)


def csv_rows(data: bytes) -> int:
    """Data rows of a CSV, counted by Python's CSV parser (not by lines)."""
    previous = csv.field_size_limit(max(len(data), 131072))
    try:
        return sum(1 for _ in csv.reader(io.StringIO(data.decode("utf-8"), newline=""))) - 1
    finally:
        csv.field_size_limit(previous)


def count(conn: psycopg.Connection, table: str) -> int:
    return conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()[0]


def all_rows(conn: psycopg.Connection, table: str) -> list[tuple]:
    return conn.execute(sql.SQL("SELECT * FROM {} ORDER BY id").format(sql.Identifier(table))).fetchall()


def insert_awkward(conn: psycopg.Connection) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO user_uploads (user_id, s3_bucket, s3_key, s3_url, original_filename, content_type,"
            " file_size, uploaded_at) VALUES (%s, 'matbakh-files-uploads', %s, %s, %s, %s, %s, %s)",
            AWKWARD,
        )


def fill_uploads(conn: psycopg.Connection, n: int) -> None:
    """n rows with ~160 random hex characters each, so the export compresses poorly (generated server-side)."""
    conn.execute(
        "INSERT INTO user_uploads (user_id, s3_bucket, s3_key, s3_url, original_filename, content_type, file_size)"
        " SELECT 'u' || (i %% 97), 'matbakh-files-uploads',"
        "  'user-uploads/u' || (i %% 97) || '/' || md5(random()::text) || md5(random()::text) || md5(random()::text),"
        "  NULL, md5(random()::text) || md5(random()::text) || '.pdf', 'application/pdf', i"
        " FROM generate_series(1, %s) AS i",
        (n,),
    )


def seed_demo(conninfo: str, plan) -> None:
    """25 upload rows and the demo business profiles (devstack.seed)."""
    rows = [
        (f"u{100 + i}", "matbakh-files-uploads", f"user-uploads/u{100 + i}/file {i}.pdf", "application/pdf", 10 * i)
        for i in range(25)
    ]
    assert seed_database(conninfo, plan, rows) > 0


def parts_in_etag(s3, key: str = KEY) -> int | None:
    etag = s3.head_object(Bucket=BUCKET, Key=key)["ETag"].strip('"')
    return int(etag.rsplit("-", 1)[1]) if "-" in etag else None


# --------------------------------------------------------------------------- export
def test_export_matches_database(app_db, conn, s3, bucket, plan):
    seed_demo(app_db, plan)
    for table in plan.database.tables:
        key = f"tables/{table.name}.csv.gz"
        result = export_table(conn, table, s3, bucket, key)

        expected = database_csv(app_db, table)
        assert result.rows == count(conn, table.name) == csv_rows(expected) > 0
        assert result.sha256 == hashlib.sha256(expected).hexdigest()
        assert result.bytes_uncompressed == len(expected)

        stored = s3.get_object(Bucket=bucket, Key=key)
        body = stored["Body"].read()
        assert result.bytes_compressed == len(body)
        assert gzip.decompress(body) == expected
        assert body[4:8] == b"\0\0\0\0"  # gzip mtime 0
        assert stored["Metadata"]["rows"] == str(result.rows)
        assert stored["Metadata"]["sha256-csv"] == result.sha256
        assert parts_in_etag(s3, key) is None  # small: one PutObject
        assert b"".join(read_export(s3, bucket, key)) == expected
        assert json.loads(json.dumps(result.to_dict()))["rows"] == result.rows

    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_export_is_deterministic(app_db, conn, s3, bucket, plan):
    seed_demo(app_db, plan)
    first = export_table(conn, UPLOADS, s3, bucket, "a.csv.gz")
    conn.execute("SET TimeZone = 'America/New_York'")  # the session's settings must not leak into the bytes
    conn.execute("SET DateStyle = 'SQL, DMY'")
    second = export_table(conn, UPLOADS, s3, bucket, "b.csv.gz")
    assert first.sha256 == second.sha256
    a = s3.get_object(Bucket=bucket, Key="a.csv.gz")["Body"].read()
    b = s3.get_object(Bucket=bucket, Key="b.csv.gz")["Body"].read()
    assert a == b


def test_works_with_a_non_autocommit_connection(app_db, s3, bucket, plan):
    seed_demo(app_db, plan)
    with psycopg.connect(app_db) as manual:  # autocommit off: psycopg's default
        result = export_table(manual, UPLOADS, s3, bucket, KEY)
        assert manual.info.transaction_status == psycopg.pq.TransactionStatus.IDLE  # committed its own
        manual.execute("DELETE FROM user_uploads WHERE id = 1")  # opens the caller's transaction
        temp, loaded = load_export_into_temp(manual, UPLOADS, s3, bucket, KEY)
        assert (loaded, insert_missing_rows(manual, UPLOADS, temp)) == (result.rows, 1)
        manual.commit()
    assert hashlib.sha256(database_csv(app_db, UPLOADS)).hexdigest() == result.sha256


def test_empty_table(app_db, conn, s3, bucket):
    result = export_table(conn, UPLOADS, s3, bucket, KEY)
    assert result.rows == 0
    assert b"".join(read_export(s3, bucket, KEY)) == database_csv(app_db, UPLOADS)
    assert verify_export(s3, bucket, KEY, result.sha256).ok
    with conn.transaction():
        temp, loaded = load_export_into_temp(conn, UPLOADS, s3, bucket, KEY)
        assert loaded == 0
        assert insert_missing_rows(conn, UPLOADS, temp) == 0


def test_awkward_values_round_trip_byte_exactly(app_db, conn, s3, bucket):
    insert_awkward(conn)
    before = all_rows(conn, "user_uploads")
    result = export_table(conn, UPLOADS, s3, bucket, KEY)

    expected = database_csv(app_db, UPLOADS)
    assert result.sha256 == hashlib.sha256(expected).hexdigest()
    assert result.rows == csv_rows(expected) == len(AWKWARD)
    assert expected.count(b"\n") > len(AWKWARD) + 1  # records span lines: counting lines would be wrong
    check = verify_export(s3, bucket, KEY, result.sha256)
    assert check.ok, check.problems
    assert check.rows == len(AWKWARD)

    conn.execute("DELETE FROM user_uploads")
    with conn.transaction():
        temp, loaded = load_export_into_temp(conn, UPLOADS, s3, bucket, KEY)
        assert loaded == len(AWKWARD)
        assert insert_missing_rows(conn, UPLOADS, temp) == len(AWKWARD)

    after = all_rows(conn, "user_uploads")
    assert after == before
    assert [r[4] for r in after[:2]] == [None, ""] and [r[5] for r in after[:2]] == ["", None]  # NULL vs ''
    assert hashlib.sha256(database_csv(app_db, UPLOADS)).hexdigest() == result.sha256


def test_large_export_uses_multipart_and_verifies(app_db, conn, s3, bucket):
    fill_uploads(conn, 120_000)
    result = export_table(conn, UPLOADS, s3, bucket, KEY, part_size=MIN_PART_SIZE)

    assert result.bytes_compressed > 2 * MIN_PART_SIZE
    parts = parts_in_etag(s3)
    assert parts == -(-result.bytes_compressed // MIN_PART_SIZE)  # ceil: parts of exactly part_size
    assert result.rows == 120_000 == count(conn, "user_uploads")
    assert result.sha256 == hashlib.sha256(database_csv(app_db, UPLOADS)).hexdigest()
    head = s3.head_object(Bucket=bucket, Key=KEY)
    assert head["Metadata"]["sha256-csv"] == result.sha256
    assert head["ContentLength"] == result.bytes_compressed

    check = verify_export(s3, bucket, KEY, result.sha256)
    assert check.ok, check.problems
    assert (check.rows, check.bytes_uncompressed, check.bytes_compressed) == (
        result.rows,
        result.bytes_uncompressed,
        result.bytes_compressed,
    )
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


# --------------------------------------------------------------------------- failures
def test_missing_bucket_is_a_clear_error(app_db, conn, s3, bucket, plan):
    seed_demo(app_db, plan)
    with pytest.raises(TableExportError, match=r"user_uploads .*s3://no-such-bucket/.*NoSuchBucket"):
        export_table(conn, UPLOADS, s3, "no-such-bucket", KEY)
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert conn.execute("SELECT 1").fetchone() == (1,)


def test_failure_mid_upload_aborts_the_multipart_upload(conn, s3, bucket, monkeypatch):
    fill_uploads(conn, 120_000)
    real_upload_part = s3.upload_part
    calls = []

    def flaky_upload_part(**kwargs):
        calls.append(kwargs["PartNumber"])
        if len(calls) == 2:
            raise ClientError({"Error": {"Code": "InternalError", "Message": "injected"}}, "UploadPart")
        return real_upload_part(**kwargs)

    monkeypatch.setattr(s3, "upload_part", flaky_upload_part)
    with pytest.raises(TableExportError, match="UploadPart: InternalError"):
        export_table(conn, UPLOADS, s3, bucket, KEY, part_size=MIN_PART_SIZE)

    assert calls == [1, 2]  # nothing was attempted after the failure
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE  # COPY ended, rolled back
    assert conn.execute("SELECT count(*) FROM user_uploads").fetchone() == (120_000,)


def test_export_refuses_bad_arguments(conn, s3, bucket):
    with pytest.raises(ValueError, match="part_size"):
        export_table(conn, UPLOADS, s3, bucket, KEY, part_size=1024)
    with conn.transaction(), pytest.raises(ValueError, match="no transaction open"):
        export_table(conn, UPLOADS, s3, bucket, KEY)


def test_verify_reports_corruption(app_db, conn, s3, bucket, plan):
    seed_demo(app_db, plan)
    result = export_table(conn, UPLOADS, s3, bucket, KEY)
    metadata = s3.head_object(Bucket=bucket, Key=KEY)["Metadata"]
    csv_bytes = b"".join(read_export(s3, bucket, KEY))

    assert not verify_export(s3, bucket, KEY, "0" * 64).ok  # wrong expectation

    tampered = csv_bytes.replace(b"u101", b"u999", 1)
    s3.put_object(Bucket=bucket, Key="tampered", Body=gzip.compress(tampered, mtime=0), Metadata=metadata)
    check = verify_export(s3, bucket, "tampered", result.sha256)
    assert not check.ok and check.rows == result.rows
    assert any("differs from the expected" in p for p in check.problems)

    whole = gzip.compress(csv_bytes, mtime=0)
    s3.put_object(Bucket=bucket, Key="truncated", Body=whole[: len(whole) // 2], Metadata=metadata)
    check = verify_export(s3, bucket, "truncated", result.sha256)
    assert not check.ok
    assert any("truncated" in p for p in check.problems)

    with pytest.raises(CorruptExportError, match="truncated"):
        b"".join(read_export(s3, bucket, "truncated"))
    with pytest.raises(TableExportError, match="NoSuchKey"):
        verify_export(s3, bucket, "missing", result.sha256)


# --------------------------------------------------------------------------- restore
def test_restore_inserts_only_missing_rows_and_advances_the_sequence(app_db, conn, s3, bucket, plan):
    seed_demo(app_db, plan)
    original = {row[0]: row for row in all_rows(conn, "user_uploads")}
    export_table(conn, UPLOADS, s3, bucket, KEY)

    deleted = [3, 7, 8, max(original)]
    conn.execute("DELETE FROM user_uploads WHERE id = ANY(%s)", (deleted,))
    conn.execute("UPDATE user_uploads SET original_filename = 'changed after the export' WHERE id IN (1, 2)")
    changed = {row[0]: row for row in all_rows(conn, "user_uploads") if row[0] in (1, 2)}

    with conn.transaction():
        temp, loaded = load_export_into_temp(conn, UPLOADS, s3, bucket, KEY)
        assert loaded == len(original)
        assert insert_missing_rows(conn, UPLOADS, temp) == len(deleted)
        assert insert_missing_rows(conn, UPLOADS, temp) == 0  # re-running changes nothing

    now = {row[0]: row for row in all_rows(conn, "user_uploads")}
    assert set(now) == set(original)
    assert all(now[i] == original[i] for i in deleted)
    assert all(now[i] == changed[i] for i in (1, 2))  # existing rows are not overwritten
    assert all(now[i] == original[i] for i in original if i not in (1, 2))
    # the temp table is gone with the transaction
    assert conn.execute("SELECT to_regclass(%s)", (temp,)).fetchone() == (None,)

    new_id = conn.execute(
        "INSERT INTO user_uploads (user_id, s3_bucket, s3_key) VALUES ('u1', 'b', 'k') RETURNING id"
    ).fetchone()[0]
    assert new_id > max(original)


def test_restore_into_emptied_table_moves_the_sequence_forward(app_db, conn, s3, bucket, plan):
    seed_demo(app_db, plan)
    for table in (UPLOADS, PROFILES):
        export_table(conn, table, s3, bucket, f"{table.name}.csv.gz")
    top = conn.execute("SELECT max(id) FROM business_profiles").fetchone()[0]
    conn.execute("TRUNCATE user_uploads, business_profiles RESTART IDENTITY")  # sequences back to 1

    with conn.transaction():
        for table in (UPLOADS, PROFILES):
            temp, loaded = load_export_into_temp(conn, table, s3, bucket, f"{table.name}.csv.gz")
            assert insert_missing_rows(conn, table, temp) == loaded > 0

    new_id = conn.execute(
        "INSERT INTO business_profiles (user_id, business_name) VALUES ('new-user', 'New') RETURNING id"
    ).fetchone()[0]
    assert new_id == top + 1


def test_restore_never_moves_a_sequence_back(app_db, conn, s3, bucket, plan):
    seed_demo(app_db, plan)
    export_table(conn, UPLOADS, s3, bucket, KEY)
    conn.execute("SELECT setval(pg_get_serial_sequence('user_uploads', 'id'), 1000)")
    conn.execute("DELETE FROM user_uploads WHERE id = 5")
    with conn.transaction():
        temp, _ = load_export_into_temp(conn, UPLOADS, s3, bucket, KEY)
        assert insert_missing_rows(conn, UPLOADS, temp) == 1
    assert conn.execute("SELECT nextval(pg_get_serial_sequence('user_uploads', 'id'))").fetchone() == (1001,)


def test_restore_after_a_column_was_added(app_db, conn, s3, bucket, plan):
    seed_demo(app_db, plan)
    before = all_rows(conn, "user_uploads")
    export_table(conn, UPLOADS, s3, bucket, KEY)
    conn.execute("ALTER TABLE user_uploads ADD COLUMN checksum text NOT NULL DEFAULT 'unknown'")
    conn.execute("DELETE FROM user_uploads")
    with conn.transaction():
        temp, loaded = load_export_into_temp(conn, UPLOADS, s3, bucket, KEY)
        assert insert_missing_rows(conn, UPLOADS, temp) == loaded == len(before)
    assert all_rows(conn, "user_uploads") == [(*row, "unknown") for row in before]


def test_load_refuses_wrong_or_corrupt_exports(app_db, conn, s3, bucket, plan):
    seed_demo(app_db, plan)
    export_table(conn, PROFILES, s3, bucket, "profiles.csv.gz")
    export_table(conn, UPLOADS, s3, bucket, KEY)

    with pytest.raises(ValueError, match="inside the caller's transaction"):
        load_export_into_temp(conn, UPLOADS, s3, bucket, KEY)

    wrong_table = "export of table business_profiles, not user_uploads"
    with pytest.raises(TableExportError, match=wrong_table), conn.transaction():
        load_export_into_temp(conn, UPLOADS, s3, bucket, "profiles.csv.gz")

    metadata = s3.head_object(Bucket=bucket, Key=KEY)["Metadata"]
    tampered = b"".join(read_export(s3, bucket, KEY)).replace(b"u101", b"u999", 1)
    s3.put_object(Bucket=bucket, Key="tampered", Body=gzip.compress(tampered), Metadata=metadata)
    with pytest.raises(TableExportError, match="corrupt"), conn.transaction():
        load_export_into_temp(conn, UPLOADS, s3, bucket, "tampered")
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE

    with pytest.raises(ValueError, match="not a temp table"), conn.transaction():
        insert_missing_rows(conn, UPLOADS, 'user_uploads"; DROP TABLE user_uploads; --')
