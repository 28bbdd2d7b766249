"""s3_file_recovery and s3_bulk_recovery end to end with dag.test() against the moto server.

Each test builds a timeline of puts/overwrites/deletes in ticks >= 1.1 s apart (S3 timestamps have
one-second resolution) and recovers to a T taken from the LastModified values S3 returned, then checks
the buckets key by key and by checksum — and the report in the compliance bucket."""

from __future__ import annotations

import hashlib
import json
import random
from datetime import UTC, datetime, timedelta

import pytest

from dataprotection.listing import iso
from dataprotection.reports import report_key
from dataprotection.snapshot import SnapshotSpec, take_snapshot
from devstack.seed import create_buckets
from tests.unit.test_pointintime import Timeline, live, version_count

pytestmark = pytest.mark.airflow


@pytest.fixture
def buckets(s3, s3_backup, plan):
    create_buckets(plan, s3, s3_backup)
    return plan.bucket_names[0]


def _report(s3, plan, kind: str, run_id: str) -> dict:
    return json.loads(s3.get_object(Bucket=plan.compliance_bucket, Key=report_key(kind, run_id))["Body"].read())


def _checksums(objects: dict[str, bytes], strip: str = "") -> dict[str, str]:
    return {k.removeprefix(strip): hashlib.sha256(v).hexdigest() for k, v in objects.items()}


FILE_DEFAULTS = {"mode": "latest", "version_id": None, "as_of": None, "source": "versions",
                 "destination": "recovery_prefix", "recovery_prefix": "recovered/"}
BULK_DEFAULTS = {"source": "versions", "destination": "in_place", "target_bucket": None, "target_prefix": None,
                 "delete_newer": False, "dry_run": True}


def test_file_recovery_exact_key_versions_and_delete_markers(run_dag, s3, plan, buckets):
    from dags.s3_file_recovery import dag as file_dag

    def dag_run(**conf):  # every param given: dag.test() keeps values resolved by a previous run
        return run_dag(file_dag, conf={**FILE_DEFAULTS, **conf})

    bucket = buckets
    tl = Timeline(s3, bucket)
    tl.tick({"docs/a.txt": b"a v1", "docs/a.txt.bak": b"bak v1", "docs/gone.txt": b"gone v1"})
    t = tl.tick({"docs/a.txt": b"a v2 (state at T)"}, deletes=["docs/gone.txt"])
    tl.tick({"docs/a.txt": b"a v3 corrupted", "docs/a.txt.bak": b"bak v2: what the runbook's --prefix restored"})
    as_of = iso(tl.as_of(t))
    v1_id, v2_id = tl.version_ids[0][0], tl.version_ids[1][0]

    # as of T, in place: a.txt gets its T content back as a new current version; a.txt.bak is not touched
    run = dag_run(bucket=bucket, key="docs/a.txt", mode="as_of", as_of=as_of, destination="in_place")
    assert run.state == "success", run.failed()
    head = s3.head_object(Bucket=bucket, Key="docs/a.txt")
    assert s3.get_object(Bucket=bucket, Key="docs/a.txt")["Body"].read() == b"a v2 (state at T)"
    assert head["VersionId"] not in (v1_id, v2_id)
    assert live(s3, bucket, "docs/a.txt.bak") == {"docs/a.txt.bak": b"bak v2: what the runbook's --prefix restored"}
    assert version_count(s3, bucket, "docs/a.txt") == 4 + 2  # a.txt: 3 + the restored one; a.txt.bak: 2
    report = _report(s3, plan, "file-recovery", run.run_id)
    assert report["status"] == "found" and report["restored"]["action"] == "restored"
    assert report["resolution"]["origin"]["source_version_id"] == v2_id
    assert report["restored"]["new_version_id"] == head["VersionId"]
    assert report["restored"]["size"] == len(b"a v2 (state at T)")
    assert report["restored"]["checksum"].startswith("sha256:")

    # a key deleted before T did not exist at T: reported, never resurrected
    gone = dag_run(bucket=bucket, key="docs/gone.txt", mode="as_of", as_of=as_of, destination="in_place")
    assert gone.state == "success", gone.failed()
    assert "docs/gone.txt" not in live(s3, bucket, "docs/")
    assert version_count(s3, bucket, "docs/gone.txt") == 2
    report = _report(s3, plan, "file-recovery", gone.run_id)
    assert report["status"] == "did_not_exist" and report["reason"].startswith(f"did not exist at {as_of}")
    assert report["restored"]["action"] == "none"

    # a given version into the recovery prefix
    old = dag_run(bucket=bucket, key="docs/a.txt", mode="version", version_id=v1_id)
    assert old.state == "success", old.failed()
    assert live(s3, bucket, "recovered/") == {"recovered/docs/a.txt": b"a v1"}
    assert _report(s3, plan, "file-recovery", old.run_id)["restored"]["size"] == 4


def _random_timeline(tl: Timeline, rng: random.Random, keys: list[str], outside: list[str], ticks: int,
                     hot: str) -> None:
    """Random puts/overwrites/deletes; `hot` is overwritten in every tick (many versions before T)."""
    tl.tick({k: f"{k} @0".encode() for k in keys[: len(keys) * 2 // 3] + outside + [hot]})
    for n in range(1, ticks):
        puts, deletes = {hot: f"{hot} @{n}".encode()}, []
        for key in keys + outside:
            roll = rng.random()
            if key in tl.model and roll < 0.25:
                deletes.append(key)
            elif roll > 0.55:
                puts[key] = f"{key} @{n} {rng.random()}".encode()
        tl.tick(puts, deletes)


def test_bulk_recovery_in_place_makes_the_prefix_equal_to_the_state_at_t(run_dag, s3, plan, buckets):
    from dags.s3_bulk_recovery import dag

    bucket, prefix = buckets, "user-uploads/u7/"
    folders = ["", "", "docs/", "docs/2026/", "a/b/c/d/", "with space/ü+plus/"]
    keys = [f"{prefix}{folders[i % len(folders)]}file-{i:02d}.txt" for i in range(24)]
    outside = ["user-uploads/u77/x.txt", "user-uploads/u7.txt", "user-uploads/u7-other/y.txt"]
    tl = Timeline(s3, bucket)
    _random_timeline(tl, random.Random(20261203), keys, outside, ticks=5, hot=prefix + "hot.txt")
    t = 2
    as_of = iso(tl.as_of(t))
    at_t, final = tl.state(t, prefix), tl.states[-1]
    expected = {
        "restore": sum(1 for k in at_t if final.get(k) != at_t[k]),
        "unchanged": sum(1 for k in at_t if final.get(k) == at_t[k]),
        "delete": sum(1 for k in final if k.startswith(prefix) and k not in at_t),
    }
    deleted_by_t = {k for state in tl.states[:t] for k in state if k.startswith(prefix)} - set(at_t)
    assert expected["restore"] and expected["delete"], "a varied timeline"
    assert deleted_by_t and any(k not in final for k in at_t), "deletions before and after T"

    conf = {**BULK_DEFAULTS, "bucket": bucket, "prefix": prefix, "as_of": as_of, "delete_newer": True}
    dry = run_dag(dag, conf=conf)  # dry_run: true
    assert dry.state == "success", dry.failed()
    assert live(s3, bucket) == final, "a dry run changes nothing"
    report = _report(s3, plan, "bulk-recovery", dry.run_id)
    assert report["dry_run"] is True
    assert {k: report["counts"][k] for k in expected} == expected

    real = run_dag(dag, conf={**conf, "dry_run": False})
    assert real.state == "success", real.failed()
    assert _checksums(live(s3, bucket, prefix)) == _checksums(at_t), "the prefix is exactly its state at T"
    assert {k: v for k, v in live(s3, bucket).items() if not k.startswith(prefix)} == \
        {k: v for k, v in final.items() if not k.startswith(prefix)}, "keys outside the prefix are untouched"
    report = _report(s3, plan, "bulk-recovery", real.run_id)
    assert {k: report["counts"][k] for k in expected} == expected and report["counts"]["failed"] == 0
    assert report["keys"] == len(set(at_t) | {k for v in tl.states for k in v if k.startswith(prefix)})
    assert 0 < len(report["sample"]) <= 50
    hot = next(d for d in report["sample"] if d["key"] == prefix + "hot.txt")
    assert hot["action"] == "restore" and hot["version_last_modified"] == as_of  # the newest at T, not the oldest

    versions = version_count(s3, bucket)
    again = run_dag(dag, conf={**conf, "dry_run": False})
    assert again.state == "success", again.failed()
    assert version_count(s3, bucket) == versions, "re-running changes nothing"


def test_snapshot_source_gives_the_same_result_as_versions(run_dag, s3, plan, buckets):
    from dags.s3_bulk_recovery import dag

    bucket, prefix, backup = buckets, "user-uploads/u8/", plan.backup.bucket
    keys = [f"{prefix}{d}f{i}.bin" for i, d in enumerate(["", "x/", "x/y/", "z z/"] * 4)]
    tl = Timeline(s3, bucket)
    rng = random.Random(8)
    tl.tick({k: f"{k} v0".encode() for k in keys[:12]})
    today = datetime.now(UTC).date()
    take_snapshot(s3, s3, SnapshotSpec(bucket, backup, (today - timedelta(days=1)).isoformat(),
                                       logical_time=f"{today - timedelta(days=1)}T02:00:00Z"))
    t = tl.tick({k: f"{k} v1 {rng.random()}".encode() for k in keys[4:16]}, deletes=keys[:2])
    as_of = tl.as_of(t)
    # the daily snapshot covering T (taken after tick t, before anything else changed)
    take_snapshot(s3, s3, SnapshotSpec(bucket, backup, today.isoformat(), logical_time=iso(as_of)))
    tl.tick({k: f"{k} v2".encode() for k in keys[::3] if k not in keys[:2]}, deletes=[keys[5], keys[7]])

    base = {**BULK_DEFAULTS, "bucket": bucket, "prefix": prefix, "as_of": iso(as_of), "dry_run": False}
    from_versions = run_dag(dag, conf={**base, "source": "versions", "destination": "other_location",
                                       "target_prefix": "recovered/"})
    assert from_versions.state == "success", from_versions.failed()
    from_snapshot = run_dag(dag, conf={**base, "source": "snapshot", "destination": "in_place",
                                       "delete_newer": True})
    assert from_snapshot.state == "success", from_snapshot.failed()

    expected = _checksums(tl.state(t, prefix))
    assert _checksums(live(s3, bucket, "recovered/" + prefix), strip="recovered/") == expected
    assert _checksums(live(s3, bucket, prefix)) == expected
    report = _report(s3, plan, "bulk-recovery", from_snapshot.run_id)
    assert report["request"]["snapshot_id"] == today.isoformat()
    assert report["request"]["snapshot_time"] == iso(as_of)


def test_bulk_recovery_refuses_to_overwrite_its_source(run_dag, s3, plan, buckets):
    from dags.s3_bulk_recovery import dag

    s3.put_object(Bucket=buckets, Key="user-uploads/u9/a.txt", Body=b"a")
    run = run_dag(dag, conf={**BULK_DEFAULTS, "bucket": buckets, "prefix": "user-uploads/u9/",
                             "as_of": iso(datetime.now(UTC)), "destination": "other_location", "dry_run": False})
    assert run.state == "failed"
    assert run.tasks == {"check_request": "failed", "recover_prefix": "upstream_failed"}
