"""Snapshot retention: expire every snapshot older than the cutoff, then sweep stored objects
that no kept snapshot references (mark and sweep over manifests).

Safety rules: the newest complete snapshot is always kept, whatever its age; a stored object is
only deleted if no kept manifest names it AND it is older than every unfinished snapshot's start
(an in-progress run may have copied it without having written its manifest yet). What will be
deleted is logged (counts and a sample) before anything is deleted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from dataprotection import manifest as mf
from dataprotection.snapshot import iter_manifest, read_summary, snapshot_ids
from dataprotection.versions import delete_versions, key_versions, prefix_versions

log = logging.getLogger(__name__)


@dataclass
class RetentionResult:
    source_bucket: str
    cutoff: str
    kept: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    swept_objects: int = 0
    swept_bytes: int = 0
    referenced_objects: int = 0
    dry_run: bool = False


def expire_snapshots(store, store_bucket: str, source_bucket: str, *, cutoff: str, dry_run: bool = False
                     ) -> RetentionResult:
    """Expire snapshots whose id sorts before `cutoff` (e.g. "2026-11-03" keeps 2026-11-03 and later)."""
    result = RetentionResult(source_bucket, cutoff, dry_run=dry_run)
    ids = snapshot_ids(store, store_bucket, source_bucket)
    complete = [sid for sid in ids if read_summary(store, store_bucket, source_bucket, sid) is not None]
    newest = complete[-1] if complete else None
    result.expired = [sid for sid in ids if sid < cutoff and sid != newest]
    result.kept = [sid for sid in ids if sid not in result.expired]
    log.info("retention of %s: cutoff %s; expiring %d snapshots %s; keeping %d (%s .. %s)", source_bucket, cutoff,
             len(result.expired), result.expired[:10], len(result.kept), result.kept[:1], result.kept[-1:])
    if not dry_run:
        for sid in result.expired:
            _delete_snapshot(store, store_bucket, source_bucket, sid)
    _sweep(store, store_bucket, source_bucket, result, complete, dry_run)
    return result


def _delete_snapshot(store, bucket: str, source_bucket: str, snapshot_id: str) -> None:
    """Summary first, so a half-deleted snapshot never looks complete; then the rest, every version of it
    (the store bucket is versioned: a plain delete would keep manifests, which name keys, as old versions)."""
    summary = mf.summary_key(source_bucket, snapshot_id)
    delete_versions(store, bucket, key_versions(store, bucket, summary))
    delete_versions(store, bucket, prefix_versions(store, bucket, mf.snapshot_prefix(source_bucket, snapshot_id)))


def _sweep(store, bucket: str, source_bucket: str, result: RetentionResult, complete: list[str],
           dry_run: bool) -> None:
    kept_complete = [sid for sid in complete if sid in result.kept]
    referenced: set[str] = set()
    for sid in kept_complete:
        referenced.update(e.location for e in iter_manifest(store, bucket, source_bucket, sid))
    result.referenced_objects = len(referenced)
    guard = _unfinished_since(store, bucket, source_bucket, [s for s in result.kept if s not in complete])
    # every version and delete marker of an unreferenced stored object goes: in a versioned store bucket
    # a plain delete would keep the bytes as an old version, out of reach of retention and of erasure
    doomed: list[dict] = []
    keys: set[str] = set()
    for v in prefix_versions(store, bucket, mf.data_prefix(source_bucket)):
        if v["Key"] in referenced or (guard is not None and v["LastModified"] >= guard):
            continue
        doomed.append(v)
        keys.add(v["Key"])
        result.swept_bytes += v.get("Size", 0)
    result.swept_objects = len(keys)
    log.info("sweep of %s: %d stored objects referenced by %d kept snapshots; %s %d unreferenced objects "
             "(%d versions, %d bytes), e.g. %s", source_bucket, len(referenced), len(kept_complete),
             "would delete" if dry_run else "deleting", len(keys), len(doomed), result.swept_bytes,
             sorted(keys)[:5])
    if not dry_run:
        delete_versions(store, bucket, doomed)


def _unfinished_since(store, bucket: str, source_bucket: str, unfinished: list[str]) -> datetime | None:
    """Earliest start of an unfinished snapshot (its stored copies may not be in any manifest yet)."""
    starts = []
    for sid in unfinished:
        for page in store.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=mf.snapshot_prefix(source_bucket, sid) + "_started/"):
            starts += [o["LastModified"] for o in page.get("Contents", [])]
    return min(starts) if starts else None
