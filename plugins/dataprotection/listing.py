"""Paginated, streaming listings of the live objects of a bucket (in S3's key order).

A versioned bucket is listed with ListObjectVersions (the current, non-delete-marker version of each
key, so the version id comes with the listing and no per-object request is needed); an unversioned
bucket with ListObjectsV2. Both can be bounded to a key range (after, upto] for sharding.
"""

from __future__ import annotations

import fnmatch
import queue
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class SourceObject:
    key: str
    size: int
    etag: str  # without quotes
    version_id: str | None
    last_modified: datetime
    storage_class: str


@dataclass(frozen=True)
class KeyRange:
    """Keys k with after < k <= upto (None = unbounded)."""

    after: str | None = None
    upto: str | None = None

    def contains(self, key: str) -> bool:
        return (self.after is None or key > self.after) and (self.upto is None or key <= self.upto)


ALL_KEYS = KeyRange()


def is_versioned(client, bucket: str) -> bool:
    status = client.get_bucket_versioning(Bucket=bucket).get("Status")
    return status in ("Enabled", "Suspended")


def is_excluded(key: str, excludes: Sequence[str]) -> bool:
    return bool(excludes) and _exclude_matcher(tuple(excludes))(key) is not None


@lru_cache(maxsize=32)
def _exclude_matcher(excludes: tuple[str, ...]):
    """One compiled regex for all fnmatch patterns (whole-key match, case-sensitive)."""
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in excludes)).match


def iso(ts: datetime) -> str:
    """ISO-8601 UTC with second precision (S3's listing precision), e.g. 2026-12-03T02:00:00Z."""
    if ts.utcoffset():
        ts = ts.astimezone(UTC)
    return f"{ts.year:04d}-{ts.month:02d}-{ts.day:02d}T{ts.hour:02d}:{ts.minute:02d}:{ts.second:02d}Z"


def list_live_objects(
    client,
    bucket: str,
    *,
    versioned: bool,
    prefix: str = "",
    key_range: KeyRange = ALL_KEYS,
    page_size: int = 1000,
) -> Iterator[SourceObject]:
    """Yield the live objects of `bucket` under `prefix` within `key_range`, in key order."""
    if versioned:
        yield from _list_versions(client, bucket, prefix, key_range, page_size)
    else:
        yield from _list_v2(client, bucket, prefix, key_range, page_size)


def _list_v2(client, bucket, prefix, key_range, page_size) -> Iterator[SourceObject]:
    kwargs = {"Bucket": bucket, "Prefix": prefix, "PaginationConfig": {"PageSize": page_size}}
    if key_range.after is not None:
        kwargs["StartAfter"] = key_range.after
    for page in client.get_paginator("list_objects_v2").paginate(**kwargs):
        for obj in page.get("Contents", []):
            if key_range.upto is not None and obj["Key"] > key_range.upto:
                return
            yield SourceObject(
                key=obj["Key"],
                size=obj["Size"],
                etag=obj["ETag"].strip('"'),
                version_id=None,
                last_modified=obj["LastModified"],
                storage_class=obj.get("StorageClass", "STANDARD"),
            )


def _list_versions(client, bucket, prefix, key_range, page_size) -> Iterator[SourceObject]:
    kwargs = {"Bucket": bucket, "Prefix": prefix, "PaginationConfig": {"PageSize": page_size}}
    if key_range.after is not None:
        kwargs["KeyMarker"] = key_range.after
    for page in client.get_paginator("list_object_versions").paginate(**kwargs):
        for v in page.get("Versions", []):
            if not v.get("IsLatest"):
                continue
            if key_range.upto is not None and v["Key"] > key_range.upto:
                return
            yield SourceObject(
                key=v["Key"],
                size=v["Size"],
                etag=v["ETag"].strip('"'),
                version_id=v.get("VersionId"),
                last_modified=v["LastModified"],
                storage_class=v.get("StorageClass", "STANDARD"),
            )


class Prefetched(Generic[T]):
    """Runs an iterator (a paginated listing) in a background thread, a few batches ahead.

    The next listing page is fetched while the caller works on the current one, and the first page
    is already on its way while the caller does other requests. Items cross the thread in batches
    (one queue hand-off per `batch` items, so a million-key listing adds no per-item cost); an error
    of the listing is raised in the caller at the point where the items stopped. Use it as a context
    manager (or call `close()`): leaving early stops the thread after its current request.
    """

    _DONE = object()

    def __init__(self, items: Iterable[T], *, batch: int = 500, depth: int = 4) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._current: Iterator[T] = iter(())
        self._finished = False
        self._thread = threading.Thread(target=self._produce, args=(iter(items), batch), daemon=True,
                                        name="listing-prefetch")
        self._thread.start()

    def _put(self, value: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(value, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self, items: Iterator[T], batch: int) -> None:
        chunk: list[T] = []
        try:
            for item in items:
                chunk.append(item)
                if len(chunk) >= batch:
                    if not self._put(chunk):
                        return
                    chunk = []
            if chunk and not self._put(chunk):
                return
            self._put(self._DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            if not chunk or self._put(chunk):
                self._put(_Failure(exc))

    def __iter__(self) -> Prefetched[T]:
        return self

    def __next__(self) -> T:
        while True:
            for item in self._current:
                return item
            if self._finished:
                raise StopIteration
            value = self._queue.get()
            if value is self._DONE:
                self._finished = True
                raise StopIteration
            if isinstance(value, _Failure):
                self._finished = True
                raise value.exc
            self._current = iter(value)

    def close(self) -> None:
        self._stop.set()

    def __enter__(self) -> Prefetched[T]:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class _Failure:
    exc: BaseException


def top_level_prefixes(client, bucket: str) -> list[str]:
    """The first-level "folders" of a bucket (for sharding a bucket with no previous snapshot)."""
    out: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Delimiter="/"):
        out.extend(p["Prefix"] for p in page.get("CommonPrefixes", []))
    return out
