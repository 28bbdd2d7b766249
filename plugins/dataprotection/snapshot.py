"""Incremental-forever snapshots of one S3 bucket (DESIGN §3).

API (framework-free; pass boto3 clients):
    take_snapshot(source, store, spec)              one-shard snapshot, returns the summary
    take_shard(source, store, spec, shard, range)   one shard of a sharded snapshot
    finalize_snapshot(store, spec, shard_count)     checks every shard finished, writes summary LAST
    plan_shards(source, store, spec, n)             key ranges for n shards
    iter_manifest(store, bucket, source, id)        the entries of a complete snapshot, in key order
    complete_snapshots / latest_snapshot            find snapshots (only complete ones count)

Planning is a streaming merge of the sorted listing against the previous complete snapshot's
sorted manifest: an object whose identity is already stored is never copied again, memory stays flat.
A crashed or killed run leaves no summary, so it never looks complete; re-running the same snapshot
id resumes: objects already copied by the crashed run are found with a HEAD and not copied again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from dataprotection import manifest as mf
from dataprotection.copier import CopySpec, CopyTuning, OrderedPool, copy_object
from dataprotection.listing import (
    ALL_KEYS,
    KeyRange,
    Prefetched,
    SourceObject,
    is_excluded,
    is_versioned,
    iso,
    list_live_objects,
)

log = logging.getLogger(__name__)
PROGRESS_EVERY = 5000
FORMAT = 1


class SnapshotError(RuntimeError):
    """A snapshot could not be taken or read; the message says what to do."""


@dataclass(frozen=True)
class SnapshotSpec:
    source_bucket: str
    store_bucket: str
    snapshot_id: str  # sortable: "2026-12-03" (daily), "2026-W49" (weekly)
    kind: str = "daily"
    storage_class: str | None = "STANDARD_IA"  # of the stored object copies
    excludes: tuple[str, ...] = ()
    concurrency: int = 32
    tuning: CopyTuning = field(default_factory=CopyTuning)
    logical_time: str | None = None  # the run's data-interval end, ISO-8601


@dataclass
class ShardResult:
    shard: int
    after: str | None
    upto: str | None
    objects: int = 0
    bytes: int = 0
    copied: int = 0
    copied_bytes: int = 0
    skipped: int = 0
    found_stored: int = 0  # resumed run: already copied by the crashed attempt
    excluded: int = 0
    previous_snapshot: str | None = None
    manifest_key: str = ""
    manifest_sha256: str = ""
    duration_s: float = 0.0


# --------------------------------------------------------------------------- finding snapshots
def snapshot_ids(store, store_bucket: str, source_bucket: str) -> list[str]:
    """Every snapshot id (complete or not) of `source_bucket`, sorted."""
    ids = []
    paginator = store.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=store_bucket, Prefix=mf.snapshots_prefix(source_bucket), Delimiter="/"):
        ids += [p["Prefix"].rstrip("/").rsplit("/", 1)[-1] for p in page.get("CommonPrefixes", [])]
    return sorted(ids)


def read_summary(store, store_bucket: str, source_bucket: str, snapshot_id: str) -> dict | None:
    return mf.read_json(store, store_bucket, mf.summary_key(source_bucket, snapshot_id))


def complete_snapshots(store, store_bucket: str, source_bucket: str) -> list[str]:
    return [
        sid
        for sid in snapshot_ids(store, store_bucket, source_bucket)
        if _exists(store, store_bucket, mf.summary_key(source_bucket, sid))
    ]


def latest_snapshot(
    store, store_bucket: str, source_bucket: str, *, before: str | None = None, at_or_before: str | None = None
) -> str | None:
    """The newest complete snapshot id, optionally strictly before / at or before a given id."""
    for sid in reversed(snapshot_ids(store, store_bucket, source_bucket)):
        if before is not None and sid >= before:
            continue
        if at_or_before is not None and sid > at_or_before:
            continue
        if _exists(store, store_bucket, mf.summary_key(source_bucket, sid)):
            return sid
    return None


def latest_snapshot_as_of(store, store_bucket: str, source_bucket: str, day: str) -> str | None:
    """The newest complete snapshot whose data is as of `day` (YYYY-MM-DD) or earlier, judged by the
    summary's logical time (a weekly id such as 2026-W49 covers a whole week, its data the run's day)."""
    for sid in reversed(snapshot_ids(store, store_bucket, source_bucket)):
        summary = read_summary(store, store_bucket, source_bucket, sid)
        if summary is None:
            continue
        taken = (summary.get("logical_time") or summary.get("completed_at") or "")[:10]
        if taken and taken <= day:
            return sid
    return None


def iter_manifest(store, store_bucket: str, source_bucket: str, snapshot_id: str) -> Iterator[mf.Entry]:
    """Entries of a complete snapshot in key order (streams part after part)."""
    summary = read_summary(store, store_bucket, source_bucket, snapshot_id)
    if summary is None:
        raise SnapshotError(
            f"snapshot {snapshot_id!r} of {source_bucket!r} in s3://{store_bucket} is not complete (no summary.json)"
        )
    for part in summary["parts"]:
        yield from mf.iter_manifest_part(store, store_bucket, part["manifest_key"])


def _exists(client, bucket: str, key: str) -> bool:
    try:
        client.head_object(Bucket=bucket, Key=key)
        return True
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
            return False
        raise


# --------------------------------------------------------------------------- sharding
def plan_shards(source, store, spec: SnapshotSpec, shards: int) -> list[KeyRange]:
    """Split the key space into `shards` contiguous ranges of about equal object counts, using the
    previous complete manifest (its key quantiles). Without one, one range is returned."""
    if shards <= 1:
        return [ALL_KEYS]
    previous = latest_snapshot(store, spec.store_bucket, spec.source_bucket, before=spec.snapshot_id)
    if previous is None:
        return [ALL_KEYS]
    summary = read_summary(store, spec.store_bucket, spec.source_bucket, previous) or {}
    total = int(summary.get("objects", 0))
    if total < shards * 2:
        return [ALL_KEYS]
    cut_at = {round(total * i / shards) for i in range(1, shards)}
    cuts = [e.key for n, e in enumerate(iter_manifest(store, spec.store_bucket, spec.source_bucket, previous), 1)
            if n in cut_at]
    bounds = [None, *cuts, None]
    return [KeyRange(after=bounds[i], upto=bounds[i + 1]) for i in range(len(bounds) - 1)]


# --------------------------------------------------------------------------- taking a snapshot
def take_snapshot(source, store, spec: SnapshotSpec) -> dict:
    """Take a complete one-shard snapshot and return its summary (idempotent per snapshot id)."""
    with s3_errors(spec):
        existing = read_summary(store, spec.store_bucket, spec.source_bucket, spec.snapshot_id)
        if existing is not None:
            log.info("snapshot %s of %s is already complete; nothing to do", spec.snapshot_id, spec.source_bucket)
            return existing
        part = take_shard(source, store, spec, shard=0, key_range=ALL_KEYS)
        return finalize_snapshot(store, spec, shard_count=1, finished=[asdict(part)])


def take_shard(source, store, spec: SnapshotSpec, *, shard: int = 0, key_range: KeyRange = ALL_KEYS) -> ShardResult:
    """Snapshot the keys of one range: plan, copy what is new, write this shard's manifest part."""
    with s3_errors(spec):
        return _take_shard(source, store, spec, shard, key_range)


@contextmanager
def s3_errors(spec: SnapshotSpec) -> Generator[None, None, None]:
    """Turn connection failures and missing buckets into SnapshotError with what to do next."""
    try:
        yield
    except (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError) as exc:
        raise SnapshotError(
            f"S3 is unreachable ({exc}); snapshot {spec.snapshot_id} of {spec.source_bucket} was NOT marked "
            "complete. Re-run the task when S3 answers again: it resumes without copying anything twice."
        ) from exc
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "NoSuchBucket":
            raise SnapshotError(
                f"bucket does not exist ({exc.operation_name}): check the plan's source bucket "
                f"{spec.source_bucket!r} and store bucket {spec.store_bucket!r}"
            ) from exc
        raise


def _take_shard(source, store, spec: SnapshotSpec, shard: int, key_range: KeyRange) -> ShardResult:
    done_key = mf.part_done_key(spec.source_bucket, spec.snapshot_id, shard)
    started_key = mf.started_key(spec.source_bucket, spec.snapshot_id, shard)
    # four independent lookups, made at once (each is a round trip; an unchanged run is mostly these)
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="snapshot-probe") as probes:
        done_f = probes.submit(mf.read_json, store, spec.store_bucket, done_key)
        started_f = probes.submit(mf.read_json, store, spec.store_bucket, started_key)
        versioned_f = probes.submit(is_versioned, source, spec.source_bucket)
        previous_f = probes.submit(latest_snapshot, store, spec.store_bucket, spec.source_bucket,
                                   before=spec.snapshot_id)
    done = done_f.result()
    if done is not None:
        log.info("shard %d of snapshot %s already finished; nothing to do", shard, spec.snapshot_id)
        return ShardResult(**done)

    started = time.monotonic()
    resuming = started_f.result() is not None
    versioned = versioned_f.result()
    previous = previous_f.result()
    mf.write_json(store, spec.store_bucket, started_key, {
        "snapshot_id": spec.snapshot_id, "shard": shard, "after": key_range.after, "upto": key_range.upto,
        "previous_snapshot": previous, "started_at": iso(datetime.now(UTC)),
    })
    result = ShardResult(shard=shard, after=key_range.after, upto=key_range.upto, previous_snapshot=previous)
    log.info(
        "snapshot %s of s3://%s shard %d (%s..%s): previous snapshot %s, %s listing%s",
        spec.snapshot_id, spec.source_bucket, shard, key_range.after or "start", key_range.upto or "end",
        previous or "none (full copy)", "versioned" if versioned else "unversioned",
        "; resuming an interrupted run" if resuming else "",
    )

    # the listing runs ahead in a thread: its first page is fetched while the previous manifest is read
    listing = Prefetched(list_live_objects(source, spec.source_bucket, versioned=versioned, key_range=key_range))
    prev_entries = _previous_entries(store, spec, previous, key_range)
    work = _plan(listing, prev_entries, spec, result, store, resuming)

    with listing, mf.ManifestWriter() as writer:
        pool = OrderedPool(workers=spec.concurrency)
        for n, (entry, outcome) in enumerate(pool.run(work), start=1):
            if outcome is not None:
                checksum, copied = outcome
                entry = _with_checksum(entry, checksum)
                if copied:
                    result.copied += 1
                    result.copied_bytes += entry.size
                else:
                    result.found_stored += 1
            else:
                result.skipped += 1
            writer.write(entry)
            if n % PROGRESS_EVERY == 0:
                _progress(result, n, started)
        result.objects, result.bytes = writer.count, writer.bytes
        result.manifest_key = mf.part_key(spec.source_bucket, spec.snapshot_id, shard)
        result.manifest_sha256 = writer.upload(store, spec.store_bucket, result.manifest_key)
    result.duration_s = round(time.monotonic() - started, 3)
    mf.write_json(store, spec.store_bucket, done_key, asdict(result))
    log.info(
        "shard %d done: %d objects (%d bytes); copied %d (%d bytes), unchanged %d, found already stored %d, "
        "excluded %d, in %.1f s", shard, result.objects, result.bytes, result.copied, result.copied_bytes,
        result.skipped, result.found_stored, result.excluded, result.duration_s,
    )
    return result


def _previous_entries(store, spec: SnapshotSpec, previous: str | None, key_range: KeyRange) -> Iterator[mf.Entry]:
    if previous is None:
        return iter(())
    return (e for e in iter_manifest(store, spec.store_bucket, spec.source_bucket, previous)
            if key_range.contains(e.key))


def _plan(listing: Iterator[SourceObject], prev: Iterator[mf.Entry], spec: SnapshotSpec, result: ShardResult,
          store, resuming: bool):
    """Streaming merge: yield (entry, copy function or None when the stored copy can be reused)."""
    current = next(prev, None)
    for obj in listing:
        if is_excluded(obj.key, spec.excludes):
            result.excluded += 1
            continue
        while current is not None and current.key < obj.key:
            current = next(prev, None)
        identity = mf.object_identity(obj.version_id, obj.etag, obj.size)
        if current is not None and current.key == obj.key and current.identity == identity:
            yield mf.Entry(obj.key, obj.size, obj.etag, obj.version_id, iso(obj.last_modified),
                           obj.storage_class, current.checksum, current.location), None
            continue
        location = mf.stored_location(spec.source_bucket, obj.key, identity)
        entry = mf.Entry(obj.key, obj.size, obj.etag, obj.version_id, iso(obj.last_modified),
                         obj.storage_class, None, location)
        copy = CopySpec(spec.source_bucket, obj.key, obj.version_id, obj.size, spec.store_bucket, location,
                        spec.storage_class)
        yield entry, _copy_fn(store, copy, spec.tuning, resuming)


def _copy_fn(store, copy: CopySpec, tuning: CopyTuning, resuming: bool):
    def run() -> tuple[str, bool]:
        if resuming:
            found = _stored_checksum(store, copy)
            if found is not None:
                return found, False
        return copy_object(store, copy, tuning), True

    return run


def _stored_checksum(store, copy: CopySpec) -> str | None:
    """Checksum of an already-stored copy of the right size (left by an interrupted run), else None."""
    try:
        head = store.head_object(Bucket=copy.dst_bucket, Key=copy.dst_key, ChecksumMode="ENABLED")
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    if head["ContentLength"] != copy.size:
        return None
    etag = head["ETag"].strip('"')
    if "-" in etag:
        return "mpu-etag:" + etag
    return "sha256:" + head["ChecksumSHA256"] if head.get("ChecksumSHA256") else "etag:" + etag


def _with_checksum(entry: mf.Entry, checksum: str) -> mf.Entry:
    return mf.Entry(entry.key, entry.size, entry.etag, entry.version_id, entry.last_modified,
                    entry.storage_class, checksum, entry.location)


def _progress(result: ShardResult, n: int, started: float) -> None:
    elapsed = time.monotonic() - started
    log.info("shard %d: %d objects planned, %d copied, %d unchanged (%.0f objects/s)",
             result.shard, n, result.copied, result.skipped, n / elapsed if elapsed else 0.0)


# --------------------------------------------------------------------------- completing a snapshot
def finalize_snapshot(store, spec: SnapshotSpec, shard_count: int, finished: list[dict] | None = None) -> dict:
    """Check that every shard finished and write summary.json LAST (marks the snapshot complete).

    `finished`: the shard results of this very process (take_snapshot), in shard order; then the
    shards' `part-NNNNN.json` records it has just written are not read back."""
    if finished is not None and len(finished) == shard_count:
        return _write_summary(store, spec, finished)
    existing = read_summary(store, spec.store_bucket, spec.source_bucket, spec.snapshot_id)
    if existing is not None:
        return existing
    parts = []
    for shard in range(shard_count):
        done = mf.read_json(store, spec.store_bucket, mf.part_done_key(spec.source_bucket, spec.snapshot_id, shard))
        if done is None:
            raise SnapshotError(
                f"shard {shard} of snapshot {spec.snapshot_id} ({spec.source_bucket}) has not finished; "
                "re-run its task, then this one"
            )
        parts.append(done)
    return _write_summary(store, spec, parts)


def _write_summary(store, spec: SnapshotSpec, parts: list[dict]) -> dict:
    totals = {k: sum(p[k] for p in parts)
              for k in ("objects", "bytes", "copied", "copied_bytes", "skipped", "found_stored", "excluded")}
    summary = {
        "format": FORMAT,
        "kind": spec.kind,
        "snapshot_id": spec.snapshot_id,
        "source_bucket": spec.source_bucket,
        "store_bucket": spec.store_bucket,
        "storage_class": spec.storage_class,
        "logical_time": spec.logical_time,
        "previous_snapshot": parts[0]["previous_snapshot"],
        "multipart_threshold": spec.tuning.multipart_threshold,
        "multipart_chunk": spec.tuning.multipart_chunk,
        "duration_s": round(max(p["duration_s"] for p in parts), 3),
        "completed_at": iso(datetime.now(UTC)),
        **totals,
        "parts": [
            {k: p[k] for k in ("shard", "after", "upto", "objects", "bytes", "manifest_key", "manifest_sha256")}
            for p in parts
        ],
    }
    mf.write_json(store, spec.store_bucket, mf.summary_key(spec.source_bucket, spec.snapshot_id), summary)
    log.info("snapshot %s of %s complete: %d objects, %d bytes, %d copied, %d unchanged",
             spec.snapshot_id, spec.source_bucket, summary["objects"], summary["bytes"], summary["copied"],
             summary["skipped"])
    return summary
