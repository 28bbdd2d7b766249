"""GDPR data export (right of access, Art. 15 / portability, Art. 20): one ZIP per request.

Framework-free (a psycopg connection, a boto3 client). Layout of the archive:

    rows/<table>.csv      the user's rows of every table the plan lists (header + rows)
    rows/<table>.json     the same rows as a JSON array (ISO-8601 datetimes, NULL kept as null)
    files/<name>          the current version of every object the user owns, under a safe base name
    manifest.json         what is in the archive: per file its source, version id, size and sha256;
                          per table its row count; objects the rows name that do not exist

The ZIP is streamed: each object body is read in 1 MiB chunks into a `zipfile.ZipFile` opened on a
write-only stream that uploads S3 multipart parts as they fill, so memory stays bounded whatever
the size of the files. It lands in the export bucket at `exports/<request reference>/<run id>.zip`
(SSE AES256, metadata and tag naming its expiry date); `presign` makes the download link.
Exports older than `gdpr.export_expire_days` are deleted by `delete_expired_exports` at the start
of every export run (a lifecycle rule on `exports/` is the second line of defence).

Nothing here logs or reports row values or file contents: only counts, sizes and checksums.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import re
import unicodedata
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from botocore.exceptions import ClientError
from psycopg import sql

from dataprotection.config import Plan, Table
from dataprotection.gdpr.footprint import ObjectRef, row_refs, user_prefixes, user_rows

log = logging.getLogger(__name__)

EXPORTS_PREFIX = "exports/"
FORMAT = "dataprotection.gdpr-export/1"
CHUNK_SIZE = 1 << 20  # bytes read from an S3 body at a time
PART_SIZE = 8 << 20  # first multipart part size (S3: >= 5 MiB except the last part)
MIN_PART_SIZE = 5 << 20
MAX_PART_SIZE = 5 << 30
MAX_PARTS = 10_000
MAX_LINK_SECONDS = 7 * 86400  # SigV4 presigned URLs live at most 7 days
FILENAME_COLUMN = "original_filename"  # a row column naming the file as the user uploaded it
MAX_NAME_BYTES = 180  # archive base names (leaves room for " (n)" and every filesystem's 255-byte limit)

_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9._-]")
# NUL and other C0/C1 controls, and the bidi controls that can disguise an extension ("gpj.exe").
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_RESERVED = re.compile(r'[<>:"|?*]')  # not allowed in Windows file names
_DRIVE = re.compile(r"^[A-Za-z]:")
_DOTS = re.compile(r"\.{2,}")
_WINDOWS_DEVICES = re.compile(r"^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$", re.IGNORECASE)
# Already-compressed formats are stored as they are (deflating them costs CPU and saves nothing).
_STORED_SUFFIXES = frozenset({
    ".zip", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".zst", ".jpg", ".jpeg", ".png", ".gif", ".webp", ".heic",
    ".avif", ".mp3", ".mp4", ".m4a", ".mov", ".avi", ".mkv", ".webm", ".pdf", ".docx", ".xlsx", ".pptx", ".odt",
    ".ods", ".odp", ".epub",
})


class ExportError(RuntimeError):
    """The export cannot be produced; the message says what was wrong and what to do."""


# --------------------------------------------------------------------------- naming
def safe_key_part(value: str) -> str:
    """`value` with anything but [A-Za-z0-9._-] replaced by `_` (for S3 keys built from params/run ids)."""
    cleaned = _UNSAFE_KEY_CHARS.sub("_", value).strip(".") or "_"
    return cleaned


def export_key(request_reference: str, run_id: str) -> str:
    """Where the export of a run lands: `exports/<safe request reference>/<safe run id>.zip`."""
    return f"{EXPORTS_PREFIX}{safe_key_part(request_reference)}/{safe_key_part(run_id)}.zip"


def _clean_name(value: Any) -> str:
    if not isinstance(value, str) or not value:
        return ""
    name = unicodedata.normalize("NFC", value)
    name = _CONTROL.sub("", name).replace("\\", "/")
    name = name.rsplit("/", 1)[-1]  # the base name only: no directories, no leading '/'
    name = _DRIVE.sub("", name)  # "C:evil.txt"
    name = _RESERVED.sub("_", name)
    name = _DOTS.sub(".", name)  # no '..' anywhere
    name = name.strip(" .")  # no hidden files, no names Windows would silently change
    if _WINDOWS_DEVICES.match(name):
        name = "_" + name
    return _truncate(name, MAX_NAME_BYTES)


def _truncate(name: str, limit: int) -> str:
    if len(name.encode("utf-8")) <= limit:
        return name
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem or len(ext.encode("utf-8")) > 16:
        stem, ext, dot = name, "", ""
    room = limit - len((dot + ext).encode("utf-8"))
    stem = stem.encode("utf-8")[:room].decode("utf-8", "ignore").rstrip(" .")
    return f"{stem}{dot}{ext}" if stem else _truncate(ext, limit)


def safe_filename(original: Any, key: str) -> str:
    """A base name that is safe in any archive/filesystem: never a path.

    `original` (e.g. the row's original_filename) is untrusted: directories, `..`, a leading `/`,
    backslashes, NUL/control characters and drive letters are removed. Falls back to the key's last
    segment, then to `file`.
    """
    return _clean_name(original) or _clean_name(key.rsplit("/", 1)[-1]) or "file"


class NameAllocator:
    """Unique names inside one folder: `report.pdf`, `report (2).pdf`, ... (case-insensitively)."""

    def __init__(self) -> None:
        self._used: set[str] = set()

    def take(self, name: str) -> str:
        stem, dot, ext = name.rpartition(".")
        if not stem:  # no extension, or a name such as "file"
            stem, dot, ext = name, "", ""
        candidate, n = name, 1
        while candidate.casefold() in self._used:
            n += 1
            candidate = f"{stem} ({n}){dot}{ext}"
        self._used.add(candidate.casefold())
        return candidate


# --------------------------------------------------------------------------- rows
@dataclass
class TableRows:
    table: Table
    columns: list[str]
    rows: list[dict[str, Any]]


def _columns(conn: psycopg.Connection, table: Table) -> list[str]:
    # No user input here: the table name comes from the validated plan and is quoted as an identifier.
    with conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT * FROM {t} LIMIT 0").format(t=sql.Identifier(table.name)))
        return [d.name for d in cur.description or []]


def gather_rows(conn: psycopg.Connection, plan: Plan, user_id: str) -> list[TableRows]:
    """The user's rows of every table of the plan (parameterised queries via footprint.user_rows).

    Run it in one REPEATABLE READ transaction to get a consistent picture across tables.
    """
    return [TableRows(t, _columns(conn, t), user_rows(conn, t, user_id)) for t in plan.database.tables]


def _plain(value: Any) -> Any:
    """A JSON-able form of a database value (datetimes as ISO-8601)."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()  # PostgreSQL's bytea hex text form
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    plain = _plain(value)
    if isinstance(plain, dict | list):
        return json.dumps(plain, ensure_ascii=False, sort_keys=True)
    return str(plain)


def _csv_chunks(data: TableRows, batch: int = 500) -> Iterator[bytes]:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(data.columns)
    for i, row in enumerate(data.rows, 1):
        writer.writerow([_csv_cell(row.get(c)) for c in data.columns])
        if i % batch == 0:
            yield buf.getvalue().encode("utf-8")
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue().encode("utf-8")


def _json_bytes(data: TableRows) -> bytes:
    doc = [{c: _plain(row.get(c)) for c in data.columns} for row in data.rows]
    return json.dumps(doc, ensure_ascii=False, indent=2).encode("utf-8")


# --------------------------------------------------------------------------- S3 upload stream
class MultipartUploadStream:
    """A write-only, non-seekable stream uploading what is written as S3 multipart parts.

    Parts are sent as soon as `part_size` bytes are buffered (the buffer itself is sent, never
    copied); past every 1,000 parts the part size doubles, so the 10,000-part limit is never hit.
    Computes the sha256 and size of everything written. `complete()` finishes the upload,
    `abort()` removes it (and drops any later write).
    """

    def __init__(self, client, bucket: str, key: str, *, part_size: int = PART_SIZE, **create_args: Any) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes (S3's minimum part size)")
        self.client, self.bucket, self.key = client, bucket, key
        self.part_size = part_size
        self.create_args = create_args
        self.upload_id: str | None = None
        self.parts: list[dict[str, Any]] = []
        self.size = 0
        self._sha = hashlib.sha256()
        self._buffer = bytearray()
        self._discarded = False

    # the file-object protocol zipfile uses
    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        pass

    def write(self, data) -> int:
        n = len(data) if isinstance(data, bytes | bytearray) else memoryview(data).nbytes
        if self._discarded or not n:
            return n
        self._sha.update(data)
        self._buffer += data
        self.size += n
        if len(self._buffer) >= self._target():
            self._send()
        return n

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()

    def _target(self) -> int:
        return min(self.part_size << (len(self.parts) // 1000), MAX_PART_SIZE)

    def _start(self) -> None:
        if self.upload_id is None:
            self.upload_id = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=self.key, **self.create_args
            )["UploadId"]

    def _send(self) -> None:
        self._start()
        number = len(self.parts) + 1
        if number > MAX_PARTS:
            raise ExportError(f"s3://{self.bucket}/{self.key}: more than {MAX_PARTS} parts; raise part_size")
        body, self._buffer = self._buffer, bytearray()
        response = self.client.upload_part(
            Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number, Body=body
        )
        self.parts.append({"PartNumber": number, "ETag": response["ETag"]})

    def complete(self) -> dict[str, Any]:
        if self._discarded:
            raise ExportError("the upload was aborted")
        if self._buffer or not self.parts:
            self._send()  # the last part may be smaller than 5 MiB
        response = self.client.complete_multipart_upload(
            Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, MultipartUpload={"Parts": self.parts}
        )
        self.upload_id = None
        return {"etag": response.get("ETag", "").strip('"'), "parts": len(self.parts)}

    def discard(self) -> None:
        """Drop the buffer and every later write (zipfile still writes its directory on close)."""
        self._discarded = True
        self._buffer = bytearray()

    def abort(self) -> None:
        """Abort the multipart upload (best effort: the original error matters more)."""
        self.discard()
        if self.upload_id is None:
            return
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)
        except ClientError:
            log.warning("could not abort multipart upload of s3://%s/%s; a lifecycle rule will", self.bucket,
                        self.key)
        self.upload_id = None


class _HashingWriter:
    """Wraps a zip entry: counts and hashes what goes in."""

    def __init__(self, dest) -> None:
        self.dest = dest
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.sha.update(data)
        self.size += len(data)
        self.dest.write(data)


# --------------------------------------------------------------------------- the export
@dataclass
class _Candidate:
    refs: list[ObjectRef]  # the same object as written / percent-decoded (first one is "as written")
    name_hint: Any = None
    source: str = ""


@dataclass
class ExportResult:
    bucket: str
    key: str
    size: int
    sha256: str
    parts: int
    created_at: str
    expires_at: str
    manifest: dict[str, Any]
    link: dict[str, Any] = field(default_factory=dict)

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def empty(self) -> bool:
        return not self.manifest["totals"]["rows"] and not self.manifest["totals"]["files"]


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _zip_time(moment: datetime | None) -> tuple[int, int, int, int, int, int]:
    if moment is None:
        moment = datetime(1980, 1, 1, tzinfo=UTC)
    moment = moment.astimezone(UTC)
    if moment.year < 1980:
        return (1980, 1, 1, 0, 0, 0)
    return (moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second)


def _entry(name: str, when: datetime | None, compress: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_zip_time(when))
    info.compress_type = compress
    info.external_attr = 0o600 << 16
    return info


def _candidates(plan: Plan, user_id: str, tables: list[TableRows], client) -> Iterator[_Candidate]:
    """Objects named by rows (in table/primary-key order), then every live object under the user's folders."""
    for data in tables:
        for row in data.rows:
            by_column: dict[str, list[ObjectRef]] = {}
            for ref in row_refs(data.table, row):
                by_column.setdefault(ref.column, []).append(ref)
            for column, refs in by_column.items():
                yield _Candidate(refs, row.get(FILENAME_COLUMN), f"{data.table.name}.{column}")
    paginator = client.get_paginator("list_objects_v2")
    for bucket, prefix in user_prefixes(plan, user_id):
        if not prefix.endswith("/"):
            raise ExportError(
                f"gdpr.user_prefixes: {prefix!r} must end with '/' (else user 'u1' would also get 'u10...' keys)"
            )
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                if not obj["Key"].endswith("/"):  # folder placeholders hold nothing
                    yield _Candidate([ObjectRef(bucket, obj["Key"], "", "")], None, "prefix")


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _compression(name: str) -> int:
    suffix = name[name.rfind("."):].lower() if "." in name else ""
    return zipfile.ZIP_STORED if suffix in _STORED_SUFFIXES else zipfile.ZIP_DEFLATED


def write_export(
    client,
    plan: Plan,
    *,
    user_id: str,
    request_reference: str,
    run_id: str,
    tables: list[TableRows],
    created_at: datetime,
    part_size: int = PART_SIZE,
    chunk_size: int = CHUNK_SIZE,
) -> ExportResult:
    """Stream the export ZIP (rows, files, manifest) into the export bucket; return what was written."""
    bucket, key = plan.export_bucket, export_key(request_reference, run_id)
    expires = created_at + timedelta(days=plan.gdpr.export_expire_days)
    source_buckets = set(plan.bucket_names)
    stream = MultipartUploadStream(
        client, bucket, key, part_size=part_size,
        ContentType="application/zip",
        ContentDisposition=f'attachment; filename="export-{safe_key_part(request_reference)}.zip"',
        ServerSideEncryption="AES256",
        Expires=expires,
        Metadata={"expires-at": _iso(expires), "request-reference": safe_key_part(request_reference)},
        Tagging=f"dataprotection-kind=gdpr-export&dataprotection-expires={expires.date().isoformat()}",
    )
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "request_reference": request_reference,
        "created_at": _iso(created_at),
        "expires_at": _iso(expires),
        "export": {"bucket": bucket, "key": key},
        "tables": {},
        "files": [],
        "missing": [],
        "unavailable": [],
        "skipped": [],
    }
    try:
        zf = zipfile.ZipFile(stream, mode="w", allowZip64=True)
        try:
            _write_rows(zf, tables, created_at, manifest)
            _write_files(zf, client, plan, user_id, tables, source_buckets, manifest, chunk_size)
            files = manifest["files"]
            manifest["totals"] = {
                "tables": len(tables),
                "rows": sum(t["rows"] for t in manifest["tables"].values()),
                "files": len(files),
                "bytes": sum(f["size"] for f in files),
                "missing": len(manifest["missing"]),
                "unavailable": len(manifest["unavailable"]),
                "skipped": len(manifest["skipped"]),
            }
            body = json.dumps(manifest, ensure_ascii=False, indent=2, sort_keys=True).encode("utf-8")
            with zf.open(_entry("manifest.json", created_at, zipfile.ZIP_DEFLATED), "w") as dest:
                dest.write(body)
        except BaseException:
            stream.discard()
            raise
        finally:
            zf.close()
        done = stream.complete()
    except BaseException:
        stream.abort()
        raise
    totals = manifest["totals"]
    log.info("export written: %d tables, %d rows, %d files (%d bytes), %d missing, %d unavailable, "
             "%d skipped; archive %d bytes in %d parts", totals["tables"], totals["rows"], totals["files"],
             totals["bytes"], totals["missing"], totals["unavailable"], totals["skipped"], stream.size,
             done["parts"])
    return ExportResult(bucket=bucket, key=key, size=stream.size, sha256=stream.sha256, parts=done["parts"],
                        created_at=_iso(created_at), expires_at=_iso(expires), manifest=manifest)


def _write_rows(zf: zipfile.ZipFile, tables: list[TableRows], created_at: datetime, manifest: dict) -> None:
    for data in tables:
        entry: dict[str, Any] = {"rows": len(data.rows)}
        for fmt, chunks in (("csv", _csv_chunks(data)), ("json", iter([_json_bytes(data)]))):
            name = f"rows/{data.table.name}.{fmt}"
            with zf.open(_entry(name, created_at, zipfile.ZIP_DEFLATED), "w", force_zip64=True) as dest:
                out = _HashingWriter(dest)
                for chunk in chunks:
                    out.write(chunk)
            entry[fmt] = {"name": name, "size": out.size, "sha256": out.sha.hexdigest()}
        manifest["tables"][data.table.name] = entry


def _write_files(zf, client, plan: Plan, user_id: str, tables: list[TableRows], source_buckets: set[str],
                 manifest: dict, chunk_size: int) -> None:
    names = NameAllocator()
    done: set[tuple[str, str]] = set()  # exported (bucket, key)
    absent: set[tuple[str, str]] = set()  # looked up, not there
    reported: set[tuple[str, str]] = set()  # already listed as missing/unavailable/skipped
    for cand in _candidates(plan, user_id, tables, client):
        first = cand.refs[0]
        idents = {(r.bucket, r.key) for r in cand.refs}
        if first.bucket not in source_buckets:
            if not idents & reported:
                reported |= idents
                manifest["skipped"].append({"bucket": first.bucket, "key": first.key, "table": first.table,
                                            "column": first.column, "reason": "not a source bucket of the plan"})
            continue
        unavailable = None
        for ref in cand.refs:
            ident = (ref.bucket, ref.key)
            if ident in done:
                break
            if ident in absent:
                continue
            try:
                response = client.get_object(Bucket=ref.bucket, Key=ref.key)
            except ClientError as exc:
                code = _error_code(exc)
                if code in ("NoSuchKey", "404", "NotFound"):
                    absent.add(ident)
                    continue
                if code == "InvalidObjectState":  # archived (GLACIER / DEEP_ARCHIVE) and not restored
                    unavailable = {"bucket": ref.bucket, "key": ref.key, "table": ref.table, "column": ref.column,
                                   "reason": "archived storage class: restore the object, then export again"}
                    absent.add(ident)
                    continue
                raise ExportError(f"cannot read s3://{ref.bucket}/{ref.key}: {code or exc}") from exc
            name = "files/" + names.take(safe_filename(cand.name_hint, ref.key))
            manifest["files"].append(_stream_object(zf, response, name, ref, cand.source, chunk_size))
            done.add(ident)
            break
        else:
            if not idents & reported:
                reported |= idents
                if unavailable:
                    manifest["unavailable"].append(unavailable)
                else:
                    manifest["missing"].append({"bucket": first.bucket, "key": first.key, "table": first.table,
                                                "column": first.column, "reason": "object does not exist"})


def _stream_object(zf: zipfile.ZipFile, response: dict, name: str, ref: ObjectRef, source: str,
                   chunk_size: int) -> dict[str, Any]:
    body = response["Body"]
    try:
        info = _entry(name, response.get("LastModified"), _compression(name))
        with zf.open(info, "w", force_zip64=True) as dest:
            out = _HashingWriter(dest)
            for chunk in body.iter_chunks(chunk_size):
                out.write(chunk)
    finally:
        body.close()
    expected = response.get("ContentLength")
    if expected is not None and expected != out.size:
        raise ExportError(f"s3://{ref.bucket}/{ref.key}: read {out.size} of {expected} bytes; run the export again")
    version = response.get("VersionId")
    return {
        "name": name,
        "size": out.size,
        "sha256": out.sha.hexdigest(),
        "bucket": ref.bucket,
        "key": ref.key,
        "version_id": version if version and version != "null" else None,
        "last_modified": _iso(response["LastModified"]) if response.get("LastModified") else None,
        "content_type": response.get("ContentType"),
        "source": source,
    }


# --------------------------------------------------------------------------- link, expiry, report
def presign(client, plan: Plan, result: ExportResult, signed_at: datetime | None = None) -> dict[str, Any]:
    """A presigned GET link to the export, valid `gdpr.export_link_days` days (SigV4 allows at most 7)."""
    seconds = plan.gdpr.export_link_days * 86400
    if not 0 < seconds <= MAX_LINK_SECONDS:
        raise ExportError(f"gdpr.export_link_days: {plan.gdpr.export_link_days} days is over S3's 7-day limit")
    signed_at = signed_at or datetime.now(UTC)  # a fact about the signature, taken when it is made
    url = client.generate_presigned_url(
        "get_object", Params={"Bucket": result.bucket, "Key": result.key}, ExpiresIn=seconds
    )
    expires_at = _iso(signed_at + timedelta(seconds=seconds))
    result.link = {"url": url, "expires_in_seconds": seconds, "expires_at": expires_at}
    return result.link


def export_user(
    conn: psycopg.Connection,
    client,
    plan: Plan,
    *,
    user_id: str,
    request_reference: str,
    run_id: str,
    created_at: datetime,
    part_size: int = PART_SIZE,
    chunk_size: int = CHUNK_SIZE,
) -> ExportResult:
    """Gather the user's rows, stream the ZIP to the export bucket and presign a download link."""
    tables = gather_rows(conn, plan, user_id)
    log.info("gathered %d rows from %d tables", sum(len(t.rows) for t in tables), len(tables))
    result = write_export(client, plan, user_id=user_id, request_reference=request_reference, run_id=run_id,
                          tables=tables, created_at=created_at, part_size=part_size, chunk_size=chunk_size)
    presign(client, plan, result)
    return result


def delete_expired_exports(client, plan: Plan, now: datetime) -> dict[str, int]:
    """Delete every object under `exports/` of the export bucket older than `gdpr.export_expire_days`."""
    cutoff = now - timedelta(days=plan.gdpr.export_expire_days)
    expired: list[str] = []
    kept = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=plan.export_bucket, Prefix=EXPORTS_PREFIX):
        for obj in page.get("Contents", []):
            if obj["LastModified"] < cutoff:
                expired.append(obj["Key"])
            else:
                kept += 1
    failed = 0
    for start in range(0, len(expired), 1000):
        batch = [{"Key": k} for k in expired[start:start + 1000]]
        response = client.delete_objects(Bucket=plan.export_bucket, Delete={"Objects": batch, "Quiet": True})
        failed += len(response.get("Errors", []))
    if failed:
        raise ExportError(f"{failed} expired exports in s3://{plan.export_bucket}/{EXPORTS_PREFIX} could not be "
                          "deleted; check the bucket policy and run again")
    log.info("expired exports (older than %d days): %d deleted, %d kept", plan.gdpr.export_expire_days,
             len(expired), kept)
    return {"deleted": len(expired), "kept": kept, "older_than_days": plan.gdpr.export_expire_days,
            "cutoff": _iso(cutoff)}


def report_doc(result: ExportResult, run_id: str, cleanup: dict[str, int] | None = None) -> dict[str, Any]:
    """The compliance report: counts, sizes, checksums, locations and expiry — no row values, no contents.

    The signed URL itself is not in the report (it is a bearer credential for the user's data); only
    its expiry is. It is in the task's return value.
    """
    totals = result.manifest["totals"]
    if result.empty:
        status, note = "exported_empty", ("no rows and no files were found for this user: the export contains "
                                          "an empty files list and zero rows")
    elif totals["missing"] or totals["unavailable"]:
        status, note = "exported_incomplete", ("some objects named by the user's rows do not exist or are "
                                               "archived; see manifest.missing and manifest.unavailable")
    else:
        status, note = "exported", "every row and file found for the user is in the export"
    return {
        "kind": "gdpr-export",
        "run_id": run_id,
        "request_reference": result.manifest["request_reference"],
        "status": status,
        "note": note,
        "export": {"bucket": result.bucket, "key": result.key, "uri": result.uri, "size": result.size,
                   "sha256": result.sha256, "encryption": "AES256", "created_at": result.created_at,
                   "expires_at": result.expires_at},
        "link": {k: v for k, v in result.link.items() if k != "url"},
        "totals": totals,
        "expired_exports": cleanup or {},
        "manifest": result.manifest,
    }
