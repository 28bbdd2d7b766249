"""Archive snapshots (Deep Archive data, readable manifests) and idempotent restore requests."""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from botocore.exceptions import ClientError

from dataprotection.archive import ArchiveRestoreError, check_restores, request_restores, snapshot_locations
from dataprotection.restore import restore_snapshot
from dataprotection.snapshot import SnapshotSpec, iter_manifest, read_summary, take_snapshot

SRC, ARCHIVE, TARGET = "live-bucket", "archive-bucket", "recovered-bucket"
REGION = "eu-central-1"


def _bucket(s3, name, versioned=True):
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
    if versioned:
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})


def _spec(sid):
    return SnapshotSpec(SRC, ARCHIVE, sid, kind="weekly", storage_class="DEEP_ARCHIVE", concurrency=8)


class Ops:
    def __init__(self, client):
        self.n: Counter[str] = Counter()
        self._lock = threading.Lock()
        client.meta.events.register("before-call.s3.*", self._count)

    def _count(self, model, **_):
        with self._lock:
            self.n[model.name] += 1


def test_weekly_archive_is_incremental_and_unreadable_until_restored(s3, s3_endpoint):
    _bucket(s3, SRC)
    _bucket(s3, ARCHIVE, versioned=False)
    _bucket(s3, TARGET)
    objects = {f"docs/{i}.txt": f"week one {i}".encode() for i in range(12)}
    for k, v in objects.items():
        s3.put_object(Bucket=SRC, Key=k, Body=v)
    first = take_snapshot(s3, s3, _spec("2026-W48"))
    assert first["copied"] == 12
    s3.put_object(Bucket=SRC, Key="docs/3.txt", Body=b"week two")
    objects["docs/3.txt"] = b"week two"
    second = take_snapshot(s3, s3, _spec("2026-W49"))
    assert (second["copied"], second["skipped"], second["objects"]) == (1, 11, 12)

    # manifests and summaries are instantly readable; object data is in DEEP_ARCHIVE and is not
    assert read_summary(s3, ARCHIVE, SRC, "2026-W49")["storage_class"] == "DEEP_ARCHIVE"
    entries = list(iter_manifest(s3, ARCHIVE, SRC, "2026-W49"))
    assert len(entries) == 12
    stored = s3.head_object(Bucket=ARCHIVE, Key=entries[0].location)
    assert stored["StorageClass"] == "DEEP_ARCHIVE"
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket=ARCHIVE, Key=entries[0].location)
    assert info.value.response["Error"]["Code"] == "InvalidObjectState"

    # restore requests, then the snapshot copies back exactly
    status = request_restores(s3, ARCHIVE, snapshot_locations(s3, ARCHIVE, SRC, "2026-W49"), days=2)
    assert status.requested == 12 and not status.missing
    assert check_restores(s3, ARCHIVE, snapshot_locations(s3, ARCHIVE, SRC, "2026-W49")).complete
    restore_snapshot(s3, s3, store_bucket=ARCHIVE, source_bucket=SRC, snapshot_id="2026-W49", target_bucket=TARGET)
    got = {k: s3.get_object(Bucket=TARGET, Key=k)["Body"].read() for k in objects}
    assert got == objects


def test_restore_requests_are_idempotent_over_1000_objects(s3, s3_endpoint):
    _bucket(s3, ARCHIVE, versioned=False)
    keys = [f"data/{i:04d}" for i in range(1000)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=ARCHIVE, Key=k, Body=b"x", StorageClass="DEEP_ARCHIVE"), keys))
    ops = Ops(s3)
    first = request_restores(s3, ARCHIVE, keys, days=3, tier="Bulk")
    assert (first.requested, first.total) == (1000, 1000)
    assert ops.n["RestoreObject"] == 1000
    ops.n.clear()
    second = request_restores(s3, ARCHIVE, keys, days=3, tier="Bulk")
    assert ops.n["RestoreObject"] == 0, "already restored objects must not be requested again"
    assert (second.requested, second.restored) == (0, 1000)


def test_in_progress_restores_are_not_requested_again(s3, s3_endpoint):
    _bucket(s3, ARCHIVE, versioned=False)
    # moto: a key's restore state advances every `seconds`, counted from its creation (None, then
    # IN_PROGRESS, then RESTORED): create, wait one period, and the restore stays pending one more period.
    transition = {"model_name": "s3::keyrestore", "transition": {"progression": "time", "seconds": 4}}
    requests.post(f"{s3_endpoint}/moto-api/state-manager/set-transition", json=transition, timeout=5).raise_for_status()
    for i in range(5):
        s3.put_object(Bucket=ARCHIVE, Key=f"k{i}", Body=b"y", StorageClass="DEEP_ARCHIVE")
    keys = [f"k{i}" for i in range(5)]
    time.sleep(4.2)
    assert request_restores(s3, ARCHIVE, keys).requested == 5
    ops = Ops(s3)
    again = request_restores(s3, ARCHIVE, keys)
    assert (again.requested, again.in_progress, ops.n["RestoreObject"]) == (0, 5, 0)
    assert not check_restores(s3, ARCHIVE, keys).complete
    time.sleep(4.2)
    assert check_restores(s3, ARCHIVE, keys).complete


def test_expedited_is_refused_for_deep_archive_before_any_request(s3, s3_endpoint):
    ops = Ops(s3)
    with pytest.raises(ArchiveRestoreError, match="tier: 'Expedited' is not available for DEEP_ARCHIVE"):
        request_restores(s3, ARCHIVE, ["k"], tier="Expedited", storage_class="DEEP_ARCHIVE")
    with pytest.raises(ArchiveRestoreError, match="restore_days: 0"):
        request_restores(s3, ARCHIVE, ["k"], days=0)
    assert sum(ops.n.values()) == 0


def test_missing_archived_objects_are_reported(s3, s3_endpoint):
    _bucket(s3, ARCHIVE, versioned=False)
    s3.put_object(Bucket=ARCHIVE, Key="present", Body=b"z", StorageClass="DEEP_ARCHIVE")
    status = request_restores(s3, ARCHIVE, ["present", "gone"])
    assert status.missing == ["gone"] and status.requested == 1 and not status.complete
