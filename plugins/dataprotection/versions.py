"""Every version and delete marker of a prefix or of exact keys, listed and deleted in DeleteObjects batches.

Versioned buckets keep old bytes as noncurrent versions: whatever must really be gone (expired backups,
manifests an erasure rewrote, records naming a user's keys, drill canaries) is deleted version by version."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

BATCH = 1000  # DeleteObjects limit


def prefix_versions(client, bucket: str, prefix: str) -> Iterator[dict]:
    """Every version and delete marker under `prefix`, as S3 lists them (an unversioned bucket lists each
    object once, with version id "null")."""
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Versions", [])
        yield from page.get("DeleteMarkers", [])


def key_versions(client, bucket: str, key: str, *, noncurrent_only: bool = False) -> list[dict]:
    """Every version and delete marker of exactly `key` (never of keys it is a prefix of), as DeleteObjects
    entries; with `noncurrent_only`, all but the current version."""
    return [{"Key": key, "VersionId": item["VersionId"]} for item in prefix_versions(client, bucket, key)
            if item["Key"] == key and not (noncurrent_only and item.get("IsLatest"))]


def delete_versions(client, bucket: str, versions: Iterable[dict]) -> int:
    """Delete the given versions (dicts with Key and VersionId) in batches; return how many were deleted.
    Raises RuntimeError naming the bucket and S3's error codes if any could not be deleted."""
    objects = [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in versions]
    deleted = 0
    for i in range(0, len(objects), BATCH):
        response = client.delete_objects(Bucket=bucket, Delete={"Objects": objects[i:i + BATCH], "Quiet": False})
        if response.get("Errors"):
            codes = sorted({e.get("Code") for e in response["Errors"]})
            raise RuntimeError(f"{len(response['Errors'])} versions in s3://{bucket} could not be deleted "
                               f"(codes {codes}, e.g. {response['Errors'][0].get('Key')!r}); re-run the task")
        deleted += len(response.get("Deleted", []))
    return deleted


def purge_noncurrent(client, bucket: str, keys: list[str]) -> int:
    """Delete the noncurrent versions and delete markers of exactly `keys`; return how many were deleted."""
    return delete_versions(client, bucket, [v for key in keys for v in key_versions(client, bucket, key,
                                                                                     noncurrent_only=True)])
