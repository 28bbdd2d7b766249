"""Point-in-time recovery of S3 keys: which version of each key was live at a time T, and the
server-side copies (and delete markers) that make a key or a prefix look as it did at T.

Framework-free (boto3 clients in, plain data out):

    parse_as_of(text)                                    ISO-8601 with a zone -> aware UTC datetime
    resolve_pages(pages, as_of)                          KeyState per key from ListObjectVersions pages
    key_state(client, bucket, key, as_of)                one exact key (never keys that merely start with it)
    resolve_file(...) / restore_file(...)                s3_file_recovery
    check_bulk_request(...) / bulk_recover(...)          s3_bulk_recovery
    snapshot_as_of(store, store_bucket, bucket, as_of)   latest complete daily snapshot taken at or before T

State at T. ListObjectVersions returns, per page, the versions and the delete markers in two separate
arrays, each sorted by key and newest first; the pages themselves follow S3's one combined order. A
key's state at T is its newest entry whose LastModified <= T: a version (restore it) or a delete
marker (the key did not exist at T: never resurrect it); no entry at all means the key was created
after T. S3 (and moto) report LastModified in whole seconds, so an event in the same second as T counts
as before T. Two entries of one key in the same second, one in each array, cannot be ordered from the
listing alone; the entry S3 marks IsLatest wins, otherwise the version is taken (restoring is undoable,
it only adds a version) and the decision is flagged `ambiguous`.

Memory is flat in the number of versions: pages are consumed one at a time, each key is folded into a
constant-size state as its entries stream past, copies run on a bounded window (copier.OrderedPool),
and only counts plus a bounded sample of decisions are kept.

GDPR erasures. Given a `Redactor` (the erasure ledger, dataprotection.gdpr.ledger), a key an erasure
removed is never brought back: `resolve_file` resolves it to status "erased" (nothing is copied) and
`bulk_recover` decides it as "erased" whatever its state at T — not copied, and with `delete_newer` not
deleted either — counted as `erased_skipped`. Without a redactor (None) nothing is filtered.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from dataprotection import manifest as mf
from dataprotection.config import BUCKET_RE, Plan
from dataprotection.copier import CopySpec, CopyTuning, OrderedPool, copy_object
from dataprotection.gdpr.ledger import Redactor
from dataprotection.listing import is_excluded, is_versioned, iso, list_live_objects
from dataprotection.snapshot import (
    iter_manifest,
    latest_snapshot,
    latest_snapshot_as_of,
    read_summary,
    snapshot_ids,
)

log = logging.getLogger(__name__)

SAMPLE_SIZE = 50
PROGRESS_EVERY = 5000
# Restoring a version in these classes needs a Glacier restore first (copy -> ObjectNotInActiveTierError).
COLD_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})
# ISO-8601 with seconds and an explicit zone (the same shape the DAG params' `pattern` enforces).
AS_OF_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$"
_AS_OF_RE = re.compile(AS_OF_PATTERN)
# A recovery/target prefix: safe path segments ending in '/', no '..' and no empty segment.
PREFIX_PATTERN = r"^(?!.*\.\.)[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*/$"
# An S3 key as a param: 1..1024 characters, no control characters.
KEY_PATTERN = r"^[^\u0000-\u001f\u007f]{1,1024}$"
# A bulk prefix: a folder (ends in '/'), no control characters.
FOLDER_PATTERN = r"^[^\u0000-\u001f\u007f]{0,1023}/$"

# decisions per key; the report's sample shows what changes things first
_ACTIONS: tuple[str, ...] = ("failed", "restore", "delete", "erased", "keep_newer", "absent", "unchanged")
ERASED_REASON = "erased under GDPR (ledger); not restored"


class PointInTimeError(ValueError):
    """A recovery request cannot be carried out; the message names the parameter and what to do."""


# --------------------------------------------------------------------------- times
def parse_as_of(value: Any, name: str = "as_of") -> datetime:
    """An ISO-8601 time with seconds and a zone (e.g. 2026-12-01T10:00:00Z) as an aware UTC datetime."""
    text = str(value or "").strip()
    if not _AS_OF_RE.match(text):
        raise PointInTimeError(
            f"{name}: {value!r} is not an ISO-8601 time with seconds and a zone, e.g. 2026-12-01T10:00:00Z"
        )
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise PointInTimeError(f"{name}: {value!r} is not a valid time ({exc})") from None
    return parsed.astimezone(UTC)


def check_not_after(as_of: datetime, run_after: datetime | None, name: str = "as_of") -> None:
    """Refuse a time after the run was triggered: the state at a future time is not known yet."""
    if run_after is not None and as_of > _utc(run_after):
        raise PointInTimeError(f"{name}: {iso(as_of)} is after this run was triggered ({iso(_utc(run_after))}); "
                               "choose a time in the past")


def file_destination(plan: Plan, *, bucket: str, key: str, destination: str, recovery_prefix: str) -> str:
    """The key a single-file recovery writes: the key itself (in place) or `recovery_prefix + key`."""
    try:
        plan.bucket(bucket)
    except KeyError as exc:
        raise PointInTimeError(f"bucket: {exc.args[0]}") from None
    if not key:
        raise PointInTimeError("key: must not be empty")
    if destination == "in_place":
        return key
    if destination != "recovery_prefix":
        raise PointInTimeError(f"destination: {destination!r} is not one of in_place, recovery_prefix")
    if not re.match(PREFIX_PATTERN, recovery_prefix or ""):
        raise PointInTimeError(f"recovery_prefix: {recovery_prefix!r} must be a folder such as recovered/ "
                               "(letters, digits, . _ - and /, ending in /)")
    return recovery_prefix + key


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _iso(ts: datetime | None) -> str | None:
    return iso(ts) if ts is not None else None


# --------------------------------------------------------------------------- resolution
@dataclass(frozen=True, slots=True)
class Version:
    """One entry of a ListObjectVersions listing: a version, or a delete marker."""

    key: str
    version_id: str | None
    last_modified: datetime
    is_latest: bool
    delete_marker: bool
    size: int = 0
    etag: str = ""
    storage_class: str = "STANDARD"

    @classmethod
    def from_listing(cls, item: dict, delete_marker: bool) -> Version:
        return cls(
            key=item["Key"],
            version_id=item.get("VersionId"),
            last_modified=_utc(item["LastModified"]),
            is_latest=bool(item.get("IsLatest")),
            delete_marker=delete_marker,
            size=0 if delete_marker else item.get("Size", 0),
            etag="" if delete_marker else item.get("ETag", "").strip('"'),
            storage_class="" if delete_marker else item.get("StorageClass", "STANDARD"),
        )

    def brief(self) -> dict:
        out = {"version_id": self.version_id, "last_modified": iso(self.last_modified),
               "delete_marker": self.delete_marker}
        if not self.delete_marker:
            out.update(size=self.size, etag=self.etag, storage_class=self.storage_class)
        return out


@dataclass(slots=True)
class KeyState:
    """Everything recovery needs about one key, folded from its listing entries in constant memory."""

    key: str
    current: Version | None = None  # the IsLatest entry: what the key is now
    at: Version | None = None  # newest entry at or before T (a delete marker: deleted at T); None: created after T
    newest_data: Version | None = None  # newest version that is not a delete marker ("latest" mode)
    wanted: Version | None = None  # the entry with the requested version id ("version" mode)
    oldest: Version | None = None  # the first event of the key still listed
    versions: int = 0
    delete_markers: int = 0
    ambiguous: bool = False  # `at` tied with an entry of the other kind in the same second
    _at_page: int = -1

    @property
    def existed_at(self) -> bool:
        return self.at is not None and not self.at.delete_marker

    @property
    def live(self) -> bool:
        return self.current is not None and not self.current.delete_marker


@dataclass
class ListingStats:
    pages: int = 0
    versions: int = 0
    delete_markers: int = 0
    keys: int = 0


def _page_entries(page: dict) -> list[Version]:
    """One page's versions and delete markers in S3's combined order: key ascending, newest first.

    Within a key, the two arrays are interleaved by LastModified; on a same-second tie the IsLatest
    entry goes first, then versions before delete markers (see the module docstring)."""
    versions = [Version.from_listing(v, False) for v in page.get("Versions", ())]
    markers = [Version.from_listing(d, True) for d in page.get("DeleteMarkers", ())]
    if not markers:
        return versions
    if not versions:
        return markers
    ranked = [(e.key, -e.last_modified.timestamp(), not e.is_latest, 0, i, e) for i, e in enumerate(versions)]
    ranked += [(e.key, -e.last_modified.timestamp(), not e.is_latest, 1, i, e) for i, e in enumerate(markers)]
    ranked.sort(key=lambda r: r[:5])
    return [r[5] for r in ranked]


def resolve_pages(
    pages: Iterable[dict],
    as_of: datetime | None,
    *,
    exact_key: str | None = None,
    version_id: str | None = None,
    stats: ListingStats | None = None,
) -> Iterator[KeyState]:
    """Fold a stream of ListObjectVersions pages into one KeyState per key, in key order.

    Only the current page and the current key's state are held. With `exact_key`, other keys (e.g.
    `a.txt.bak` for `a.txt`) are ignored and the stream stops as soon as the listing is past the key."""
    stats = stats if stats is not None else ListingStats()
    cutoff = _utc(as_of) if as_of is not None else None
    state: KeyState | None = None
    for page_no, entry in _entries(pages, stats):
        if exact_key is not None and entry.key != exact_key:
            if entry.key > exact_key:
                if state is not None:
                    yield state
                return
            continue
        if state is None or entry.key != state.key:
            if state is not None:
                yield state
            stats.keys += 1
            state = KeyState(entry.key)
        _fold(state, entry, page_no, cutoff, version_id)
        if entry.delete_marker:
            stats.delete_markers += 1
        else:
            stats.versions += 1
    if state is not None:
        yield state


def _entries(pages: Iterable[dict], stats: ListingStats) -> Iterator[tuple[int, Version]]:
    """(page number, entry) in listing order; a page is dropped before the next one is fetched."""
    for page_no, page in enumerate(pages):
        stats.pages += 1
        entries = _page_entries(page)
        del page
        for entry in entries:
            yield page_no, entry
        del entries


def _fold(state: KeyState, entry: Version, page_no: int, cutoff: datetime | None, version_id: str | None) -> None:
    if entry.delete_marker:
        state.delete_markers += 1
    else:
        state.versions += 1
        if state.newest_data is None:
            state.newest_data = entry
    if entry.is_latest:
        state.current = entry
    if version_id is not None and entry.version_id == version_id:
        state.wanted = entry
    state.oldest = entry
    if cutoff is None:
        return
    if state.at is None:
        if entry.last_modified <= cutoff:
            state.at, state._at_page = entry, page_no
    elif (page_no == state._at_page and not state.at.is_latest and entry.last_modified == state.at.last_modified
          and entry.delete_marker != state.at.delete_marker):
        # same second, other array, same page: the listing cannot tell which came first
        state.ambiguous = True


def version_pages(client, bucket: str, prefix: str, page_size: int = 1000) -> Iterator[dict]:
    """ListObjectVersions pages under `prefix`, fetched lazily one at a time."""
    paginator = client.get_paginator("list_object_versions")
    yield from paginator.paginate(Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": page_size})


def key_state(client, bucket: str, key: str, as_of: datetime | None = None, *, version_id: str | None = None,
              page_size: int = 1000) -> KeyState | None:
    """The state of exactly `key` (None: the key has no version and no delete marker at all).

    Listing with Prefix=key also returns `key.bak`, `key/x`...: they are skipped, and since `key` sorts
    before every longer key with that prefix, the listing stops right after `key`'s own entries."""
    if not key:
        raise PointInTimeError("key: must not be empty")
    pages = version_pages(client, bucket, key, page_size)
    return next(resolve_pages(pages, as_of, exact_key=key, version_id=version_id), None)


# --------------------------------------------------------------------------- snapshots
def snapshot_time(summary: dict) -> datetime | None:
    text = summary.get("logical_time") or summary.get("completed_at")
    return parse_as_of(text, "snapshot logical_time") if text else None


def snapshot_as_of(store, store_bucket: str, source_bucket: str, as_of: datetime) -> tuple[str, dict] | None:
    """The latest complete daily snapshot whose logical time is at or before `as_of` (its id and summary).

    Snapshots are found by day (`snapshot.latest_snapshot_as_of`); the time of day is then checked, and a
    snapshot of T's own day taken after T gives way to the newest older complete one."""
    first = latest_snapshot_as_of(store, store_bucket, source_bucket, as_of.date().isoformat())
    if first is None:
        return None
    older = (sid for sid in reversed(snapshot_ids(store, store_bucket, source_bucket)) if sid < first)
    for sid in (first, *older):
        summary = read_summary(store, store_bucket, source_bucket, sid)
        taken = snapshot_time(summary) if summary is not None else None
        if taken is not None and taken <= as_of:
            return sid, summary
    return None


def _manifest_under(store, store_bucket: str, source_bucket: str, snapshot_id: str, prefix: str
                    ) -> Iterator[mf.Entry]:
    """Manifest entries whose key starts with `prefix` (the manifest is sorted: stop past the prefix)."""
    for entry in iter_manifest(store, store_bucket, source_bucket, snapshot_id):
        if entry.key.startswith(prefix):
            yield entry
        elif entry.key > prefix:
            return


# --------------------------------------------------------------------------- what to copy
@dataclass(frozen=True, slots=True)
class Origin:
    """Where the bytes of the state at T are: a version of the source key, or a snapshot's stored copy."""

    bucket: str
    key: str
    version_id: str | None
    size: int
    etag: str
    last_modified: str
    storage_class: str
    source_version_id: str | None  # the version id of the source object (also for snapshot copies)

    @classmethod
    def of_version(cls, bucket: str, v: Version) -> Origin:
        return cls(bucket, v.key, v.version_id, v.size, v.etag, iso(v.last_modified), v.storage_class,
                   v.version_id)

    @classmethod
    def of_entry(cls, store_bucket: str, e: mf.Entry) -> Origin:
        return cls(store_bucket, e.location, None, e.size, e.etag, e.last_modified, e.storage_class, e.version_id)


@dataclass(frozen=True, slots=True)
class Present:
    """What a destination key holds now."""

    version_id: str | None
    size: int
    etag: str

    def same_content(self, origin: Origin) -> bool:
        if origin.source_version_id and self.version_id == origin.source_version_id:
            return True
        return self.size == origin.size and self.etag == origin.etag and bool(self.etag)


@dataclass(slots=True)
class Decision:
    key: str
    action: str
    reason: str
    dest_key: str
    origin: Origin | None = None
    ambiguous: bool = False
    result: str | None = None  # checksum of the copy, or version id of the delete marker
    error: str | None = None

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"key": self.key, "action": "failed" if self.error else self.action,
                               "reason": self.reason}
        if self.dest_key != self.key:
            out["dest_key"] = self.dest_key
        if self.origin is not None:
            o = self.origin
            out["version_id"] = o.source_version_id
            out["version_last_modified"] = o.last_modified
            out["size"] = o.size
            if o.bucket != "" and o.version_id is None:
                out["from"] = f"s3://{o.bucket}/{o.key}"
        if self.ambiguous:
            out["ambiguous"] = True
        if self.result is not None:
            out["checksum" if self.action == "restore" else "delete_marker_version_id"] = self.result
        if self.error:
            out["error"] = self.error
        return out


def decide(key: str, dest_key: str, origin: Origin | None, deleted_at_t: bool, now: Present | None, *,
           in_place: bool, delete_newer: bool, ambiguous: bool = False) -> Decision:
    """What to do with one key so that the destination holds the state at T."""
    if origin is None:
        if now is None:
            why = "deleted at as_of and absent now" if deleted_at_t else "did not exist at as_of; absent now"
            return Decision(key, "absent", why, dest_key)
        why = "re-created after a deletion before as_of" if deleted_at_t else "created after as_of"
        if in_place and delete_newer:
            return Decision(key, "delete", why + ": delete marker added (undo by deleting the marker)", dest_key)
        return Decision(key, "keep_newer", why + ": left as is", dest_key)
    if now is not None and now.same_content(origin):
        why = "already the live content" if in_place else "already present in the destination"
        return Decision(key, "unchanged", why, dest_key, origin, ambiguous)
    if in_place:
        why = "deleted after as_of" if now is None else "changed after as_of"
    else:
        why = "missing in the destination" if now is None else "differs in the destination"
    return Decision(key, "restore", why, dest_key, origin, ambiguous)


# --------------------------------------------------------------------------- single file
def resolve_file(client, store, *, bucket: str, key: str, mode: str,
                 version_id: str | None = None, as_of: datetime | None = None, source: str = "versions",
                 store_bucket: str | None = None, redactor: Redactor | None = None) -> dict:
    """Pick the version of exactly `key` to restore. Returns a JSON-able resolution:
    status "found" (with `origin`), "did_not_exist" (with the reason) or, for a key the erasure ledger
    says was erased, "erased" (nothing is looked up or restored)."""
    _check_file_args(mode, version_id, as_of, source)
    out: dict[str, Any] = {"bucket": bucket, "key": key, "mode": mode, "source": source,
                           "as_of": _iso(as_of), "version_id_requested": version_id or None}
    if redactor is not None and redactor.erased_key(bucket, key):
        return {**out, "status": "erased", "reason": ERASED_REASON}
    state = key_state(client, bucket, key, as_of, version_id=version_id)
    out["current"] = state.current.brief() if state is not None and state.current else None
    if source == "versions":
        if not is_versioned(client, bucket):
            raise PointInTimeError(f"bucket {bucket!r} is not versioned: there are no older versions; "
                                   "use source=snapshot")
        if state is None:
            raise PointInTimeError(
                f"key: s3://{bucket}/{key} has no version at all (exact key match; keys that only start with "
                "it are not considered) — check the key"
            )
        out["versions"], out["delete_markers"] = state.versions, state.delete_markers
        return _resolve_from_versions(out, state, bucket, mode, version_id, as_of)
    return _resolve_from_snapshot(out, store, store_bucket or "", bucket, key, mode, version_id, as_of)


def _check_file_args(mode: str, version_id: str | None, as_of: datetime | None, source: str) -> None:
    if mode not in ("latest", "version", "as_of"):
        raise PointInTimeError(f"mode: {mode!r} is not one of latest, version, as_of")
    if source not in ("versions", "snapshot"):
        raise PointInTimeError(f"source: {source!r} is not one of versions, snapshot")
    if mode == "version" and not version_id:
        raise PointInTimeError("version_id: required with mode=version")
    if mode != "version" and version_id:
        raise PointInTimeError(f"version_id: only used with mode=version (mode is {mode!r}); clear it or set "
                               "mode=version")
    if mode == "as_of" and as_of is None:
        raise PointInTimeError("as_of: required with mode=as_of")
    if mode != "as_of" and as_of is not None:
        raise PointInTimeError(f"as_of: only used with mode=as_of (mode is {mode!r}); clear it or set mode=as_of")


def _resolve_from_versions(out: dict, state: KeyState, bucket: str, mode: str, version_id: str | None,
                           as_of: datetime | None) -> dict:
    if mode == "latest":
        chosen = state.newest_data
        if chosen is None:
            raise PointInTimeError(f"key: s3://{bucket}/{state.key} has only delete markers, no version to restore")
    elif mode == "version":
        chosen = state.wanted
        if chosen is None:
            raise PointInTimeError(f"version_id: {version_id!r} is not a version of s3://{bucket}/{state.key}")
        if chosen.delete_marker:
            raise PointInTimeError(f"version_id: {version_id!r} is a delete marker of {state.key!r}, not a version "
                                   "with content; choose a version")
    else:
        chosen = state.at
        if chosen is None or chosen.delete_marker:
            if chosen is None:
                reason = (f"did not exist at {iso(as_of)}: its first listed version is from "
                          f"{iso(state.oldest.last_modified)}")
            else:
                reason = f"did not exist at {iso(as_of)}: deleted at {iso(chosen.last_modified)} (delete marker)"
            return {**out, "status": "did_not_exist", "reason": reason,
                    "state_at": chosen.brief() if chosen is not None else None}
        out["ambiguous"] = state.ambiguous
    return {**out, "status": "found", "origin": asdict(Origin.of_version(bucket, chosen))}


def _resolve_from_snapshot(out: dict, store, store_bucket: str, bucket: str, key: str, mode: str,
                           version_id: str | None, as_of: datetime | None) -> dict:
    if not store_bucket:
        raise PointInTimeError("source=snapshot needs the backup bucket of the plan")
    if mode == "version":
        location = mf.stored_location(bucket, key, version_id or "")
        try:
            head = store.head_object(Bucket=store_bucket, Key=location)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
                raise PointInTimeError(f"version_id: no snapshot in s3://{store_bucket} stored version "
                                       f"{version_id!r} of {key!r}; use source=versions") from None
            raise
        origin = Origin(store_bucket, location, None, head["ContentLength"], head["ETag"].strip('"'),
                        iso(head["LastModified"]), "STANDARD", version_id)
        return {**out, "status": "found", "origin": asdict(origin)}
    if mode == "latest":
        sid = latest_snapshot(store, store_bucket, bucket)
        summary = read_summary(store, store_bucket, bucket, sid) if sid else None
    else:
        found = snapshot_as_of(store, store_bucket, bucket, as_of)
        sid, summary = found if found else (None, None)
    if sid is None:
        when = f"at or before {iso(as_of)}" if as_of else "at all"
        raise PointInTimeError(f"source: no complete snapshot of {bucket!r} {when} in s3://{store_bucket}; "
                               "use source=versions or a later as_of")
    out.update(snapshot_id=sid, snapshot_time=_iso(snapshot_time(summary or {})))
    entry = next((e for e in _manifest_under(store, store_bucket, bucket, sid, key) if e.key == key), None)
    if entry is None:
        return {**out, "status": "did_not_exist",
                "reason": f"did not exist at {out['snapshot_time']}: not in snapshot {sid}"}
    return {**out, "status": "found", "origin": asdict(Origin.of_entry(store_bucket, entry))}


def restore_file(client, resolution: dict, *, dest_bucket: str, dest_key: str, tuning: CopyTuning | None = None
                 ) -> dict:
    """Copy the resolved version to `dest_bucket/dest_key` server-side (in place: a new current version),
    unless the destination already holds that content. Returns what was restored, verified by a HEAD."""
    if resolution["status"] != "found":
        return {"action": "none", "reason": resolution.get("reason")}
    origin = Origin(**resolution["origin"])
    now = _head(client, dest_bucket, dest_key)
    if now is not None and Present(now.get("VersionId"), now["ContentLength"],
                                   now["ETag"].strip('"')).same_content(origin):
        return {"action": "unchanged", "reason": "the destination already holds this content",
                **_described(dest_bucket, dest_key, now)}
    spec = CopySpec(origin.bucket, origin.key, origin.version_id, origin.size, dest_bucket, dest_key,
                    _storage_class(origin.storage_class))
    checksum = copy_object(client, spec, tuning or CopyTuning())
    after = _head(client, dest_bucket, dest_key)
    if after is None or after["ContentLength"] != origin.size:
        raise PointInTimeError(f"restore of {dest_key!r} did not verify: expected {origin.size} bytes, found "
                               f"{after and after['ContentLength']}")
    return {"action": "restored", "copy_checksum": checksum, **_described(dest_bucket, dest_key, after)}


def _described(bucket: str, key: str, head: dict) -> dict:
    checksum = ("sha256:" + head["ChecksumSHA256"]) if head.get("ChecksumSHA256") else "etag:" + head["ETag"].strip('"')
    return {"dest": f"s3://{bucket}/{key}", "new_version_id": head.get("VersionId"),
            "size": head["ContentLength"], "etag": head["ETag"].strip('"'), "checksum": checksum}


def _head(client, bucket: str, key: str) -> dict | None:
    try:
        return client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound", "405", "MethodNotAllowed"):
            return None
        raise


def _storage_class(source_class: str | None) -> str | None:
    """Keep the version's storage class, except archive tiers (a restored copy should be readable)."""
    if not source_class or source_class in COLD_CLASSES or source_class == "STANDARD":
        return None
    return source_class


# --------------------------------------------------------------------------- bulk
@dataclass(frozen=True)
class BulkRequest:
    bucket: str
    prefix: str
    as_of: datetime
    source: str = "versions"  # versions | snapshot
    snapshot_id: str | None = None  # chosen by check_bulk_request for source=snapshot
    store_bucket: str | None = None  # the backup bucket (source=snapshot)
    target_bucket: str | None = None  # None: in place
    target_prefix: str = ""
    delete_newer: bool = False
    dry_run: bool = True
    concurrency: int = 32
    tuning: CopyTuning = field(default_factory=CopyTuning)
    excludes: tuple[str, ...] = ()  # keys snapshots never hold: never deleted by a snapshot restore
    page_size: int = 1000

    @property
    def in_place(self) -> bool:
        return self.target_bucket is None

    def dest_key(self, key: str) -> str:
        return key if self.in_place else self.target_prefix + key


@dataclass
class BulkResult:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_ACTIONS, 0))
    bytes_restored: int = 0
    keys: int = 0
    versions_listed: int = 0
    delete_markers_listed: int = 0
    pages: int = 0
    ambiguous: int = 0
    erased_skipped: int = 0  # keys the erasure ledger says were erased: left alone
    max_in_flight: int = 0
    duration_s: float = 0.0
    sample: list[dict] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)


class _Sample:
    """At most `size` decisions, spread over the actions (changes first); memory bounded by the actions."""

    def __init__(self, size: int = SAMPLE_SIZE) -> None:
        self.size = size
        self.by_action: dict[str, list[dict]] = {a: [] for a in _ACTIONS}

    def add(self, decision: dict) -> None:
        bucket = self.by_action.setdefault(decision["action"], [])
        if len(bucket) < self.size:
            bucket.append(decision)

    def take(self) -> list[dict]:
        out: list[dict] = []
        lists = [list(v) for v in self.by_action.values()]
        while len(out) < self.size and any(lists):
            for lst in lists:
                if lst and len(out) < self.size:
                    out.append(lst.pop(0))
        return out


def check_bulk_request(plan: Plan, *, bucket: str, prefix: str, destination: str, target_bucket: str | None,
                       target_prefix: str, delete_newer: bool) -> None:
    """Refuse requests that would overwrite what they read from, or write into a service bucket."""
    try:
        plan.bucket(bucket)
    except KeyError as exc:
        raise PointInTimeError(f"bucket: {exc.args[0]}") from None
    if not prefix:
        raise PointInTimeError("prefix: must not be empty (a folder such as user-uploads/u1002/)")
    if destination == "in_place":
        if target_bucket or target_prefix:
            raise PointInTimeError("target_bucket/target_prefix: only used with destination=other_location; "
                                   "clear them for an in-place restore")
        return
    if destination != "other_location":
        raise PointInTimeError(f"destination: {destination!r} is not one of in_place, other_location")
    if delete_newer:
        raise PointInTimeError("delete_newer: only applies to destination=in_place (nothing is deleted elsewhere)")
    if target_prefix and not re.match(PREFIX_PATTERN, target_prefix):
        raise PointInTimeError(f"target_prefix: {target_prefix!r} must be a folder such as recovered/ "
                               "(letters, digits, . _ - and /, ending in /)")
    target = target_bucket or bucket
    if not re.match(BUCKET_RE, target):
        raise PointInTimeError(f"target_bucket: {target!r} is not a bucket name")
    protected = {plan.backup.bucket: "backup", plan.archive.bucket: "archive", plan.compliance_bucket: "compliance",
                 plan.export_bucket: "export"}
    protected.update({b.replica: f"replica of {b.name}" for b in plan.source_buckets if b.replica})
    if target in protected:
        raise PointInTimeError(f"target_bucket: {target!r} is the {protected[target]} bucket; choose a source "
                               "bucket or a recovery bucket")
    if target == bucket and (target_prefix + prefix).startswith(prefix):
        raise PointInTimeError(
            f"target_prefix: writing {target_prefix + prefix!r} in {bucket!r} would overwrite or mix with the "
            f"source prefix {prefix!r}; use destination=in_place to restore in place, or a target_prefix "
            "outside the source prefix (e.g. recovered/)"
        )


def bulk_recover(client, request: BulkRequest, *, store=None, target=None,
                 redactor: Redactor | None = None) -> BulkResult:
    """Make `target_prefix + key` (or the key itself, in place) hold each key's state at `as_of`, for every
    key under `prefix`. Streams the listing, copies server-side in parallel; with `dry_run`, only decides.
    Keys `redactor` says were erased are decided "erased": never copied, deleted or otherwise touched.

    In place, copies land while the same prefix is still being listed. That is safe: a key is decided only
    once all its entries have been read, and its new version (or delete marker) sorts before the listing's
    KeyMarker/VersionIdMarker, so it is never listed, let alone restored, twice."""
    started = time.monotonic()
    result = BulkResult()
    target = target or client
    sample = _Sample()
    decisions = _decisions(client, store or client, target, request, result, redactor)
    log.info("bulk recovery of s3://%s/%s as of %s from %s into %s%s", request.bucket, request.prefix,
             iso(request.as_of), request.source if request.source == "versions" else f"snapshot {request.snapshot_id}",
             "place" if request.in_place else f"s3://{request.target_bucket}/{request.target_prefix}",
             " (dry run)" if request.dry_run else "")
    dst_bucket = request.bucket if request.in_place else request.target_bucket
    gauge = _InFlight()
    work = ((d, None if request.dry_run else _action_fn(target, d, dst_bucket, request.tuning, gauge))
            for d in decisions)
    for n, (decision, outcome) in enumerate(OrderedPool(max(1, request.concurrency)).run(work), start=1):
        if isinstance(outcome, Exception):
            decision.error = f"{type(outcome).__name__}: {outcome}"
        elif outcome is not None:
            decision.result = outcome
        doc = decision.to_dict()
        result.counts[doc["action"]] = result.counts.get(doc["action"], 0) + 1
        if decision.action == "restore" and not decision.error:
            result.bytes_restored += decision.origin.size
        if decision.ambiguous:
            result.ambiguous += 1
        if decision.error and len(result.failures) < SAMPLE_SIZE:
            result.failures.append(doc)
        sample.add(doc)
        if n % PROGRESS_EVERY == 0:
            log.info("%d keys decided: %s", n, {k: v for k, v in result.counts.items() if v})
    result.keys = sum(result.counts.values())
    result.erased_skipped = result.counts["erased"]
    result.sample = sample.take()
    result.max_in_flight = gauge.peak
    result.duration_s = round(time.monotonic() - started, 3)
    log.info("bulk recovery done in %.1f s: %d keys, %s, %d bytes restored, peak %d copies in flight",
             result.duration_s, result.keys, {k: v for k, v in result.counts.items() if v}, result.bytes_restored,
             result.max_in_flight)
    return result


class _InFlight:
    """Counts concurrent copy/delete requests (reported as `max_in_flight`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = 0
        self.peak = 0

    def __enter__(self) -> None:
        with self._lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def __exit__(self, *exc) -> None:
        with self._lock:
            self.now -= 1


def _action_fn(client, d: Decision, dst_bucket: str, tuning: CopyTuning, gauge: _InFlight):
    if d.action == "restore":
        o = d.origin
        spec = CopySpec(o.bucket, o.key, o.version_id, o.size, dst_bucket, d.dest_key, _storage_class(o.storage_class))

        def run():
            try:
                with gauge:
                    return copy_object(client, spec, tuning)
            except ClientError as exc:
                return exc
        return run
    if d.action == "delete":
        def delete():
            try:
                with gauge:
                    return client.delete_object(Bucket=dst_bucket, Key=d.dest_key).get("VersionId")
            except ClientError as exc:
                return exc
        return delete
    return None


def _decisions(client, store, target, req: BulkRequest, result: BulkResult, redactor: Redactor | None
               ) -> Iterator[Decision]:
    if req.source == "versions":
        decisions = _decisions_from_versions(client, target, req, result)
    else:
        decisions = _decisions_from_snapshot(client, store, target, req, result)
    if not redactor:
        yield from decisions
        return
    for d in decisions:
        yield Decision(d.key, "erased", ERASED_REASON, d.dest_key) if redactor.erased_key(req.bucket, d.key) else d


def _decisions_from_versions(client, target, req: BulkRequest, result: BulkResult) -> Iterator[Decision]:
    stats = ListingStats()
    states = resolve_pages(version_pages(client, req.bucket, req.prefix, req.page_size), req.as_of, stats=stats)
    dest = None if req.in_place else _Lookup(_present_listing(target, req.target_bucket,
                                                              req.target_prefix + req.prefix))
    try:
        for s in states:
            origin = Origin.of_version(req.bucket, s.at) if s.existed_at else None
            if req.in_place:
                now = Present(s.current.version_id, s.current.size, s.current.etag) if s.live else None
            else:
                now = dest.get(req.dest_key(s.key))
            yield decide(s.key, req.dest_key(s.key), origin, s.at is not None and s.at.delete_marker, now,
                         in_place=req.in_place, delete_newer=req.delete_newer, ambiguous=s.ambiguous)
    finally:
        result.pages, result.versions_listed, result.delete_markers_listed = (stats.pages, stats.versions,
                                                                             stats.delete_markers)


def _decisions_from_snapshot(client, store, target, req: BulkRequest, result: BulkResult) -> Iterator[Decision]:
    entries = _manifest_under(store, req.store_bucket, req.bucket, req.snapshot_id, req.prefix)
    if req.in_place:
        live = ((o.key, Present(o.version_id, o.size, o.etag))
                for o in list_live_objects(client, req.bucket, versioned=is_versioned(client, req.bucket),
                                           prefix=req.prefix, page_size=req.page_size)
                if not is_excluded(o.key, req.excludes))
        for key, entry, now in _union(((e.key, e) for e in entries), live):
            origin = Origin.of_entry(req.store_bucket, entry) if entry is not None else None
            yield decide(key, key, origin, False, now, in_place=True, delete_newer=req.delete_newer)
        return
    dest = _Lookup(_present_listing(target, req.target_bucket, req.target_prefix + req.prefix))
    for e in entries:
        dest_key = req.dest_key(e.key)
        yield decide(e.key, dest_key, Origin.of_entry(req.store_bucket, e), False, dest.get(dest_key),
                     in_place=False, delete_newer=False)


def _present_listing(client, bucket: str, prefix: str) -> Iterator[tuple[str, Present]]:
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", ()):
            yield o["Key"], Present(None, o["Size"], o["ETag"].strip('"'))


class _Lookup:
    """Look up keys asked for in ascending order in a key-ordered (key, value) stream."""

    def __init__(self, stream: Iterator[tuple[str, Present]]) -> None:
        self._stream = stream
        self._head = next(stream, None)

    def get(self, key: str) -> Present | None:
        while self._head is not None and self._head[0] < key:
            self._head = next(self._stream, None)
        if self._head is not None and self._head[0] == key:
            return self._head[1]
        return None


def _union(a: Iterator[tuple[str, Any]], b: Iterator[tuple[str, Any]]) -> Iterator[tuple[str, Any, Any]]:
    """Merge two key-ordered streams: (key, value in a or None, value in b or None)."""
    x, y = next(a, None), next(b, None)
    while x is not None or y is not None:
        if y is None or (x is not None and x[0] < y[0]):
            yield x[0], x[1], None
            x = next(a, None)
        elif x is None or y[0] < x[0]:
            yield y[0], None, y[1]
            y = next(b, None)
        else:
            yield x[0], x[1], y[1]
            x, y = next(a, None), next(b, None)
