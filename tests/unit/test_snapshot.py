"""Snapshot engine, restore and retention against the moto server (DESIGN §3, issue acceptance)."""

from __future__ import annotations

import hashlib
import os
import threading
from collections import Counter
from datetime import date, timedelta

import pytest
from botocore.config import Config

from dataprotection import manifest as mf
from dataprotection.copier import CopyTuning, MiB
from dataprotection.restore import restore_snapshot
from dataprotection.retention import expire_snapshots
from dataprotection.s3client import client_config, make_client
from dataprotection.snapshot import (
    SnapshotError,
    SnapshotSpec,
    finalize_snapshot,
    iter_manifest,
    latest_snapshot,
    plan_shards,
    read_summary,
    take_shard,
    take_snapshot,
)

SRC, STORE, TARGET = "src-bucket", "store-bucket", "target-bucket"
REGION = "eu-central-1"

AWKWARD = {
    "plain.txt": b"plain",
    "with space/and more spaces.txt": b"spaces",
    "unicode/Résumé – 日本語.pdf": "unicode bytes ✓".encode(),
    "plus+sign+key": b"plus",
    "percent%20not-a-space%2F": b"percent",
    "a.txt": b"the a file",
    "a.txt.bak": b"the backup of a",
    "nested/deeper/and/deeper/leaf.bin": os.urandom(2048),
    "zero-byte": b"",
    "nested/zero": b"",
    "temp/excluded.part": b"never snapshotted",
}


def _bucket(s3, name: str, versioned: bool = True) -> None:
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
    if versioned:
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})


def _put_all(s3, objects: dict[str, bytes], bucket: str = SRC) -> None:
    for key, body in objects.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)


def _read_all(s3, bucket: str, prefix: str = "") -> dict[str, bytes]:
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            out[obj["Key"][len(prefix):]] = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
    return out


def _spec(snapshot_id: str, **kw) -> SnapshotSpec:
    kw.setdefault("excludes", ("temp/*", "tmp/*"))
    kw.setdefault("concurrency", 8)
    return SnapshotSpec(SRC, STORE, snapshot_id, **kw)


class RequestCounter:
    def __init__(self, client) -> None:
        self.ops: Counter[str] = Counter()
        self._lock = threading.Lock()
        client.meta.events.register("before-call.s3.*", self._count)

    def _count(self, model, **_):
        with self._lock:
            self.ops[model.name] += 1

    def reset(self) -> None:
        self.ops.clear()


@pytest.fixture
def buckets(s3):
    _bucket(s3, SRC)
    _bucket(s3, STORE, versioned=False)
    _bucket(s3, TARGET)
    return s3


def test_incremental_runs_copy_only_what_changed(buckets):
    s3 = buckets
    _put_all(s3, {f"obj/{i:04d}": f"v1 {i}".encode() for i in range(120)})
    _put_all(s3, {"temp/skip.me": b"x", "tmp/skip.too": b"y"})
    counter = RequestCounter(s3)

    first = take_snapshot(s3, s3, _spec("2026-12-01"))
    assert (first["objects"], first["copied"], first["skipped"], first["excluded"]) == (120, 120, 0, 2)

    counter.reset()
    second = take_snapshot(s3, s3, _spec("2026-12-02"))
    assert (second["objects"], second["copied"], second["skipped"]) == (120, 0, 120)
    assert second["previous_snapshot"] == "2026-12-01"
    per_object = {"CopyObject", "UploadPartCopy", "GetObject", "HeadObject"}
    # only listings, manifest/summary reads and writes: a small constant, not one request per object
    assert counter.ops["CopyObject"] == 0
    assert sum(counter.ops.values()) <= 20, counter.ops
    assert sum(counter.ops[op] for op in per_object) <= 8, counter.ops

    # add, modify, delete, add a version of an unchanged-content object
    s3.put_object(Bucket=SRC, Key="obj/new", Body=b"brand new")
    s3.put_object(Bucket=SRC, Key="obj/0001", Body=b"v2 1")
    s3.delete_object(Bucket=SRC, Key="obj/0002")
    s3.put_object(Bucket=SRC, Key="obj/0003", Body=b"v1 3")  # same bytes, new version id
    counter.reset()
    third = take_snapshot(s3, s3, _spec("2026-12-03"))
    assert (third["objects"], third["copied"]) == (120, 3)
    assert counter.ops["CopyObject"] == 3

    live = {v["Key"]: v["VersionId"] for v in s3.list_object_versions(Bucket=SRC)["Versions"] if v["IsLatest"]}
    entries = list(iter_manifest(s3, STORE, SRC, "2026-12-03"))
    assert [e.key for e in entries] == sorted(k for k in live if not k.startswith(("temp/", "tmp/")))
    assert all(e.version_id == live[e.key] for e in entries)
    assert all(e.location == mf.stored_location(SRC, e.key, e.version_id) for e in entries)

    # the oldest snapshot still restores its own state
    restore_snapshot(s3, s3, store_bucket=STORE, source_bucket=SRC, snapshot_id="2026-12-01",
                     target_bucket=TARGET, target_prefix="day1/")
    restored = _read_all(s3, TARGET, "day1/")
    assert restored == {f"obj/{i:04d}": f"v1 {i}".encode() for i in range(120)}


def test_manifest_format_and_summary(buckets):
    s3 = buckets
    _put_all(s3, AWKWARD)
    summary = take_snapshot(s3, s3, _spec("2026-12-01", logical_time="2026-12-01T02:00:00Z"))
    assert summary["objects"] == len(AWKWARD) - 1
    assert summary["bytes"] == sum(len(v) for k, v in AWKWARD.items() if not k.startswith("temp/"))
    assert summary["logical_time"] == "2026-12-01T02:00:00Z"
    part = summary["parts"][0]
    raw = s3.get_object(Bucket=STORE, Key=part["manifest_key"])["Body"].read()
    assert hashlib.sha256(raw).hexdigest() == part["manifest_sha256"]
    entries = list(iter_manifest(s3, STORE, SRC, "2026-12-01"))
    keys = [e.key for e in entries]
    assert keys == sorted(keys, key=lambda k: k.encode("utf-8"))  # S3 listing order
    for e in entries:
        body = AWKWARD[e.key]
        assert e.size == len(body)
        assert e.etag == hashlib.md5(body).hexdigest()
        assert e.checksum.startswith("sha256:")
        assert e.storage_class == "STANDARD" and e.version_id and e.last_modified.endswith("Z")
        stored = s3.head_object(Bucket=STORE, Key=e.location)
        assert stored["StorageClass"] == "STANDARD_IA"


def test_restore_reproduces_awkward_keys_and_multipart_objects(buckets):
    s3 = buckets
    big = os.urandom(11 * MiB + 123)
    objects = {**AWKWARD, "big/object.bin": big}
    _put_all(s3, objects)
    tuning = CopyTuning(multipart_threshold=5 * MiB, multipart_chunk=5 * MiB)
    summary = take_snapshot(s3, s3, _spec("2026-12-01", tuning=tuning))
    big_entry = next(e for e in iter_manifest(s3, STORE, SRC, "2026-12-01") if e.key == "big/object.bin")
    assert big_entry.checksum.startswith("mpu-etag:") and big_entry.checksum.endswith("-3")
    assert summary["objects"] == len(objects) - 1

    result = restore_snapshot(s3, s3, store_bucket=STORE, source_bucket=SRC, snapshot_id="2026-12-01",
                              target_bucket=TARGET)
    assert result.ok and result.verified == len(objects) - 1
    expected = {k: v for k, v in objects.items() if not k.startswith("temp/")}
    assert _read_all(s3, TARGET) == expected

    # a prefix restore takes exactly the keys under the prefix: a.txt, not only a.txt.bak mistakes
    part = restore_snapshot(s3, s3, store_bucket=STORE, source_bucket=SRC, snapshot_id="2026-12-01",
                            target_bucket=TARGET, target_prefix="partial/", key_prefix="nested/")
    assert part.objects == 2
    assert _read_all(s3, TARGET, "partial/") == {"nested/deeper/and/deeper/leaf.bin":
                                                 objects["nested/deeper/and/deeper/leaf.bin"], "nested/zero": b""}


def test_unversioned_source_identity_is_etag_and_size(buckets):
    s3 = buckets
    _bucket(s3, "plain-src", versioned=False)
    _put_all(s3, {"k1": b"one", "k2": b"two"}, bucket="plain-src")
    spec = SnapshotSpec("plain-src", STORE, "2026-12-01")
    take_snapshot(s3, s3, spec)
    s3.put_object(Bucket="plain-src", Key="k2", Body=b"TWO")  # same size, new content
    second = take_snapshot(s3, s3, SnapshotSpec("plain-src", STORE, "2026-12-02"))
    assert (second["copied"], second["skipped"]) == (1, 1)
    entries = {e.key: e for e in iter_manifest(s3, STORE, "plain-src", "2026-12-02")}
    assert entries["k2"].version_id is None
    assert entries["k2"].location == f"data/plain-src/k2/{hashlib.md5(b'TWO').hexdigest()}-3"


def test_backup_completes_through_20_percent_faults(buckets, fault_proxy):
    s3 = buckets
    objects = {f"f/{i:03d}": os.urandom(64 + i) for i in range(50)}
    _put_all(s3, objects)
    flaky = make_client(REGION, endpoint_url=fault_proxy.url)
    fault_proxy.configure(error_503=0.08, error_500=0.06, drop=0.06, seed=7)
    summary = take_snapshot(flaky, flaky, _spec("2026-12-01"))
    stats = fault_proxy.stats()
    fault_proxy.configure()
    assert stats["error_503"] > 0 and stats["error_500"] > 0 and stats["drop"] > 0
    assert summary["objects"] == 50 and summary["copied"] == 50
    restore_snapshot(s3, s3, store_bucket=STORE, source_bucket=SRC, snapshot_id="2026-12-01",
                     target_bucket=TARGET)
    assert _read_all(s3, TARGET) == objects


def test_unreachable_s3_fails_clearly_and_leaves_no_complete_snapshot(buckets):
    s3 = buckets
    _put_all(s3, {"a": b"1"})
    from devstack.services import free_port

    config = client_config(path_style=True, connect_timeout=1).merge(Config(retries={"max_attempts": 2}))
    dead = make_client(REGION, endpoint_url=f"http://127.0.0.1:{free_port()}", config=config)
    with pytest.raises(SnapshotError, match="S3 is unreachable.*NOT marked complete"):
        take_snapshot(s3, dead, _spec("2026-12-01"))
    assert read_summary(s3, STORE, SRC, "2026-12-01") is None
    assert latest_snapshot(s3, STORE, SRC) is None


def test_missing_bucket_is_a_clear_error(buckets):
    s3 = buckets
    with pytest.raises(SnapshotError, match="bucket does not exist.*'no-such-bucket'"):
        take_snapshot(s3, s3, SnapshotSpec("no-such-bucket", STORE, "2026-12-01"))


def test_empty_bucket_gives_an_empty_complete_snapshot(buckets):
    s3 = buckets
    summary = take_snapshot(s3, s3, _spec("2026-12-01"))
    assert summary["objects"] == 0 and summary["copied"] == 0
    assert list(iter_manifest(s3, STORE, SRC, "2026-12-01")) == []


class Killed(Exception):
    pass


def test_killed_run_resumes_without_copying_twice(buckets):
    s3 = buckets
    objects = {f"k/{i:03d}": f"body {i}".encode() for i in range(120)}
    _put_all(s3, objects)
    copies: Counter[str] = Counter()
    killed: list[str] = []
    lock = threading.Lock()

    def on_copy(params, **_):
        with lock:
            copies[params["Key"]] += 1
            if sum(copies.values()) == 50 and not killed:
                killed.append(params["Key"])
                raise Killed("worker killed mid-copy")  # before the request is sent

    s3.meta.events.register("before-parameter-build.s3.CopyObject", on_copy)
    with pytest.raises(Killed):
        take_snapshot(s3, s3, _spec("2026-12-01", concurrency=4))
    assert read_summary(s3, STORE, SRC, "2026-12-01") is None, "a killed run must not look complete"
    assert latest_snapshot(s3, STORE, SRC) is None

    summary = take_snapshot(s3, s3, _spec("2026-12-01", concurrency=4))
    assert summary["objects"] == 120
    # only the copy that was killed before it reached S3 runs a second time
    assert [k for k, n in copies.items() if n > 1] == killed
    assert summary["found_stored"] >= 49 and summary["found_stored"] + summary["copied"] == 120
    # the same snapshot a clean run makes: every key, its identity, bytes and checksum
    entries = list(iter_manifest(s3, STORE, SRC, "2026-12-01"))
    assert [e.key for e in entries] == sorted(objects)
    for entry in entries:
        stored = s3.get_object(Bucket=STORE, Key=entry.location, ChecksumMode="ENABLED")
        assert stored["Body"].read() == objects[entry.key]
        assert entry.checksum == "sha256:" + stored["ChecksumSHA256"]


def test_sharded_snapshot_equals_single_shard(buckets):
    s3 = buckets
    _put_all(s3, {f"s/{i:04d}": f"{i}".encode() for i in range(200)})
    take_snapshot(s3, s3, _spec("2026-12-01"))
    s3.put_object(Bucket=SRC, Key="s/0100", Body=b"changed")
    spec = _spec("2026-12-02")
    ranges = plan_shards(s3, s3, spec, 4)
    assert len(ranges) == 4 and ranges[0].after is None and ranges[-1].upto is None
    results = [take_shard(s3, s3, spec, shard=i, key_range=r) for i, r in enumerate(ranges)]
    assert all(40 <= r.objects <= 60 for r in results), [r.objects for r in results]
    summary = finalize_snapshot(s3, spec, shard_count=4)
    assert summary["objects"] == 200 and summary["copied"] == 1
    keys = [e.key for e in iter_manifest(s3, STORE, SRC, "2026-12-02")]
    assert keys == [f"s/{i:04d}" for i in range(200)]


def test_finalize_refuses_when_a_shard_is_missing(buckets):
    s3 = buckets
    _put_all(s3, {"a": b"1"})
    spec = _spec("2026-12-01")
    take_shard(s3, s3, spec, shard=0)
    with pytest.raises(SnapshotError, match="shard 1 .* has not finished"):
        finalize_snapshot(s3, spec, shard_count=2)
    assert read_summary(s3, STORE, SRC, "2026-12-01") is None


def test_retention_over_40_days_keeps_exactly_the_window(buckets):
    s3 = buckets
    start = date(2026, 10, 1)
    states = {}
    _put_all(s3, {f"doc/{i}": f"day0 {i}".encode() for i in range(6)})
    for day in range(40):
        sid = (start + timedelta(days=day)).isoformat()
        s3.put_object(Bucket=SRC, Key=f"doc/{day % 6}", Body=f"day{day} {day % 6}".encode())
        if day % 7 == 3:
            s3.delete_object(Bucket=SRC, Key=f"doc/{(day + 1) % 6}")
        take_snapshot(s3, s3, _spec(sid, concurrency=4))
        states[sid] = _read_all(s3, SRC)
    cutoff = (start + timedelta(days=40 - 30)).isoformat()  # keep 30 days
    stored_before = len(_read_all(s3, STORE, "data/"))

    preview = expire_snapshots(s3, STORE, SRC, cutoff=cutoff, dry_run=True)
    assert len(preview.expired) == 10 and len(_read_all(s3, STORE, "data/")) == stored_before

    result = expire_snapshots(s3, STORE, SRC, cutoff=cutoff)
    window = sorted(sid for sid in states if sid >= cutoff)
    assert result.kept == window and len(window) == 30
    assert sorted(result.expired) == sorted(set(states) - set(window))
    assert result.swept_objects > 0
    assert len(_read_all(s3, STORE, "data/")) == stored_before - result.swept_objects
    for sid in window:
        target_prefix = f"r/{sid}/"
        restore_snapshot(s3, s3, store_bucket=STORE, source_bucket=SRC, snapshot_id=sid,
                         target_bucket=TARGET, target_prefix=target_prefix, concurrency=4)
        assert _read_all(s3, TARGET, target_prefix) == states[sid], sid
    # re-running retention changes nothing
    again = expire_snapshots(s3, STORE, SRC, cutoff=cutoff)
    assert again.expired == [] and again.swept_objects == 0


def test_retention_always_keeps_the_newest_complete_snapshot(buckets):
    s3 = buckets
    _put_all(s3, {"x": b"1"})
    take_snapshot(s3, s3, _spec("2026-01-01"))
    result = expire_snapshots(s3, STORE, SRC, cutoff="2026-12-01")
    assert result.kept == ["2026-01-01"] and result.expired == []
    restore_snapshot(s3, s3, store_bucket=STORE, source_bucket=SRC, snapshot_id="2026-01-01", target_bucket=TARGET)
    assert _read_all(s3, TARGET) == {"x": b"1"}


def test_retention_in_a_versioned_store_leaves_no_old_version(s3):
    # s3_protection_setup versions the backup bucket: retention must delete every version, or expired
    # manifests (key names) and unreferenced bytes would live on as noncurrent versions
    _bucket(s3, SRC)
    _bucket(s3, STORE, versioned=True)
    _bucket(s3, TARGET, versioned=False)
    _put_all(s3, {"keep": b"k", "gone": b"g1"})
    take_snapshot(s3, s3, _spec("2026-11-01"))
    s3.delete_object(Bucket=SRC, Key="gone")
    take_snapshot(s3, s3, _spec("2026-11-02"))
    result = expire_snapshots(s3, STORE, SRC, cutoff="2026-11-02")
    assert result.expired == ["2026-11-01"] and result.swept_objects == 1

    versions = s3.list_object_versions(Bucket=STORE)
    left = [v["Key"] for v in versions.get("Versions", []) + versions.get("DeleteMarkers", [])]
    assert not [k for k in left if "/2026-11-01/" in k], left
    assert not [k for k in left if k.startswith(f"data/{SRC}/gone/")], left
    assert len(left) == len(set(left))  # one version of everything kept, no delete markers
    restore_snapshot(s3, s3, store_bucket=STORE, source_bucket=SRC, snapshot_id="2026-11-02", target_bucket=TARGET)
    assert _read_all(s3, TARGET) == {"keep": b"k"}
