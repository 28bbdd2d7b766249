"""Temporary-object cleanup (core) against the moto server."""

import time
from datetime import timedelta

import pytest

from dataprotection import cleanup
from dataprotection.cleanup import CleanupError, TempPrefix, clean_bucket, clean_prefix, temporary_prefixes
from devstack.seed import create_buckets

SURVIVORS = ["temp-notes/x", "archive/temp/x", "tempfile.txt", "temp", "user-uploads/u1/temp/a.txt", "tmpfile"]


def versions(s3, bucket):
    out = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        out += [(v["Key"], v["VersionId"]) for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
    return sorted(out)


def _max_modified(s3, bucket, prefix):
    page = s3.list_object_versions(Bucket=bucket, Prefix=prefix)
    return max(v["LastModified"] for v in page.get("Versions", []) + page.get("DeleteMarkers", []))


@pytest.fixture
def world(plan, s3, s3_backup):
    """Expired temp objects (several versions, a delete marker), then 2 s later fresh ones; non-temp keys."""
    create_buckets(plan, s3, s3_backup)
    bucket = plan.bucket_names[0]
    for key in SURVIVORS:
        s3.put_object(Bucket=bucket, Key=key, Body=b"keep me")
    for v in range(3):
        s3.put_object(Bucket=bucket, Key="temp/old-multi.part", Body=b"x" * (10 + v))
    s3.put_object(Bucket=bucket, Key="temp/old-deleted.part", Body=b"y" * 7)
    s3.delete_object(Bucket=bucket, Key="temp/old-deleted.part")
    s3.put_object(Bucket=bucket, Key="temp/sub/old.bin", Body=b"z" * 5)
    s3.put_object(Bucket=bucket, Key="tmp/old.tmp", Body=b"t" * 4)
    old_until = _max_modified(s3, bucket, "")
    time.sleep(2.1)  # S3 timestamps have one-second resolution
    s3.put_object(Bucket=bucket, Key="temp/fresh.part", Body=b"f")
    s3.put_object(Bucket=bucket, Key="temp/fresh-second.part", Body=b"1")
    # 'now' such that the cutoff (now - 7 days) falls between the old and the fresh objects
    now = old_until + timedelta(days=7, seconds=1)
    return bucket, now


def test_expired_temp_keys_lose_every_version_and_marker_others_stay(plan, s3, world):
    bucket, now = world
    before = versions(s3, bucket)
    result = clean_bucket(s3, plan, bucket, now)
    after = versions(s3, bucket)
    gone = sorted(set(before) - set(after))
    assert sorted({k for k, _ in gone}) == ["temp/old-deleted.part", "temp/old-multi.part", "temp/sub/old.bin",
                                           "tmp/old.tmp"]
    assert len(gone) == 3 + 2 + 1 + 1  # every version and the delete marker
    assert {k for k, _ in after} == set(SURVIVORS) | {"temp/fresh.part", "temp/fresh-second.part"}
    assert result["keys_expired"] == 4 and result["keys_kept"] == 2
    assert result["versions_deleted"] == 6 and result["delete_markers_deleted"] == 1
    assert result["bytes_deleted"] == 10 + 11 + 12 + 7 + 5 + 4
    assert result["errors"] == 0 and result["left_after_verify"] == 0
    assert [p["prefix"] for p in result["prefixes"]] == ["temp/", "tmp/"]

    again = clean_bucket(s3, plan, bucket, now)  # idempotent
    assert again["keys_expired"] == 0 and versions(s3, bucket) == after


def test_nothing_expires_before_its_time(plan, s3, world):
    bucket, now = world
    before = versions(s3, bucket)
    result = clean_bucket(s3, plan, bucket, now - timedelta(days=1))
    assert result["keys_expired"] == 0 and versions(s3, bucket) == before


def test_batches_of_delete_objects(plan, s3, world, monkeypatch):
    bucket, now = world
    calls = []
    real = s3.delete_objects

    def counting(**kwargs):
        calls.append(len(kwargs["Delete"]["Objects"]))
        return real(**kwargs)

    monkeypatch.setattr(cleanup, "BATCH", 2)
    monkeypatch.setattr(s3, "delete_objects", counting)
    result = clean_prefix(s3, bucket, TempPrefix("temp-files", "temp/", 7), now)
    assert calls == [2, 2, 2] and result.versions_deleted + result.delete_markers_deleted == 6


def test_dry_run_and_prefix_rules(plan, s3, world):
    bucket, now = world
    before = versions(s3, bucket)
    preview = clean_prefix(s3, bucket, TempPrefix("temp-files", "temp/", 7), now, dry_run=True)
    assert preview.keys_expired == 3 and versions(s3, bucket) == before
    replica = plan.source_buckets[0].replica
    assert [t.prefix for t in temporary_prefixes(plan, replica)] == ["temp/", "tmp/"]
    with pytest.raises(CleanupError, match="neither a source bucket nor a replica"):
        temporary_prefixes(plan, plan.backup.bucket)


def test_paged_listing_keeps_a_key_together(plan, s3, world, monkeypatch):
    """A key's versions split over listing pages still count as one key."""
    bucket, now = world
    real = s3.get_paginator

    def small_pages(name):
        pager = real(name)
        original = pager.paginate
        pager.paginate = lambda **kw: original(**kw, PaginationConfig={"PageSize": 2})
        return pager

    monkeypatch.setattr(s3, "get_paginator", small_pages)
    result = clean_prefix(s3, bucket, TempPrefix("temp-files", "temp/", 7), now)
    assert result.keys_expired == 3 and result.keys_kept == 2 and result.left_after_verify == 0
