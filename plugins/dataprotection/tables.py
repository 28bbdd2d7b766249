"""Export app tables to S3 and load them back, streaming (framework-free; no Airflow imports).

Export format (one S3 object per table export)
----------------------------------------------
- The bytes are a single gzip member (mtime 0, no file name, level 6) of exactly what
  ``COPY (SELECT * FROM <table> ORDER BY <primary key>) TO STDOUT WITH (FORMAT csv, HEADER true,
  ENCODING 'UTF8')`` produces: a header line with the column names, then one record per row in
  primary-key order, each record terminated by ``\\n``. The same rows always give the same bytes.
- COPY's CSV semantics: NULL is an unquoted empty field, the empty string is a quoted empty field
  (``""``); a value containing a comma, quote, CR or LF is quoted, with quotes doubled. Records can
  therefore span several lines; never count rows by counting lines.
- Values are rendered with fixed session settings (TimeZone UTC, DateStyle ISO, IntervalStyle
  postgres, extra_float_digits 3), so the bytes do not depend on the exporting session.
- The data is one consistent snapshot (a REPEATABLE READ READ ONLY transaction).
- S3 user metadata: ``rows`` (data rows, header excluded), ``sha256-csv`` (hex SHA-256 of the
  *uncompressed* CSV bytes), ``bytes-csv`` (uncompressed size) and ``table``. ContentType is
  ``application/gzip`` (deliberately no Content-Encoding: clients must not decompress on the fly).

To read an export by hand: ``aws s3 cp s3://<bucket>/<key> - | gunzip``; ``psql -c "\\copy <table>
FROM <file> WITH (FORMAT csv, HEADER true)"`` loads it back.

Loading back (``load_export_into_temp`` → ``redact_erased_users`` → ``insert_missing_rows``) re-applies
the GDPR erasure ledger between the load and the insert: rows of erased users are dropped from the
temporary table, or their URL columns emptied, as the table's ``on_erasure`` says.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import re
import secrets
import zlib
from collections.abc import Iterable, Iterator
from contextlib import closing
from dataclasses import asdict, dataclass
from typing import Any

import psycopg
from botocore.exceptions import BotoCoreError, ClientError
from psycopg import sql
from psycopg.pq import TransactionStatus

from dataprotection.config import Table
from dataprotection.gdpr.ledger import Redactor

MIN_PART_SIZE = 5 * 1024 * 1024  # S3: every part but the last must be at least 5 MiB
MAX_PART_SIZE = 5 * 1024 * 1024 * 1024  # S3: at most 5 GiB per part
MAX_PARTS = 10_000  # S3: at most 10,000 parts per upload
DEFAULT_PART_SIZE = 8 * 1024 * 1024
GZIP_LEVEL = 6
CONTENT_TYPE = "application/gzip"
CHECKSUM_ALGORITHM = "CRC32"  # S3 verifies every part on arrival
_BATCH = 1024 * 1024  # COPY rows are hashed and compressed in batches of about this size
_READ_CHUNK = 1024 * 1024  # compressed bytes per S3 read; also the cap on one decompressed chunk
_MAX_HEADER = 1024 * 1024
_TEMP_PREFIX = "dp_restore_"
_TEMP_NAME = re.compile(r"^dp_restore_[a-z0-9_]{1,52}$")

# Session settings that fix how values are rendered, like pg_dump does (SET LOCAL: this
# transaction only).
_EXPORT_SETTINGS = {
    "TimeZone": "UTC",
    "DateStyle": "ISO, YMD",
    "IntervalStyle": "postgres",
    "extra_float_digits": "3",
    "bytea_output": "hex",
}

META_ROWS = "rows"
META_SHA256 = "sha256-csv"
META_BYTES = "bytes-csv"
META_TABLE = "table"


class TableExportError(RuntimeError):
    """An export could not be written, read, verified or loaded; the message says what to do."""


class CorruptExportError(TableExportError):
    """The object's bytes are not a complete gzip stream (truncated, damaged, or not an export)."""


@dataclass(frozen=True)
class TableExport:
    """What ``export_table`` wrote; sha256 is over the uncompressed CSV, rows exclude the header."""

    table: str
    bucket: str
    key: str
    rows: int
    bytes_uncompressed: int
    bytes_compressed: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ExportVerification:
    """Result of re-reading an export: what was counted, and what it was expected to be."""

    table: str | None  # from the object's metadata
    bucket: str
    key: str
    rows: int
    bytes_uncompressed: int
    bytes_compressed: int
    sha256: str
    expected_sha256: str | None
    metadata_rows: int | None
    metadata_sha256: str | None
    complete: bool  # the CSV has a header and ends with a complete record
    error: str | None = None  # the object could not be decompressed

    @property
    def problems(self) -> list[str]:
        found = []
        if self.error:
            found.append(self.error)
        elif not self.complete:
            found.append("the CSV is truncated (no header, or the last record is unterminated)")
        if self.expected_sha256 is not None and self.sha256 != self.expected_sha256:
            found.append(f"sha256 {self.sha256} differs from the expected {self.expected_sha256}")
        if self.metadata_sha256 is None or self.metadata_rows is None:
            found.append("the object has no rows/sha256-csv metadata (not written by export_table?)")
        else:
            if self.sha256 != self.metadata_sha256:
                found.append(f"sha256 {self.sha256} differs from the object's metadata {self.metadata_sha256}")
            if self.rows != self.metadata_rows:
                found.append(f"{self.rows} rows counted, the object's metadata says {self.metadata_rows}")
        return found

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok, "problems": self.problems}


# --------------------------------------------------------------------------- CSV bookkeeping
class CsvStats:
    """SHA-256, size and record count of a PostgreSQL CSV stream, fed chunk by chunk.

    Records end at a LF outside quotes. In COPY's CSV a quote inside a quoted value is doubled, so
    toggling "inside quotes" at every ``"`` byte tracks quoting exactly; ``"`` and LF never occur
    inside a multi-byte UTF-8 sequence, so chunk boundaries anywhere are fine.
    """

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self.size = 0
        self.records = 0
        self._in_quotes = False
        self._last = b""

    def update(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        self._sha.update(data)
        self.size += len(data)
        raw = bytes(data)
        self._last = raw[-1:]
        if b'"' not in raw:
            if not self._in_quotes:
                self.records += raw.count(b"\n")
            return
        for i, segment in enumerate(raw.split(b'"')):
            if i:
                self._in_quotes = not self._in_quotes
            if not self._in_quotes:
                self.records += segment.count(b"\n")

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()

    @property
    def complete(self) -> bool:
        """A header was seen and the stream ends at a record boundary."""
        return self.records >= 1 and not self._in_quotes and self._last == b"\n"

    @property
    def rows(self) -> int:
        """Data rows (the header record excluded)."""
        return max(self.records - 1, 0)


# --------------------------------------------------------------------------- S3 writing
class _Buffer:
    """A write() sink keeping compressed bytes in memory up to `limit`; past it, it drops them."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.overflowed = False

    def write(self, data: bytes) -> int:
        if not self.overflowed:
            self.data += data
            if len(self.data) > self.limit:
                self.overflowed = True
                self.data = bytearray()
        return len(data)

    def flush(self) -> None:
        pass

    def discard(self) -> None:
        self.overflowed = True
        self.data = bytearray()


class _MultipartWriter:
    """A write() sink uploading parts of exactly `part_size` bytes (the last one smaller).

    The upload is created lazily with its final metadata; ``abort()`` removes it. A part is sent
    only when more than `part_size` bytes are buffered, so the last part is never empty.
    """

    def __init__(self, s3, bucket: str, key: str, part_size: int, metadata: dict[str, str]) -> None:
        self.s3, self.bucket, self.key = s3, bucket, key
        self.part_size = part_size
        self.metadata = metadata
        self.upload_id: str | None = None
        self.parts: list[dict[str, Any]] = []
        self.size = 0
        self._buffer = bytearray()
        self._discarded = False

    def write(self, data: bytes) -> int:
        if self._discarded:  # after a failure: late writes (e.g. gzip closing on GC) go nowhere
            return len(data)
        self._buffer += data
        self.size += len(data)
        while len(self._buffer) > self.part_size:
            self._upload_part(bytes(self._buffer[: self.part_size]))
            del self._buffer[: self.part_size]
        return len(data)

    def flush(self) -> None:
        pass

    def discard(self) -> None:
        self._discarded = True
        self._buffer = bytearray()

    def _upload_part(self, body: bytes) -> None:
        if self.upload_id is None:
            self.upload_id = self.s3.create_multipart_upload(
                Bucket=self.bucket,
                Key=self.key,
                ContentType=CONTENT_TYPE,
                Metadata=self.metadata,
                ChecksumAlgorithm=CHECKSUM_ALGORITHM,
            )["UploadId"]
        number = len(self.parts) + 1
        if number > MAX_PARTS:
            raise TableExportError(
                f"s3://{self.bucket}/{self.key} would need more than {MAX_PARTS} parts of {self.part_size} bytes;"
                " raise part_size"
            )
        response = self.s3.upload_part(
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            PartNumber=number,
            Body=body,
            ChecksumAlgorithm=CHECKSUM_ALGORITHM,
        )
        part = {"PartNumber": number, "ETag": response["ETag"]}
        if response.get("ChecksumCRC32"):
            part["ChecksumCRC32"] = response["ChecksumCRC32"]
        self.parts.append(part)

    def complete(self) -> None:
        if self.upload_id is None:  # everything fitted into one part after all
            _put_single(self.s3, self.bucket, self.key, bytes(self._buffer), self.metadata)
            return
        self._upload_part(bytes(self._buffer))
        self._buffer = bytearray()
        self.s3.complete_multipart_upload(
            Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, MultipartUpload={"Parts": self.parts}
        )
        self.upload_id = None

    def abort(self) -> None:
        """Abort the multipart upload if one is open (best effort: the original error matters more)."""
        self.discard()
        if self.upload_id is None:
            return
        try:
            self.s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)
        except (ClientError, BotoCoreError):
            pass
        self.upload_id = None


def _put_single(s3, bucket: str, key: str, body: bytes, metadata: dict[str, str]) -> None:
    s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=body,
        ContentType=CONTENT_TYPE,
        Metadata=metadata,
        ChecksumAlgorithm=CHECKSUM_ALGORITHM,
    )


def _metadata(table: Table, stats: CsvStats) -> dict[str, str]:
    return {
        META_ROWS: str(stats.rows),
        META_SHA256: stats.sha256,
        META_BYTES: str(stats.size),
        META_TABLE: table.name,
    }


# --------------------------------------------------------------------------- export
def _copy_out_statement(table: Table) -> sql.Composed:
    return sql.SQL(
        "COPY (SELECT * FROM {table} ORDER BY {pk}) TO STDOUT WITH (FORMAT csv, HEADER true, ENCODING 'UTF8')"
    ).format(table=sql.Identifier(table.name), pk=sql.Identifier(table.primary_key))


def _copy_out(cur: psycopg.Cursor, statement: sql.Composed) -> Iterator[bytes]:
    """COPY TO STDOUT, yielding batches of about _BATCH bytes (whole rows; never the whole table)."""
    batch = bytearray()
    with cur.copy(statement) as copy:
        for data in copy:
            batch += data
            if len(batch) >= _BATCH:
                yield bytes(batch)
                batch.clear()
    if batch:
        yield bytes(batch)


def _gzip_writer(sink) -> gzip.GzipFile:
    return gzip.GzipFile(filename="", mode="wb", compresslevel=GZIP_LEVEL, fileobj=sink, mtime=0)


def _scan(cur: psycopg.Cursor, table: Table, sink: _Buffer | _MultipartWriter) -> CsvStats:
    """One COPY pass: hash and count the CSV, gzip it into `sink`; check the server's row count."""
    stats = CsvStats()
    gz = _gzip_writer(sink)
    try:
        # closing() ends an interrupted COPY before the transaction rolls back
        with closing(_copy_out(cur, _copy_out_statement(table))) as chunks:
            for chunk in chunks:
                stats.update(chunk)
                if not (isinstance(sink, _Buffer) and sink.overflowed):
                    gz.write(chunk)
        gz.close()
    except BaseException:
        sink.discard()
        raise
    if cur.rowcount != stats.rows or not stats.complete:
        raise TableExportError(
            f"export of table {table.name}: the server sent {cur.rowcount} rows but {stats.rows} CSV records"
            f" were counted (complete={stats.complete}); this is a bug, please report it"
        )
    return stats


def _begin_snapshot(cur: psycopg.Cursor) -> None:
    cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    for name, value in _EXPORT_SETTINGS.items():
        cur.execute("SELECT set_config(%s, %s, true)", (name, value))


def export_table(
    conn: psycopg.Connection,
    table: Table,
    s3,
    bucket: str,
    key: str,
    *,
    part_size: int = DEFAULT_PART_SIZE,
) -> TableExport:
    """Export `table` as gzip CSV (see the module docstring) to ``s3://bucket/key``; return what was written.

    Streams: memory holds about two parts (`part_size` compressed bytes each) at most, plus 1 MiB.

    Consistency and row count: everything runs in one REPEATABLE READ READ ONLY transaction, so every
    COPY in it sees the same snapshot. The row count is the server's own (the ``COPY n`` command tag),
    cross-checked against a quote-aware count of CSV records in the stream (records may contain
    newlines, so lines are never counted); a disagreement raises.

    Metadata: S3 takes object metadata when an upload *starts*, but rows and sha256 are only known at
    the end. So the first COPY pass hashes and counts while compressing into memory: if the compressed
    export fits in one part it is written with a single PutObject (one pass). Otherwise a second COPY
    pass in the same snapshot streams into a multipart upload created with the now-known metadata;
    its SHA-256 must equal the first pass's. No object without metadata ever appears at `key`, and the
    bytes are uploaded once. Any error aborts the multipart upload.

    `conn` must not be inside a transaction (the export opens and ends its own).
    """
    if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
        raise ValueError(f"part_size must be between {MIN_PART_SIZE} and {MAX_PART_SIZE} bytes, got {part_size}")
    if conn.info.transaction_status != TransactionStatus.IDLE:
        raise ValueError(
            "export_table opens its own REPEATABLE READ transaction: pass a connection with no transaction open"
        )
    where = f"s3://{bucket}/{key}"
    writer: _MultipartWriter | None = None
    try:
        with conn.transaction(), conn.cursor() as cur:
            _begin_snapshot(cur)
            probe = _Buffer(part_size)
            stats = _scan(cur, table, probe)
            metadata = _metadata(table, stats)
            if not probe.overflowed:
                _put_single(s3, bucket, key, bytes(probe.data), metadata)
                compressed = len(probe.data)
            else:
                writer = _MultipartWriter(s3, bucket, key, part_size, metadata)
                second = _scan(cur, table, writer)
                if (second.sha256, second.rows) != (stats.sha256, stats.rows):
                    raise TableExportError(
                        f"export of table {table.name}: two COPY passes in one snapshot differ; nothing was written"
                    )
                writer.complete()
                compressed = writer.size
    except (ClientError, BotoCoreError) as exc:
        if writer is not None:
            writer.abort()
        raise TableExportError(
            f"export of table {table.name} to {where} failed: {_describe(exc)}."
            " Check that the bucket exists in the client's region and that the credentials may write to it."
        ) from exc
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    return TableExport(
        table=table.name,
        bucket=bucket,
        key=key,
        rows=stats.rows,
        bytes_uncompressed=stats.size,
        bytes_compressed=compressed,
        sha256=stats.sha256,
    )


def _describe(exc: ClientError | BotoCoreError) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{exc.operation_name}: {error.get('Code', '?')} ({error.get('Message', '')})"
    return str(exc)


# --------------------------------------------------------------------------- reading back
class _ExportReader:
    """Streams an export's uncompressed CSV; keeps its metadata and the compressed bytes read."""

    def __init__(self, s3, bucket: str, key: str) -> None:
        self.bucket, self.key = bucket, key
        try:
            self._response = s3.get_object(Bucket=bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            raise TableExportError(
                f"cannot read the table export s3://{bucket}/{key}: {_describe(exc)}."
                " Check the bucket and key (and the client's region and credentials)."
            ) from exc
        self.metadata: dict[str, str] = {k.lower(): v for k, v in self._response.get("Metadata", {}).items()}
        self.bytes_compressed = 0

    def __iter__(self) -> Iterator[bytes]:
        body = self._response["Body"]
        try:
            yield from self._gunzip(body.iter_chunks(_READ_CHUNK))
        except (ClientError, BotoCoreError) as exc:
            raise TableExportError(
                f"reading the table export s3://{self.bucket}/{self.key} failed: {_describe(exc)}; try again"
            ) from exc
        finally:
            body.close()

    def _gunzip(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """Decompress gzip members (one or more), yielding at most _READ_CHUNK bytes at a time."""
        decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        for compressed in chunks:
            self.bytes_compressed += len(compressed)
            data, pending = compressed, bool(compressed)
            while pending:
                if decompressor.eof:  # another gzip member follows
                    decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
                try:
                    out = decompressor.decompress(data, _READ_CHUNK)
                except zlib.error as exc:
                    raise CorruptExportError(f"s3://{self.bucket}/{self.key} is not valid gzip: {exc}") from exc
                if out:
                    yield out
                data = decompressor.unused_data if decompressor.eof else decompressor.unconsumed_tail
                # a full output chunk may leave output inside zlib even when all input was taken
                pending = bool(data) or (len(out) == _READ_CHUNK and not decompressor.eof)
        if not decompressor.eof:
            raise CorruptExportError(f"s3://{self.bucket}/{self.key} is truncated: its gzip stream does not end")

    def metadata_int(self, name: str) -> int | None:
        value = self.metadata.get(name)
        return int(value) if value is not None and value.isdigit() else None


def read_export(s3, bucket: str, key: str) -> Iterator[bytes]:
    """The uncompressed CSV of an export, in chunks of at most 1 MiB (the object is read once, streaming).

    The object is fetched now (a missing bucket or key raises TableExportError here); a corrupt or
    truncated gzip stream raises CorruptExportError, a failed read TableExportError, while iterating.
    """
    return iter(_ExportReader(s3, bucket, key))


def verify_export(s3, bucket: str, key: str, expected_sha256: str | None) -> ExportVerification:
    """Re-read an export, recomputing SHA-256, size and row count (quote-aware) by streaming.

    `expected_sha256` is the digest recorded at export time (e.g. in a manifest); None checks only
    against the object's own metadata. Look at ``.ok`` / ``.problems`` of the result: a corrupt or
    truncated object is reported there; a missing object, no access or a failed read raises
    TableExportError (retry those).
    """
    reader = _ExportReader(s3, bucket, key)
    stats = CsvStats()
    error = None
    try:
        for chunk in reader:
            stats.update(chunk)
    except CorruptExportError as exc:
        error = str(exc)
    return ExportVerification(
        table=reader.metadata.get(META_TABLE),
        bucket=bucket,
        key=key,
        rows=stats.rows,
        bytes_uncompressed=stats.size,
        bytes_compressed=reader.bytes_compressed,
        sha256=stats.sha256,
        expected_sha256=expected_sha256,
        metadata_rows=reader.metadata_int(META_ROWS),
        metadata_sha256=reader.metadata.get(META_SHA256),
        complete=stats.complete and error is None,
        error=error,
    )


# --------------------------------------------------------------------------- loading back
def _header_end(data: bytes | bytearray) -> int | None:
    """Index of the LF ending the first CSV record (the header), or None if not in `data` yet."""
    in_quotes = False
    for i, byte in enumerate(data):
        if byte == 0x22:  # "
            in_quotes = not in_quotes
        elif byte == 0x0A and not in_quotes:
            return i
    return None


def _split_header(chunks: Iterable[bytes], where: str) -> tuple[list[str], Iterator[bytes]]:
    """The column names of the CSV header, and the full stream again (header included)."""
    iterator = iter(chunks)
    head = bytearray()
    end = None
    for chunk in iterator:
        head += chunk
        end = _header_end(head[:_MAX_HEADER])
        if end is not None or len(head) > _MAX_HEADER:
            break
    if end is None:
        raise TableExportError(f"{where} has no complete CSV header line; it is not a table export")
    try:
        columns = next(csv.reader([head[:end].decode("utf-8")]))
    except (UnicodeDecodeError, csv.Error, StopIteration) as exc:
        raise TableExportError(f"{where} has an unreadable CSV header: {exc}") from exc

    def replay() -> Iterator[bytes]:
        yield bytes(head)
        yield from iterator

    return columns, replay()


def _table_columns(conn: psycopg.Connection, table: str, *, insertable: bool = False) -> list[str]:
    """Column names of `table` in order (insertable: without generated columns)."""
    query = (
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped"
        + (" AND attgenerated = ''" if insertable else "")
        + " ORDER BY attnum"
    )
    regclass = sql.Identifier(table).as_string(conn)
    return [row[0] for row in conn.execute(query, (regclass,)).fetchall()]


def _require_transaction(conn: psycopg.Connection, what: str) -> None:
    if conn.autocommit and conn.info.transaction_status == TransactionStatus.IDLE:
        raise ValueError(f"{what} must run inside the caller's transaction: wrap it in `with conn.transaction():`")


def load_export_into_temp(conn: psycopg.Connection, table: Table, s3, bucket: str, key: str) -> tuple[str, int]:
    """Load the export ``s3://bucket/key`` of `table` into a new temp table; return (its name, rows loaded).

    Runs in the caller's transaction: the temp table is ``LIKE <table> INCLUDING DEFAULTS`` with
    ``ON COMMIT DROP``. COPY's column list is taken from the export's header, so an export made
    before a column was added still loads (the new column gets its default); a header naming a column
    the table lacks, or lacking the primary key, raises. The stream is hashed while loading and must
    match the object's ``sha256-csv`` metadata when present, else TableExportError (and the caller's
    transaction is unusable: roll it back).
    """
    _require_transaction(conn, "load_export_into_temp")
    where = f"s3://{bucket}/{key}"
    reader = _ExportReader(s3, bucket, key)
    if reader.metadata.get(META_TABLE, table.name) != table.name:
        raise TableExportError(f"{where} is an export of table {reader.metadata[META_TABLE]}, not {table.name}")
    columns, chunks = _split_header(reader, where)
    known = set(_table_columns(conn, table.name))
    unknown = [c for c in columns if c not in known]
    if unknown or table.primary_key not in columns:
        raise TableExportError(
            f"{where} does not fit table {table.name}: columns not in the table {unknown},"
            f" primary key {table.primary_key!r} {'present' if table.primary_key in columns else 'missing'}"
        )
    temp_name = f"{_TEMP_PREFIX}{table.name[:30]}_{secrets.token_hex(6)}"
    stats = CsvStats()
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL("CREATE TEMP TABLE {temp} (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DROP").format(
                temp=sql.Identifier(temp_name), table=sql.Identifier(table.name)
            )
        )
        statement = sql.SQL("COPY {temp} ({columns}) FROM STDIN WITH (FORMAT csv, HEADER true, ENCODING 'UTF8')")
        statement = statement.format(
            temp=sql.Identifier(temp_name), columns=sql.SQL(", ").join(map(sql.Identifier, columns))
        )
        with cur.copy(statement) as copy:
            for chunk in chunks:
                stats.update(chunk)
                copy.write(chunk)
            expected = reader.metadata.get(META_SHA256)
            if expected is not None and stats.sha256 != expected:
                # raising inside the block makes psycopg abort the COPY: nothing is loaded
                raise TableExportError(
                    f"{where} is corrupt: sha256 {stats.sha256} differs from its metadata {expected}; not loaded"
                )
        return temp_name, cur.rowcount


def temp_user_ids(conn: psycopg.Connection, table: Table, temp_name: str, itersize: int = 1000) -> Iterator[Any]:
    """The distinct non-NULL values of the table's user column in `temp_name`, streamed through a
    server-side cursor (at most `itersize` in memory). Runs in the caller's transaction."""
    _require_transaction(conn, "temp_user_ids")
    _check_temp_name(temp_name)
    statement = sql.SQL("SELECT DISTINCT {user} FROM {temp} WHERE {user} IS NOT NULL").format(
        user=sql.Identifier(table.user_column), temp=sql.Identifier(temp_name))
    with conn.cursor(name=f"{temp_name}_users") as cur:
        cur.itersize = itersize
        cur.execute(statement)
        for (user_id,) in cur:
            yield user_id


def redact_erased_users(conn: psycopg.Connection, table: Table, temp_name: str, redactor: Redactor | None
                        ) -> dict[str, int]:
    """Re-apply the GDPR erasure ledger to an export loaded into `temp_name`, before rows are inserted.

    For the users `redactor` says were erased: ``on_erasure: delete`` deletes their rows from the temp
    table (they are never re-inserted); ``on_erasure: null_urls`` sets the table's URL columns to NULL
    in their rows. Returns counts only (``erased_users``, ``erased_rows_skipped``,
    ``erased_urls_nulled``), never the ids. The ids go to PostgreSQL as one array parameter."""
    counts = {"erased_users": 0, "erased_rows_skipped": 0, "erased_urls_nulled": 0}
    if not redactor:
        return counts
    erased = [u for u in temp_user_ids(conn, table, temp_name) if redactor.erased_user(str(u))]
    counts["erased_users"] = len(erased)
    if not erased:
        return counts
    temp, user = sql.Identifier(temp_name), sql.Identifier(table.user_column)
    if table.on_erasure == "delete":
        statement = sql.SQL("DELETE FROM {temp} WHERE {user} = ANY(%s)").format(temp=temp, user=user)
        counted = "erased_rows_skipped"
    elif table.url_columns:
        columns = [sql.Identifier(c) for c in table.url_columns]
        statement = sql.SQL("UPDATE {temp} SET {sets} WHERE {user} = ANY(%s) AND ({any_url})").format(
            temp=temp, user=user,
            sets=sql.SQL(", ").join(sql.SQL("{} = NULL").format(c) for c in columns),
            any_url=sql.SQL(" OR ").join(sql.SQL("{} IS NOT NULL").format(c) for c in columns),
        )
        counted = "erased_urls_nulled"
    else:
        return counts
    with conn.cursor() as cur:
        cur.execute(statement, (erased,))
        counts[counted] = cur.rowcount
    return counts


def _check_temp_name(temp_name: str) -> None:
    if not _TEMP_NAME.match(temp_name):
        raise ValueError(f"{temp_name!r} is not a temp table made by load_export_into_temp")


def insert_missing_rows(conn: psycopg.Connection, table: Table, temp_name: str) -> int:
    """Insert the rows of `temp_name` whose primary key is missing from `table`; return how many.

    ``INSERT ... ON CONFLICT (<pk>) DO NOTHING``: existing rows are never overwritten. Generated
    columns are left to the table; identity columns take the exported values (OVERRIDING SYSTEM
    VALUE). If rows were inserted and the primary key has a sequence (serial/identity), the sequence is
    advanced to the largest key when it is behind, never moved back. Runs in the caller's transaction.
    """
    _require_transaction(conn, "insert_missing_rows")
    _check_temp_name(temp_name)
    columns = sql.SQL(", ").join(map(sql.Identifier, _table_columns(conn, table.name, insertable=True)))
    statement = sql.SQL(
        "INSERT INTO {table} ({columns}) OVERRIDING SYSTEM VALUE SELECT {columns} FROM {temp}"
        " ON CONFLICT ({pk}) DO NOTHING"
    ).format(
        table=sql.Identifier(table.name),
        columns=columns,
        temp=sql.Identifier(temp_name),
        pk=sql.Identifier(table.primary_key),
    )
    with conn.cursor() as cur:
        cur.execute(statement)
        inserted = cur.rowcount
    if inserted > 0:
        advance_sequence(conn, table)
    return inserted


def advance_sequence(conn: psycopg.Connection, table: Table) -> int | None:
    """Move the primary key's sequence (if any) forward so nextval() exceeds max(pk); never backwards.

    Returns the value set, or None when there is no sequence or it was already ahead.
    """
    qualified = sql.Identifier(table.name).as_string(conn)
    row = conn.execute("SELECT pg_get_serial_sequence(%s, %s)", (qualified, table.primary_key)).fetchone()
    if row is None or row[0] is None:
        return None
    top = conn.execute(
        sql.SQL("SELECT max({pk}) FROM {table}").format(
            pk=sql.Identifier(table.primary_key), table=sql.Identifier(table.name)
        )
    ).fetchone()[0]
    if top is None:
        return None
    # the next value nextval() would hand out: last_value + increment, or the start if never used
    advanced = conn.execute(
        "SELECT setval(s.seqrelid, %(top)s) FROM pg_sequence s WHERE s.seqrelid = %(seq)s::regclass"
        " AND %(top)s >= coalesce(pg_sequence_last_value(s.seqrelid) + s.seqincrement, s.seqstart)",
        {"top": top, "seq": row[0]},
    ).fetchone()
    return None if advanced is None else advanced[0]
