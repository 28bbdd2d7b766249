"""Older versions of exact keys, deleted: a rewritten object in a versioned bucket keeps its old bytes as a
noncurrent version until this removes them (manifests rewritten by an erasure name personal keys)."""

from __future__ import annotations

BATCH = 1000  # DeleteObjects limit


def key_versions(client, bucket: str, key: str, *, noncurrent_only: bool = False) -> list[dict]:
    """Every version and delete marker of exactly `key` (never of keys it is a prefix of), as DeleteObjects
    entries; with `noncurrent_only`, all but the current version."""
    out = []
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=key):
        for item in page.get("Versions", []) + page.get("DeleteMarkers", []):
            if item["Key"] == key and not (noncurrent_only and item.get("IsLatest")):
                out.append({"Key": key, "VersionId": item["VersionId"]})
    return out


def purge_noncurrent(client, bucket: str, keys: list[str]) -> int:
    """Delete the noncurrent versions and delete markers of exactly `keys`; return how many were deleted.
    Raises RuntimeError naming the bucket and S3's error codes if any could not be deleted."""
    objects = [v for key in keys for v in key_versions(client, bucket, key, noncurrent_only=True)]
    deleted = 0
    for i in range(0, len(objects), BATCH):
        response = client.delete_objects(Bucket=bucket, Delete={"Objects": objects[i:i + BATCH], "Quiet": False})
        if response.get("Errors"):
            codes = sorted({e.get("Code") for e in response["Errors"]})
            raise RuntimeError(f"{len(response['Errors'])} old versions in s3://{bucket} could not be deleted "
                               f"(codes {codes}); re-run the task")
        deleted += len(response.get("Deleted", []))
    return deleted
