"""Cross-region recovery (dataprotection.crossregion) against the moto server, replicas filled by the
dev stack's replication emulator."""

from __future__ import annotations

import hashlib
import os
import sys
from base64 import b64encode
from collections import Counter
from contextlib import contextmanager

import pytest

from dataprotection.config import parse_plan
from dataprotection.copier import MiB
from dataprotection.crossregion import (
    CrossRegionError,
    compare,
    copy_from_replica,
    plan_recovery,
    recovery_spec,
    verify_recovery,
)
from dataprotection.recovery import ensure_recovery_bucket
from devstack.replication import ReplicationEmulator
from devstack.seed import create_buckets

# Keys that stress ordering and encoding: spaces, unicode, '+', '%', a key that is a prefix of another.
OBJECTS = {
    "user-uploads/u1/a.txt": b"alpha",
    "user-uploads/u1/a.txt.bak": b"alpha backup",
    "user-uploads/u1/empty.txt": b"",
    "user-uploads/u2/price list+2026 100%.csv": b"a,b\n1,2\n",
    "user-uploads/u3/Résumé final ✓.pdf": b"%PDF-1.7 resume" * 50,
    "user-uploads/u3/nested/deeper/file.bin": bytes(range(256)) * 8,
}
WITH_SHA256 = {"user-uploads/u1/a.txt.bak", "user-uploads/u3/Résumé final ✓.pdf"}


def _sha256(data: bytes) -> str:
    return b64encode(hashlib.sha256(data).digest()).decode()


def _uploads(plan):
    bucket = plan.source_buckets[0]
    assert bucket.replication.prefixes == ["user-uploads/"], "the tests assume the shipped plan"
    return bucket


@pytest.fixture
def replicated(plan, s3, s3_backup, s3_endpoint):
    """The uploads bucket with OBJECTS (some with a stored SHA-256, one key with three versions, a deleted
    key, an unreplicated temp/ key), replicated into its replica in the backup region."""
    create_buckets(plan, s3, s3_backup)
    source = _uploads(plan).name
    s3.put_object(Bucket=source, Key="user-uploads/u1/a.txt", Body=b"alpha v1")
    s3.put_object(Bucket=source, Key="user-uploads/u1/a.txt", Body=b"alpha v2")
    for key, body in OBJECTS.items():
        extra = {"ChecksumAlgorithm": "SHA256"} if key in WITH_SHA256 else {}
        s3.put_object(Bucket=source, Key=key, Body=body, **extra)
    s3.put_object(Bucket=source, Key="user-uploads/u4/gone.pdf", Body=b"deleted later")
    s3.delete_object(Bucket=source, Key="user-uploads/u4/gone.pdf")
    s3.put_object(Bucket=source, Key="temp/upload-0.part", Body=b"not replicated")
    ReplicationEmulator(plan, endpoint_url=s3_endpoint).run_once()
    return source


def _contents(client, bucket) -> dict[str, bytes]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {o["Key"]: client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
            for p in pages for o in p.get("Contents", [])}


# --------------------------------------------------------------------------- "no local disk" evidence
_FILE_WRITES: dict = {"on": False, "paths": []}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND


def _audit(event: str, args: tuple) -> None:
    if event == "open" and _FILE_WRITES["on"]:
        path, mode, flags = (tuple(args) + (None, None))[:3]
        if (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & _WRITE_FLAGS):
            _FILE_WRITES["paths"].append(path)


sys.addaudithook(_audit)  # process-wide and permanent; records only while a test turns it on


@contextmanager
def server_side_only(*clients):
    """Counts the S3 operations each client sends, and every file opened for writing, while active."""
    calls = [Counter() for _ in clients]
    handlers = []
    for client, counter in zip(clients, calls, strict=True):
        def handler(model, params, counter=counter, **_):
            counter[model.name] += 1
            if model.name == "CopyObject":  # botocore has already made CopySource "bucket/key?versionId=..."
                source = params["CopySource"]
                counter["CopySource:" + (source["Bucket"] if isinstance(source, dict) else source.split("/")[0])] += 1
        client.meta.events.register("before-parameter-build.s3", handler)
        handlers.append((client, handler))
    _FILE_WRITES.update(on=True, paths=[])
    try:
        yield calls, _FILE_WRITES["paths"]
    finally:
        _FILE_WRITES["on"] = False
        for client, handler in handlers:
            client.meta.events.unregister("before-parameter-build.s3", handler)


# --------------------------------------------------------------------------- spec
def test_recovery_spec_names_replica_and_target(plan):
    uploads = _uploads(plan)
    original = recovery_spec(plan, uploads.name, "original")
    assert (original.replica_bucket, original.replica_region) == (uploads.replica, plan.regions.backup)
    assert (original.target_bucket, original.target_region) == (uploads.name, plan.regions.primary)
    new = recovery_spec(plan, uploads.name, "new")
    assert new.target_bucket == f"{uploads.name}-restored"
    assert new.concurrency == plan.backup.max_concurrency
    assert new.multipart_threshold == 5 * 1024 * MiB, "one CopyObject (full-object SHA-256) up to 5 GiB"


@pytest.mark.parametrize(
    ("bucket", "target", "message"),
    [
        ("matbakh-backups", "new", "not a plan bucket with a replica"),
        ("no-such-bucket", "original", "not a plan bucket with a replica"),
        ("matbakh-files-uploads", "elsewhere", "use 'original' or 'new'"),
    ],
)
def test_recovery_spec_refuses_bad_requests(plan, bucket, target, message):
    with pytest.raises(CrossRegionError, match=message):
        recovery_spec(plan, bucket, target)


def test_recovery_spec_refuses_a_new_target_that_is_a_plan_bucket(plan):
    doc = plan.model_dump(mode="json")
    doc["export_bucket"] = f"{plan.bucket_names[0]}-restored"
    with pytest.raises(CrossRegionError, match="is a bucket of the plan"):
        recovery_spec(parse_plan(doc), plan.bucket_names[0], "new")
    long_name = "b" * 60
    doc = plan.model_dump(mode="json")
    doc["source_buckets"][0]["name"] = long_name
    doc["retention"] = []
    doc["gdpr"]["user_prefixes"] = []
    doc["failover"]["endpoint_bucket"] = long_name
    doc["failover"]["bucket_variables"]["UPLOADS_BUCKET"] = long_name
    with pytest.raises(CrossRegionError, match="not a valid S3 bucket name"):
        recovery_spec(parse_plan(doc), long_name, "new")
    assert recovery_spec(parse_plan(doc), long_name, "original").target_bucket == long_name


# --------------------------------------------------------------------------- recovery into a new bucket
def test_recovers_a_new_bucket_server_side_with_verified_checksums(plan, s3, s3_backup, replicated):
    spec = recovery_spec(plan, replicated, "new")
    replica_state = _contents(s3_backup, spec.replica_bucket)
    assert set(replica_state) == set(OBJECTS), "the replica has the live replicated keys only"

    dry = plan_recovery(s3_backup, s3, spec)
    assert (dry.dry_run, dry.target_exists, dry.objects, dry.copied, dry.present) == (True, False, 6, 6, 0)
    assert s3.list_buckets()["Buckets"] and spec.target_bucket not in {b["Name"] for b in s3.list_buckets()["Buckets"]}
    with pytest.raises(CrossRegionError, match="does not exist"):
        copy_from_replica(s3_backup, s3, spec)

    assert ensure_recovery_bucket(s3, spec.target_bucket, spec.target_region)
    with server_side_only(s3, s3_backup) as ((target_calls, replica_calls), file_writes):
        copied = copy_from_replica(s3_backup, s3, spec)
        verified = verify_recovery(s3_backup, s3, spec)
    assert (copied.objects, copied.copied, copied.present) == (6, 6, 0)
    assert copied.bytes == copied.copied_bytes == sum(map(len, OBJECTS.values()))
    assert verified.ok and verified.verified == verified.objects == 6
    assert verified.by_method == {"sha256": len(WITH_SHA256), "md5-etag": len(OBJECTS) - len(WITH_SHA256)}

    # no byte passed through this process: no GET, no PUT/part upload, no file written
    for calls in (target_calls, replica_calls):
        assert not {"GetObject", "PutObject", "UploadPart", "SelectObjectContent"} & set(calls), calls
    assert file_writes == []
    # the copies were sent to the target's region, their source the replica in the backup region
    assert target_calls["CopyObject"] == target_calls[f"CopySource:{spec.replica_bucket}"] == 6
    assert replica_calls["CopyObject"] == 0

    assert _contents(s3, spec.target_bucket) == replica_state == OBJECTS
    for key, body in OBJECTS.items():
        head = s3.head_object(Bucket=spec.target_bucket, Key=key, ChecksumMode="ENABLED")
        assert head["ChecksumSHA256"] == _sha256(body), "every copy gets an S3-computed SHA-256"
    assert plan_recovery(s3_backup, s3, spec).copied == 0
    assert copy_from_replica(s3_backup, s3, spec).copied == 0


def test_verify_finds_missing_and_different_objects(plan, s3, s3_backup, replicated):
    spec = recovery_spec(plan, replicated, "new")
    ensure_recovery_bucket(s3, spec.target_bucket, spec.target_region)
    copy_from_replica(s3_backup, s3, spec)
    s3.delete_object(Bucket=spec.target_bucket, Key="user-uploads/u1/a.txt")
    s3.put_object(Bucket=spec.target_bucket, Key="user-uploads/u2/price list+2026 100%.csv", Body=b"a,b\n1,3\n")
    s3.put_object(Bucket=spec.target_bucket, Key="user-uploads/u1/a.txt.bak", Body=b"alpha BACKUP",
                  ChecksumAlgorithm="SHA256")
    s3.put_object(Bucket=spec.target_bucket, Key="user-uploads/zz-extra", Body=b"not in the replica")

    result = verify_recovery(s3_backup, s3, spec)
    assert not result.ok
    assert (result.missing, result.mismatched, result.extra_in_target) == (1, 2, 1)
    assert result.missing_sample == ["user-uploads/u1/a.txt"]
    problems = {m["key"]: m["problem"] for m in result.mismatch_sample}
    assert problems["user-uploads/u1/a.txt.bak"].startswith("sha256 ")
    assert problems["user-uploads/u2/price list+2026 100%.csv"].startswith("ETag (MD5) ")

    again = copy_from_replica(s3_backup, s3, spec)
    assert again.copied == 3 and again.extra_in_target == 1
    assert verify_recovery(s3_backup, s3, spec).ok
    assert s3.get_object(Bucket=spec.target_bucket, Key="user-uploads/zz-extra")["Body"].read() == b"not in the replica"


# --------------------------------------------------------------------------- back into the original bucket
def test_original_target_copies_only_missing_or_different_objects(plan, s3, s3_backup, replicated):
    spec = recovery_spec(plan, replicated, "original")
    s3.delete_object(Bucket=replicated, Key="user-uploads/u1/a.txt")  # a delete marker
    s3.put_object(Bucket=replicated, Key="user-uploads/u3/nested/deeper/file.bin", Body=b"corrupted")
    untouched = s3.head_object(Bucket=replicated, Key="user-uploads/u1/a.txt.bak")["VersionId"]

    planned = plan_recovery(s3_backup, s3, spec)
    assert (planned.objects, planned.copied, planned.present, planned.extra_in_target) == (6, 2, 4, 1)
    assert sorted(planned.copied_sample) == ["user-uploads/u1/a.txt", "user-uploads/u3/nested/deeper/file.bin"]

    copied = copy_from_replica(s3_backup, s3, spec)
    assert (copied.copied, copied.present) == (2, 4)
    assert verify_recovery(s3_backup, s3, spec).ok
    live = _contents(s3, replicated)
    assert {k: live[k] for k in OBJECTS} == OBJECTS
    assert live["temp/upload-0.part"] == b"not replicated", "keys outside the replica are left alone"
    assert s3.head_object(Bucket=replicated, Key="user-uploads/u1/a.txt.bak")["VersionId"] == untouched
    versions = s3.list_object_versions(Bucket=replicated, Prefix="user-uploads/u3/nested/deeper/file.bin")
    assert [v["Size"] for v in versions["Versions"]] == [2048, len(b"corrupted"), 2048], \
        "the replaced (corrupted) object stays as an older version"

    assert copy_from_replica(s3_backup, s3, spec).copied == 0, "a re-run copies nothing"


def test_missing_replica_bucket_is_a_clear_error(plan, s3, s3_backup, s3_endpoint):
    s3.create_bucket(Bucket=plan.bucket_names[0], CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    spec = recovery_spec(plan, plan.bucket_names[0], "original")
    with pytest.raises(CrossRegionError, match="replica bucket .* does not exist in eu-west-1"):
        plan_recovery(s3_backup, s3, spec)


def test_multipart_copies_are_verified_by_size_only(plan, s3, s3_backup, s3_endpoint, replicated):
    """Above the threshold (5 GiB by default; 5 MiB here) a copy is made of parts: its ETag is a
    multipart one and it gets no full-object SHA-256, so only its size can be compared."""
    big = b"0123456789abcdef" * (6 * MiB // 16)
    s3.put_object(Bucket=replicated, Key="user-uploads/u5/big.bin", Body=big)
    ReplicationEmulator(plan, endpoint_url=s3_endpoint).run_once()
    spec = recovery_spec(plan, replicated, "new")
    spec = type(spec)(**{**spec.to_dict(), "multipart_threshold": 5 * MiB, "multipart_chunk": 5 * MiB})
    ensure_recovery_bucket(s3, spec.target_bucket, spec.target_region)
    assert copy_from_replica(s3_backup, s3, spec).copied == 7
    result = verify_recovery(s3_backup, s3, spec)
    assert result.ok and result.by_method["size-only"] == 1 and result.size_only_sample == ["user-uploads/u5/big.bin"]
    assert s3.head_object(Bucket=spec.target_bucket, Key="user-uploads/u5/big.bin")["ETag"].endswith('-2"')


# --------------------------------------------------------------------------- comparison rules
def _head(size=5, etag="5d41402abc4b2a76b9719d911017c592", sha=None, **extra) -> dict:
    head = {"ContentLength": size, "ETag": f'"{etag}"', **extra}
    if sha:
        head["ChecksumSHA256"] = sha
    return head


@pytest.mark.parametrize(
    ("replica", "target", "method", "ok"),
    [
        (_head(sha="AAA="), _head(sha="AAA="), "sha256", True),
        (_head(sha="AAA="), _head(sha="BBB=", etag="5d41402abc4b2a76b9719d911017c592"), "sha256", False),
        (_head(), _head(sha="AAA="), "md5-etag", True),
        (_head(), _head(etag="00000000000000000000000000000000"), "md5-etag", False),
        (_head(sha="AAA="), _head(), "md5-etag", True),  # a target object written without a checksum
        (_head(sha="AAA-3", ChecksumType="COMPOSITE"), _head(sha="AAA-3"), "md5-etag", True),
        (_head(etag="abc-3"), _head(etag="abc-3"), "multipart-etag", True),
        (_head(), _head(etag="abc-2"), "size-only", True),
        (_head(ServerSideEncryption="aws:kms"), _head(etag="ffff"), "size-only", True),
        (_head(size=5, sha="AAA="), _head(size=6, sha="AAA="), "size", False),
    ],
)
def test_compare(replica, target, method, ok):
    got, problem = compare(replica, target)
    assert got == method and (problem is None) == ok
