"""Restore a snapshot, or the keys under a prefix of it, into a bucket/prefix — server-side,
in parallel, each copy verified against the manifest (S3-computed SHA-256, or the multipart ETag),
then the target listed to confirm every key is there with its size.

    restore_snapshot(store, target, store_bucket=..., source_bucket=..., snapshot_id=...,
                     target_bucket=..., target_prefix="", key_prefix="", redactor=None)

With a `Redactor` (the GDPR erasure ledger), entries of keys an erasure removed are neither copied nor
expected in the target: they are counted as `erased_skipped`, never as missing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from dataprotection import manifest as mf
from dataprotection.copier import CopySpec, CopyTuning, OrderedPool, copy_object
from dataprotection.gdpr.ledger import Redactor
from dataprotection.snapshot import iter_manifest, read_summary

log = logging.getLogger(__name__)
SAMPLE = 20


class RestoreError(RuntimeError):
    """A restore did not reproduce the snapshot; the message lists what differs."""


@dataclass
class RestoreResult:
    snapshot_id: str
    source_bucket: str
    target_bucket: str
    target_prefix: str
    key_prefix: str
    objects: int = 0
    bytes: int = 0
    verified: int = 0
    skipped_present: int = 0
    erased_skipped: int = 0  # entries of keys erased under GDPR (the ledger): not restored
    mismatches: list[dict] = field(default_factory=list)
    missing_after: list[str] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.mismatches and not self.missing_after and self.verified == self.objects


def restore_snapshot(
    store,
    target,
    *,
    store_bucket: str,
    source_bucket: str,
    snapshot_id: str,
    target_bucket: str,
    target_prefix: str = "",
    key_prefix: str = "",
    storage_class: str | None = None,
    concurrency: int = 32,
    raise_on_mismatch: bool = True,
    skip_existing: bool = False,
    redactor: Redactor | None = None,
) -> RestoreResult:
    """Copy every entry of the snapshot whose key starts with `key_prefix` to
    `target_bucket/target_prefix + key`. `target` is a client in the target bucket's region.

    With `skip_existing`, a target key that already has the entry's size and ETag is not copied
    again (a re-run after a partial restore copies only what is missing). Entries `redactor` says
    were erased are skipped (and not verified)."""
    started = time.monotonic()
    summary = read_summary(store, store_bucket, source_bucket, snapshot_id) or {}
    tuning = CopyTuning(
        multipart_threshold=summary.get("multipart_threshold", CopyTuning.multipart_threshold),
        multipart_chunk=summary.get("multipart_chunk", CopyTuning.multipart_chunk),
    )
    result = RestoreResult(snapshot_id, source_bucket, target_bucket, target_prefix, key_prefix)
    entries = _wanted(iter_manifest(store, store_bucket, source_bucket, snapshot_id), source_bucket, key_prefix,
                      redactor, result)
    if skip_existing:
        entries = _not_yet_restored(entries, target, target_bucket, target_prefix, key_prefix, result)
    log.info("restoring snapshot %s of %s (keys under %r) into s3://%s/%s", snapshot_id, source_bucket,
             key_prefix, target_bucket, target_prefix)
    for entry, checksum in OrderedPool(concurrency).run(_work(entries, store_bucket, target_bucket, target_prefix,
                                                              storage_class, target, tuning)):
        result.objects += 1
        result.bytes += entry.size
        # checksum None: already in the target with the same size and ETag (skip_existing)
        if checksum is None or _same_checksum(entry.checksum, checksum):
            result.verified += 1
        else:
            result.mismatches.append({"key": entry.key, "expected": entry.checksum, "actual": checksum})
        if result.objects % 5000 == 0:
            log.info("restored %d objects (%d bytes)", result.objects, result.bytes)
    again = _wanted(iter_manifest(store, store_bucket, source_bucket, snapshot_id), source_bucket, key_prefix,
                    redactor)
    result.missing_after = _missing(target, target_bucket, target_prefix, key_prefix, again)
    result.duration_s = round(time.monotonic() - started, 3)
    log.info("restore done: %d objects, %d bytes, %d verified, %d mismatches, %d missing, %d erased under GDPR "
             "(ledger) skipped, %.1f s", result.objects, result.bytes, result.verified, len(result.mismatches),
             len(result.missing_after), result.erased_skipped, result.duration_s)
    if raise_on_mismatch and not result.ok:
        raise RestoreError(
            f"restore of snapshot {snapshot_id} into s3://{target_bucket}/{target_prefix} is not exact: "
            f"{len(result.mismatches)} checksum mismatches (e.g. {result.mismatches[:3]}), "
            f"{len(result.missing_after)} keys missing afterwards (e.g. {result.missing_after[:3]})"
        )
    return result


def _wanted(entries: Iterator[mf.Entry], source_bucket: str, key_prefix: str, redactor: Redactor | None,
            result: RestoreResult | None = None) -> Iterator[mf.Entry]:
    """Entries under `key_prefix` that were not erased (counted in `result.erased_skipped` if given)."""
    for entry in entries:
        if not entry.key.startswith(key_prefix):
            continue
        if redactor and redactor.erased_key(source_bucket, entry.key):
            if result is not None:
                result.erased_skipped += 1
            continue
        yield entry


def _work(entries, store_bucket, target_bucket, target_prefix, storage_class, target, tuning):
    for entry in entries:
        if isinstance(entry, _Present):
            yield entry.entry, None
            continue
        spec = CopySpec(store_bucket, entry.location, None, entry.size, target_bucket,
                        target_prefix + entry.key, storage_class)
        yield entry, (lambda spec=spec: copy_object(target, spec, tuning))


@dataclass(frozen=True, slots=True)
class _Present:
    entry: mf.Entry


def _not_yet_restored(entries, target, bucket, target_prefix, key_prefix, result: RestoreResult):
    """Merge the manifest with the target listing; wrap entries already present in `_Present`."""
    listing = _listing(target, bucket, target_prefix + key_prefix)
    current = next(listing, None)
    for entry in entries:
        wanted = target_prefix + entry.key
        while current is not None and current["Key"] < wanted:
            current = next(listing, None)
        if (current is not None and current["Key"] == wanted and current["Size"] == entry.size
                and current["ETag"].strip('"') == entry.etag):
            result.skipped_present += 1
            yield _Present(entry)
        else:
            yield entry


def _listing(client, bucket: str, prefix: str):
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", [])


def _same_checksum(expected: str | None, actual: str) -> bool:
    if expected is None:
        return False
    if expected.split(":", 1)[0] != actual.split(":", 1)[0]:
        # a stored copy checksummed by ETag only: compare what both sides have
        return expected.rsplit(":", 1)[-1] == actual.rsplit(":", 1)[-1]
    return expected == actual


def _missing(target, bucket: str, target_prefix: str, key_prefix: str, entries: Iterator[mf.Entry]) -> list[str]:
    """Manifest keys the target does not list with the manifest's size: a streaming merge of two
    key-ordered sequences (target keys are `target_prefix + key`, which keeps the order)."""
    missing: list[str] = []
    listing = _listing(target, bucket, target_prefix + key_prefix)
    current = next(listing, None)
    for entry in entries:
        wanted = target_prefix + entry.key
        while current is not None and current["Key"] < wanted:
            current = next(listing, None)
        if current is None or current["Key"] != wanted or current["Size"] != entry.size:
            missing.append(entry.key)
    return missing
