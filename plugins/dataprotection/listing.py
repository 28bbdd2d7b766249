"""Paginated, streaming listings of the live objects of a bucket (in S3's key order).

A versioned bucket is listed with ListObjectVersions (the current, non-delete-marker version of each
key, so the version id comes with the listing and no per-object request is needed); an unversioned
bucket with ListObjectsV2. Both can be bounded to a key range (after, upto] for sharding.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache


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


def top_level_prefixes(client, bucket: str) -> list[str]:
    """The first-level "folders" of a bucket (for sharding a bucket with no previous snapshot)."""
    out: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Delimiter="/"):
        out.extend(p["Prefix"] for p in page.get("CommonPrefixes", []))
    return out
