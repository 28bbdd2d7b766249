"""The dev stack's replication emulator (devstack.replication) against the moto server.

The emulator stands in for S3 cross-region replication, which moto does not do: DAG tests that
check replicas, cross-region recovery and DR drills rely on it doing what S3 would do.
"""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError

from dataprotection.config import parse_plan
from dataprotection.s3client import make_client
from devstack.replication import SOURCE_VERSION_META, ReplicationEmulator
from devstack.seed import create_buckets


@pytest.fixture(scope="module")
def _session():
    return boto3.session.Session()


# The harness's `s3` / `s3_backup`, but from one boto3 session for the module: a client from a fresh
# session costs ~0.3 s (model loading), which adds up over many short tests.
@pytest.fixture
def s3(s3_endpoint, plan, _session):
    return make_client(plan.regions.primary, endpoint_url=s3_endpoint, session=_session)


@pytest.fixture
def s3_backup(s3_endpoint, plan, _session):
    return make_client(plan.regions.backup, endpoint_url=s3_endpoint, session=_session)


@pytest.fixture
def buckets(plan, s3, s3_backup):
    create_buckets(plan, s3, s3_backup)
    return plan


def _emulator(plan, s3_endpoint, **kwargs) -> ReplicationEmulator:
    return ReplicationEmulator(plan, endpoint_url=s3_endpoint, **kwargs)


def _uploads(plan):
    """The uploads bucket: replicated under `user-uploads/` only."""
    b = plan.source_buckets[0]
    assert b.replication.prefixes == ["user-uploads/"], "the tests assume the shipped plan"
    return b


def _profile(plan):
    """The profile bucket: everything replicated (prefix "")."""
    b = plan.source_buckets[1]
    assert b.replication.prefixes == [""], "the tests assume the shipped plan"
    return b


def _body(client, bucket, key, **kwargs) -> bytes:
    return client.get_object(Bucket=bucket, Key=key, **kwargs)["Body"].read()


def _versions(client, bucket, prefix=""):
    """(versions, delete markers) of a bucket, as S3 lists them (newest first per key)."""
    versions, markers = [], []
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        versions += page.get("Versions", [])
        markers += page.get("DeleteMarkers", [])
    return versions, markers


def _state(client, bucket):
    """Everything observable about a bucket's versions (ids, keys, etags, latest flags)."""
    versions, markers = _versions(client, bucket)
    return sorted(
        (v["Key"], v["VersionId"], v.get("ETag", "-"), v["IsLatest"], "ETag" not in v) for v in versions + markers
    )


def _current(client, bucket, key) -> bytes | None:
    """Bytes of the current version, None when the key is deleted (or never existed)."""
    try:
        return _body(client, bucket, key)
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "NoSuchKey"
        return None


def _all_replicas_state(plan, s3_backup):
    return {b.replica: _state(s3_backup, b.replica) for b in plan.source_buckets}


def _assert_replica_matches(plan, s3, s3_backup, keys):
    """The replica's current state of each key equals the source's."""
    for b in plan.source_buckets:
        for key in keys.get(b.name, ()):
            assert _current(s3_backup, b.replica, key) == _current(s3, b.name, key), (b.name, key)


# --------------------------------------------------------------------------- versions
def test_new_versions_are_replicated_with_same_bytes_and_storage_class(buckets, s3, s3_backup, s3_endpoint):
    up = _uploads(buckets)
    key = "user-uploads/u1/menu.pdf"
    src_ids = [s3.put_object(Bucket=up.name, Key=key, Body=f"version {i}".encode())["VersionId"] for i in range(3)]

    assert _emulator(buckets, s3_endpoint).run_once() == 3

    replica_versions, markers = _versions(s3_backup, up.replica)
    assert markers == []
    assert len(replica_versions) == 3
    by_source = {}
    for v in replica_versions:
        head = s3_backup.head_object(Bucket=up.replica, Key=key, VersionId=v["VersionId"])
        assert head["StorageClass"] == up.replication.storage_class == "STANDARD_IA"
        by_source[head["Metadata"][SOURCE_VERSION_META]] = v["VersionId"]
    assert set(by_source) == set(src_ids)
    for src_id, dst_id in by_source.items():
        assert _body(s3_backup, up.replica, key, VersionId=dst_id) == _body(s3, up.name, key, VersionId=src_id)
    # replicated oldest first: the replica's current version is the source's current one
    latest = next(v for v in replica_versions if v["IsLatest"])
    assert latest["VersionId"] == by_source[src_ids[-1]]
    assert _body(s3_backup, up.replica, key) == b"version 2"


def test_content_type_metadata_and_empty_objects_are_kept(buckets, s3, s3_backup, s3_endpoint):
    prof = _profile(buckets)
    s3.put_object(Bucket=prof.name, Key="avatars/u1.png", Body=b"png", ContentType="image/png",
                  Metadata={"owner": "u1"}, CacheControl="max-age=60")
    s3.put_object(Bucket=prof.name, Key="empty.txt", Body=b"")
    assert _emulator(buckets, s3_endpoint).run_once() == 2
    head = s3_backup.head_object(Bucket=prof.replica, Key="avatars/u1.png")
    assert (head["ContentType"], head["Metadata"]["owner"], head["CacheControl"]) == ("image/png", "u1", "max-age=60")
    assert head["StorageClass"] == prof.replication.storage_class
    assert _body(s3_backup, prof.replica, "empty.txt") == b""


def test_current_version_follows_overwrites_including_same_second(buckets, s3, s3_backup, s3_endpoint):
    up = _uploads(buckets)
    key = "user-uploads/u2/price list.csv"
    emulator = _emulator(buckets, s3_endpoint)
    expected_versions = 0
    for burst in range(3):
        # several overwrites within the same second (moto's LastModified has 1 s resolution)
        for i in range(burst + 2):
            s3.put_object(Bucket=up.name, Key=key, Body=f"burst {burst} write {i}".encode())
        expected_versions += burst + 2
        assert emulator.run_once() == burst + 2
        newest = f"burst {burst} write {burst + 1}".encode()
        assert _body(s3_backup, up.replica, key) == _body(s3, up.name, key) == newest
    versions, _ = _versions(s3_backup, up.replica)
    assert len(versions) == expected_versions


def test_each_bucket_replicates_into_its_own_replica_only(buckets, s3, s3_backup, s3_endpoint):
    up, prof = _uploads(buckets), _profile(buckets)
    s3.put_object(Bucket=up.name, Key="user-uploads/u1/a.txt", Body=b"a")
    s3.put_object(Bucket=prof.name, Key="avatars/u1.png", Body=b"p")
    assert _emulator(buckets, s3_endpoint).run_once() == 2
    assert [v["Key"] for v in _versions(s3_backup, up.replica)[0]] == ["user-uploads/u1/a.txt"]
    assert [v["Key"] for v in _versions(s3_backup, prof.replica)[0]] == ["avatars/u1.png"]
    reports = buckets.source_buckets[2]
    assert _versions(s3_backup, reports.replica) == ([], [])


# --------------------------------------------------------------------------- prefixes
def test_keys_outside_the_rule_prefixes_are_not_replicated(buckets, s3, s3_backup, s3_endpoint):
    up = _uploads(buckets)
    s3.put_object(Bucket=up.name, Key="temp/x", Body=b"temporary")
    s3.put_object(Bucket=up.name, Key="user-uploads", Body=b"not under the prefix")  # prefix without '/'
    s3.put_object(Bucket=up.name, Key="user-uploads/u1/kept.txt", Body=b"kept")

    assert _emulator(buckets, s3_endpoint).run_once() == 1

    assert [v["Key"] for v in _versions(s3_backup, up.replica)[0]] == ["user-uploads/u1/kept.txt"]
    assert _current(s3_backup, up.replica, "temp/x") is None


# --------------------------------------------------------------------------- delete markers
def test_delete_marker_is_replicated_when_the_rule_says_so(buckets, s3, s3_backup, s3_endpoint):
    up = _uploads(buckets)
    assert up.replication.delete_markers is True
    key = "user-uploads/u1/old.docx"
    s3.put_object(Bucket=up.name, Key=key, Body=b"old")
    emulator = _emulator(buckets, s3_endpoint)
    assert emulator.run_once() == 1
    s3.delete_object(Bucket=up.name, Key=key)

    assert emulator.run_once() == 1

    with pytest.raises(ClientError) as exc:
        s3_backup.get_object(Bucket=up.replica, Key=key)
    assert exc.value.response["Error"]["Code"] == "NoSuchKey"
    versions, markers = _versions(s3_backup, up.replica)
    assert len(versions) == 1 and not versions[0]["IsLatest"], "the replicated version stays, hidden"
    assert len(markers) == 1 and markers[0]["IsLatest"] and markers[0]["Key"] == key


def _plan_without_delete_marker_replication(plan):
    data = plan.model_dump()
    for b in data["source_buckets"]:
        b["replication"]["delete_markers"] = False
    return parse_plan(data)


def test_delete_marker_is_not_replicated_when_the_rule_says_no(buckets, s3, s3_backup, s3_endpoint):
    plan = _plan_without_delete_marker_replication(buckets)
    up = _uploads(plan)
    assert up.replication.delete_markers is False
    key = "user-uploads/u1/kept-in-replica.docx"
    s3.put_object(Bucket=up.name, Key=key, Body=b"data")
    emulator = _emulator(plan, s3_endpoint)
    assert emulator.run_once() == 1
    s3.delete_object(Bucket=up.name, Key=key)

    assert emulator.run_once() == 0, "a delete marker that is not replicated is not counted"
    assert emulator.run_once() == 0
    assert _emulator(plan, s3_endpoint).run_once() == 0, "nor after a restart"

    assert _current(s3, up.name, key) is None
    assert _body(s3_backup, up.replica, key) == b"data"
    assert _versions(s3_backup, up.replica)[1] == []
    # a later version still replicates and becomes current
    s3.put_object(Bucket=up.name, Key=key, Body=b"again")
    assert emulator.run_once() == 1
    assert _body(s3_backup, up.replica, key) == b"again"


def _history(s3, up):
    """A key replaced, a key deleted, a key deleted and re-created, a key deleted twice around a re-creation."""
    k = {n: f"user-uploads/u1/{n}.txt" for n in ("replaced", "deleted", "recreated", "flapping")}
    for key in k.values():
        s3.put_object(Bucket=up.name, Key=key, Body=b"first " + key.encode())
    s3.put_object(Bucket=up.name, Key=k["replaced"], Body=b"second")
    for name in ("deleted", "recreated", "flapping"):
        s3.delete_object(Bucket=up.name, Key=k[name])
    s3.put_object(Bucket=up.name, Key=k["recreated"], Body=b"re-created")
    s3.put_object(Bucket=up.name, Key=k["flapping"], Body=b"back")
    s3.delete_object(Bucket=up.name, Key=k["flapping"])
    return list(k.values())


def _timeline(client, bucket, key):
    """`key`'s history oldest first: ("put", bytes) / ("delete", None), read one listing entry per page
    (the only way to see how versions and delete markers interleave within moto's 1 s timestamps)."""
    newest_first, kwargs = [], {"Bucket": bucket, "Prefix": key, "MaxKeys": 1}
    while True:
        page = client.list_object_versions(**kwargs)
        for v in page.get("Versions", []):
            if v["Key"] == key:
                newest_first.append(("put", _body(client, bucket, key, VersionId=v["VersionId"])))
        newest_first += [("delete", None) for m in page.get("DeleteMarkers", []) if m["Key"] == key]
        if not page.get("IsTruncated"):
            return newest_first[::-1]
        kwargs.update(KeyMarker=page["NextKeyMarker"], VersionIdMarker=page["NextVersionIdMarker"])


def test_replica_history_equals_source_history_within_the_same_second(buckets, s3, s3_backup, s3_endpoint):
    up = _uploads(buckets)
    keys = _history(s3, up)

    assert _emulator(buckets, s3_endpoint).run_once() == 11

    for key in keys:
        assert _timeline(s3_backup, up.replica, key) == _timeline(s3, up.name, key), key
    _assert_replica_matches(buckets, s3, s3_backup, {up.name: keys})
    assert _current(s3_backup, up.replica, keys[2]) == b"re-created"


# --------------------------------------------------------------------------- runs, gaps, restarts
def test_second_run_with_nothing_new_changes_nothing(buckets, s3, s3_backup, s3_endpoint):
    up, prof = _uploads(buckets), _profile(buckets)
    s3.put_object(Bucket=up.name, Key="user-uploads/u1/a", Body=b"a")
    s3.put_object(Bucket=up.name, Key="user-uploads/u1/b", Body=b"b")
    s3.delete_object(Bucket=up.name, Key="user-uploads/u1/b")
    s3.put_object(Bucket=prof.name, Key="logos/u1.png", Body=b"logo")
    emulator = _emulator(buckets, s3_endpoint)
    assert emulator.run_once() == 4
    before = _all_replicas_state(buckets, s3_backup)

    assert emulator.run_once() == 0

    assert _all_replicas_state(buckets, s3_backup) == before


def test_replication_gap_is_filled_by_the_next_run(buckets, s3, s3_backup, s3_endpoint):
    up = _uploads(buckets)
    emulator = _emulator(buckets, s3_endpoint)
    assert emulator.run_once() == 0
    key = "user-uploads/u3/during-the-gap.txt"
    s3.put_object(Bucket=up.name, Key=key, Body=b"written while replication was paused")

    # paused: not calling run_once
    assert _current(s3_backup, up.replica, key) is None

    assert emulator.run_once() == 1
    assert _body(s3_backup, up.replica, key) == b"written while replication was paused"


@pytest.mark.parametrize("with_state_file", [False, True], ids=["scan-replica", "state-file"])
def test_restart_does_not_replicate_again(buckets, s3, s3_backup, s3_endpoint, tmp_path, with_state_file):
    up = _uploads(buckets)
    state_file = tmp_path / "replication-state.json" if with_state_file else None
    keys = _history(s3, up)
    assert _emulator(buckets, s3_endpoint, state_file=state_file).run_once() == 11
    _assert_replica_matches(buckets, s3, s3_backup, {up.name: keys})
    before = _all_replicas_state(buckets, s3_backup)

    restarted = _emulator(buckets, s3_endpoint, state_file=state_file)
    assert restarted.run_once() == 0

    assert _all_replicas_state(buckets, s3_backup) == before
    _assert_replica_matches(buckets, s3, s3_backup, {up.name: keys})
    assert _current(s3_backup, up.replica, keys[2]) == b"re-created", "an old delete marker was replayed"


@pytest.mark.parametrize("with_state_file", [False, True], ids=["scan-replica", "state-file"])
def test_restart_picks_up_what_happened_while_stopped(buckets, s3, s3_backup, s3_endpoint, tmp_path, with_state_file):
    up = _uploads(buckets)
    state_file = tmp_path / "replication-state.json" if with_state_file else None
    a, b = "user-uploads/u1/a.txt", "user-uploads/u1/b.txt"
    s3.put_object(Bucket=up.name, Key=a, Body=b"a1")
    s3.put_object(Bucket=up.name, Key=b, Body=b"b1")
    s3.delete_object(Bucket=up.name, Key=b)
    assert _emulator(buckets, s3_endpoint, state_file=state_file).run_once() == 3
    # while the emulator is down: a deleted, b re-created
    s3.delete_object(Bucket=up.name, Key=a)
    s3.put_object(Bucket=up.name, Key=b, Body=b"b2")

    assert _emulator(buckets, s3_endpoint, state_file=state_file).run_once() == 2

    assert _current(s3_backup, up.replica, a) is None
    assert _current(s3_backup, up.replica, b) == b"b2"
    assert _emulator(buckets, s3_endpoint, state_file=state_file).run_once() == 0


def test_missing_replica_bucket_is_skipped_until_it_exists(plan, s3, s3_backup, s3_endpoint):
    up = _uploads(plan)
    create_buckets(plan, s3, s3_backup)
    s3_backup.delete_bucket(Bucket=up.replica)
    s3.put_object(Bucket=up.name, Key="user-uploads/u1/a.txt", Body=b"a")
    emulator = _emulator(plan, s3_endpoint)
    assert emulator.run_once() == 0
    create_buckets(plan, s3, s3_backup)
    assert emulator.run_once() == 1
    assert _body(s3_backup, up.replica, "user-uploads/u1/a.txt") == b"a"


def test_unreadable_source_version_does_not_stop_replication(buckets, s3, s3_backup, s3_endpoint):
    """A DEEP_ARCHIVE source object cannot be copied from moto before a restore: skip it, go on."""
    up = _uploads(buckets)
    s3.put_object(Bucket=up.name, Key="user-uploads/u1/archived.bin", Body=b"cold", StorageClass="DEEP_ARCHIVE")
    s3.put_object(Bucket=up.name, Key="user-uploads/u1/warm.bin", Body=b"warm")
    emulator = _emulator(buckets, s3_endpoint)
    assert emulator.run_once() == 1
    assert _body(s3_backup, up.replica, "user-uploads/u1/warm.bin") == b"warm"
    assert emulator.run_once() == 0


# --------------------------------------------------------------------------- awkward keys
AWKWARD_NAMES = [
    "with space.txt",
    "Résumé final – 2026 ✓.pdf",
    "日本語/ファイル.txt",
    "price list+2026.csv",
    "100% done%2F%20.txt",
    "a.txt",
    "a.txt.bak",
    "question?mark&amp=1#frag",
]


def test_keys_with_spaces_unicode_plus_and_percent(buckets, s3, s3_backup, s3_endpoint):
    up, prof = _uploads(buckets), _profile(buckets)
    written = {
        up.name: [f"user-uploads/u1/{name}" for name in AWKWARD_NAMES],
        prof.name: [" leading space", "trailing space ", "a+b", "50%"],
    }
    for bucket, keys in written.items():
        for key in keys:
            s3.put_object(Bucket=bucket, Key=key, Body=key.encode())

    assert _emulator(buckets, s3_endpoint).run_once() == len(AWKWARD_NAMES) + 4

    for b in (up, prof):
        assert sorted(v["Key"] for v in _versions(s3_backup, b.replica)[0]) == sorted(written[b.name])
        for key in written[b.name]:
            assert _body(s3_backup, b.replica, key) == key.encode()
    # deleting an awkward key replicates too, and only that key ('a.txt' is a prefix of 'a.txt.bak')
    s3.delete_object(Bucket=up.name, Key="user-uploads/u1/price list+2026.csv")
    s3.delete_object(Bucket=up.name, Key="user-uploads/u1/a.txt")
    assert _emulator(buckets, s3_endpoint).run_once() == 2
    _assert_replica_matches(buckets, s3, s3_backup, written)
    assert _body(s3_backup, up.replica, "user-uploads/u1/a.txt.bak") == b"user-uploads/u1/a.txt.bak"
