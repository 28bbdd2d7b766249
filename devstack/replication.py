"""Replication emulator for the dev stack and tests (NOT production code).

The moto server stores a bucket's replication configuration but never replicates. This emulator
does what S3 cross-region replication would do for the plan's source buckets: every new object
version under a replicated prefix is copied to the replica bucket (in the backup region, with the
rule's storage class), oldest first so the replica's current version matches the source's; a delete
marker is replicated as a delete marker when the rule says so. Each replica version carries the
source version id in its metadata (`x-amz-meta-replication-source-version-id`) because moto cannot
keep S3's "same version id" property; that is also how the emulator knows what it already did.
Delete markers carry no metadata: what was done is kept in memory and, with `state_file`, on disk;
without a state file a restarted emulator counts the replica's delete markers per key and takes the
source's that many oldest markers of that key as done (replication keeps the source's order), so an
old delete marker is never replayed over a newer version. Like S3, a version that cannot be copied
(gone since the listing, or in an archive tier) is skipped with a warning, and permanent deletions
of versions are not replicated.

Use `ReplicationEmulator.run_once()` in tests (pause = simply don't call it), or
`python -m devstack.replication --loop` in the dev stack (a file named `replication.paused` in the
state directory pauses the loop).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import boto3
from botocore.exceptions import ClientError

from dataprotection.config import Plan, load_plan
from dataprotection.s3client import make_client

log = logging.getLogger("devstack.replication")
SOURCE_VERSION_META = "replication-source-version-id"
DELETE_MARKER_META = "replication-delete-marker"
# a source version that cannot be copied: gone since it was listed, or not readable (archive tier)
_SKIPPABLE = {"NoSuchKey", "NoSuchVersion", "404", "InvalidObjectState", "ObjectNotInActiveTierError"}


_SESSION_LOCK = threading.Lock()


@cache
def _session() -> boto3.session.Session:
    """One boto3 session for all emulators: a client from a fresh session costs ~300 ms (model loading)."""
    return boto3.session.Session()


@dataclass(frozen=True)
class Rule:
    source: str
    replica: str
    prefixes: tuple[str, ...]
    storage_class: str
    delete_markers: bool


def rules_from_plan(plan: Plan) -> list[Rule]:
    return [
        Rule(b.name, b.replica, tuple(b.replication.prefixes), b.replication.storage_class,
             b.replication.delete_markers)
        for b in plan.source_buckets
        if b.replica
    ]


class ReplicationEmulator:
    def __init__(self, plan: Plan, endpoint_url: str | None = None, state_file: Path | None = None) -> None:
        self.rules = rules_from_plan(plan)
        with _SESSION_LOCK:  # a boto3 session is not thread-safe; its clients are
            self.src = make_client(plan.regions.primary, endpoint_url=endpoint_url, session=_session())
            self.dst = make_client(plan.regions.backup, endpoint_url=endpoint_url, session=_session())
        self.state_file = state_file
        self._done: dict[str, set[str]] = self._load_state()

    def run_once(self) -> int:
        """Replicate everything pending; return the number of versions/markers replicated."""
        before = sum(len(v) for v in self._done.values())
        count = sum(self._replicate(rule) for rule in self.rules)
        if self.state_file and sum(len(v) for v in self._done.values()) != before:
            self._save_state()
        return count

    def _load_state(self) -> dict[str, set[str]]:
        if not (self.state_file and self.state_file.exists()):
            return {}
        try:
            return {k: set(v) for k, v in json.loads(self.state_file.read_text()).items()}
        except (ValueError, AttributeError, TypeError):
            log.warning("ignoring unreadable state file %s: scanning the replicas instead", self.state_file)
            return {}

    def _save_state(self) -> None:
        tmp = self.state_file.with_name(self.state_file.name + ".tmp")
        tmp.write_text(json.dumps({k: sorted(v) for k, v in self._done.items()}))
        os.replace(tmp, self.state_file)  # atomic: a crash never leaves half a state file

    def _replicate(self, rule: Rule) -> int:
        try:
            self.dst.head_bucket(Bucket=rule.replica)
            self.src.head_bucket(Bucket=rule.source)
        except ClientError:
            return 0  # bucket missing: nothing to replicate (yet)
        done = self._done.get(rule.replica)
        if done is None:  # first run against this replica: find out what an earlier emulator did
            done = self._done[rule.replica] = self._scan_replica(rule)
        count = 0
        for prefix in rule.prefixes:
            for entry in _versions_oldest_first(self.src, rule.source, prefix):
                vid = entry["VersionId"]
                if vid in done:
                    continue
                if entry["IsDeleteMarker"]:
                    if rule.delete_markers:
                        self.dst.delete_object(Bucket=rule.replica, Key=entry["Key"])
                        count += 1
                elif self._copy(rule, entry):
                    count += 1
                done.add(vid)
        return count

    def _copy(self, rule: Rule, entry: dict) -> bool:
        key, vid = entry["Key"], entry["VersionId"]
        try:
            head = self.src.head_object(Bucket=rule.source, Key=key, VersionId=vid)
            meta = dict(head.get("Metadata", {}))
            meta[SOURCE_VERSION_META] = vid
            headers = {
                name: head[name]
                for name in ("CacheControl", "ContentDisposition", "ContentEncoding", "ContentLanguage")
                if head.get(name)
            }
            self.dst.copy_object(
                Bucket=rule.replica,
                Key=key,
                CopySource={"Bucket": rule.source, "Key": key, "VersionId": vid},
                MetadataDirective="REPLACE",
                Metadata=meta,
                ContentType=head.get("ContentType", "binary/octet-stream"),
                StorageClass=rule.storage_class,
                **headers,
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code not in _SKIPPABLE:
                raise
            log.warning("not replicating s3://%s/%s version %s: %s", rule.source, key, vid, code)
            return False
        return True

    def _scan_replica(self, rule: Rule) -> set[str]:
        """Source version ids (and delete markers) already in the replica (survives emulator restarts)."""
        done: set[str] = set()
        markers: Counter[str] = Counter()
        for entry in _versions_oldest_first(self.dst, rule.replica, ""):
            if entry["IsDeleteMarker"]:
                markers[entry["Key"]] += 1
                continue
            head = self.dst.head_object(Bucket=rule.replica, Key=entry["Key"], VersionId=entry["VersionId"])
            src_vid = head.get("Metadata", {}).get(SOURCE_VERSION_META)
            if src_vid:
                done.add(src_vid)
        # A delete marker has no metadata to say which source marker it copies; markers are replicated
        # in the source's order, so the replica's n markers of a key are the source's n oldest ones.
        # (Without this, a restart would replay old markers and hide keys re-created since.)
        if markers:
            for prefix in rule.prefixes:
                for entry in _versions_oldest_first(self.src, rule.source, prefix):
                    if entry["IsDeleteMarker"] and entry["VersionId"] not in done and markers[entry["Key"]] > 0:
                        markers[entry["Key"]] -= 1
                        done.add(entry["VersionId"])
        return done


def _versions_oldest_first(client, bucket: str, prefix: str) -> Iterator[dict]:
    """All versions and delete markers under `prefix`, per key oldest first (keys in listing order).

    S3 lists each key newest first, but boto3 returns versions and delete markers in two separate
    arrays, and moto's LastModified has 1 s resolution: when a key has a version and a delete marker
    in the same second, their order is read again from the listing itself, one entry per page.
    """
    paginator = client.get_paginator("list_object_versions")
    pending: list[dict] = []
    current_key: str | None = None
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        entries = [dict(v, IsDeleteMarker=False) for v in page.get("Versions", [])]
        entries += [dict(m, IsDeleteMarker=True) for m in page.get("DeleteMarkers", [])]
        for e in sorted(entries, key=lambda e: e["Key"]):
            if e["Key"] != current_key:
                yield from _oldest_first(client, bucket, pending)
                pending, current_key = [], e["Key"]
            pending.append(e)
    yield from _oldest_first(client, bucket, pending)


def _oldest_first(client, bucket: str, entries: list[dict]) -> list[dict]:
    """One key's entries (versions first, then delete markers; each newest first), oldest first."""
    if not entries:
        return []
    marker_times = {e["LastModified"] for e in entries if e["IsDeleteMarker"]}
    if any(not e["IsDeleteMarker"] and e["LastModified"] in marker_times for e in entries):
        return _exact_history(client, bucket, entries[0]["Key"])
    # each array is newest first: reverse it, then order by time (stable), and make the current
    # version (IsLatest) the last one whatever the clock says.
    return sorted(reversed(entries), key=lambda e: (e.get("IsLatest", False), e["LastModified"]))


def _exact_history(client, bucket: str, key: str) -> list[dict]:
    """`key`'s versions and delete markers oldest first, in the order S3 (and moto) keeps them.

    Paging one entry at a time keeps the service's own interleaving of versions and delete markers,
    which the two arrays of a page lose. One request per entry: used only for ambiguous keys.
    """
    newest_first: list[dict] = []
    kwargs: dict = {"Bucket": bucket, "Prefix": key, "MaxKeys": 1}
    while True:
        page = client.list_object_versions(**kwargs)
        found = [dict(v, IsDeleteMarker=False) for v in page.get("Versions", [])]
        found += [dict(m, IsDeleteMarker=True) for m in page.get("DeleteMarkers", [])]
        mine = [e for e in found if e["Key"] == key]
        newest_first += mine
        if len(mine) < len(found) or not found or not page.get("IsTruncated"):
            break
        kwargs.update(KeyMarker=page["NextKeyMarker"], VersionIdMarker=page["NextVersionIdMarker"])
    return newest_first[::-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint-url", required=True)
    parser.add_argument("--loop", action="store_true", help="keep replicating every --interval seconds")
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--state-dir", type=Path, default=Path(".devstack"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s replication %(message)s")
    args.state_dir.mkdir(parents=True, exist_ok=True)
    emulator = ReplicationEmulator(
        load_plan(), endpoint_url=args.endpoint_url, state_file=args.state_dir / "replication-state.json"
    )
    while True:
        if not (args.state_dir / "replication.paused").exists():
            try:
                n = emulator.run_once()
            except Exception:
                if not args.loop:
                    raise
                # S3 down for a moment, a bucket deleted mid-run...: keep the loop alive, retry later
                log.exception("replication pass failed; retrying in %.0f s", args.interval)
            else:
                if n:
                    log.info("replicated %d versions/markers", n)
        if not args.loop:
            return
        time.sleep(args.interval)


if __name__ == "__main__":
    main()
