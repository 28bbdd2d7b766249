"""Replication emulator for the dev stack and tests (NOT production code).

The moto server stores a bucket's replication configuration but never replicates. This emulator
does what S3 cross-region replication would do for the plan's source buckets: every new object
version under a replicated prefix is copied to the replica bucket (in the backup region, with the
rule's storage class), oldest first so the replica's current version matches the source's; a delete
marker is replicated as a delete marker when the rule says so. Each replica version carries the
source version id in its metadata (`x-amz-meta-replication-source-version-id`) because moto cannot
keep S3's "same version id" property; that is also how the emulator knows what it already did.

Use `ReplicationEmulator.run_once()` in tests (pause = simply don't call it), or
`python -m devstack.replication --loop` in the dev stack (a file named `replication.paused` in the
state directory pauses the loop).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dataprotection.config import Plan, load_plan
from dataprotection.s3client import make_client

log = logging.getLogger("devstack.replication")
SOURCE_VERSION_META = "replication-source-version-id"
DELETE_MARKER_META = "replication-delete-marker"


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
        self.src = make_client(plan.regions.primary, endpoint_url=endpoint_url)
        self.dst = make_client(plan.regions.backup, endpoint_url=endpoint_url)
        self.state_file = state_file
        self._done: dict[str, set[str]] = {}
        if state_file and state_file.exists():
            self._done = {k: set(v) for k, v in json.loads(state_file.read_text()).items()}

    def run_once(self) -> int:
        """Replicate everything pending; return the number of versions/markers replicated."""
        count = sum(self._replicate(rule) for rule in self.rules)
        if self.state_file and count:
            self.state_file.write_text(json.dumps({k: sorted(v) for k, v in self._done.items()}))
        return count

    def _replicate(self, rule: Rule) -> int:
        try:
            self.dst.head_bucket(Bucket=rule.replica)
            self.src.head_bucket(Bucket=rule.source)
        except self.src.exceptions.ClientError:
            return 0  # bucket missing: nothing to replicate (yet)
        done = self._done.setdefault(rule.replica, self._scan_replica(rule.replica))
        count = 0
        for prefix in rule.prefixes:
            for entry in _versions_oldest_first(self.src, rule.source, prefix):
                vid = entry["VersionId"]
                if vid in done:
                    continue
                if entry["IsDeleteMarker"]:
                    if rule.delete_markers:
                        self.dst.delete_object(Bucket=rule.replica, Key=entry["Key"])
                else:
                    self._copy(rule, entry)
                done.add(vid)
                count += 1
        return count

    def _copy(self, rule: Rule, entry: dict) -> None:
        head = self.src.head_object(Bucket=rule.source, Key=entry["Key"], VersionId=entry["VersionId"])
        meta = dict(head.get("Metadata", {}))
        meta[SOURCE_VERSION_META] = entry["VersionId"]
        self.dst.copy_object(
            Bucket=rule.replica,
            Key=entry["Key"],
            CopySource={"Bucket": rule.source, "Key": entry["Key"], "VersionId": entry["VersionId"]},
            MetadataDirective="REPLACE",
            Metadata=meta,
            ContentType=head.get("ContentType", "binary/octet-stream"),
            StorageClass=rule.storage_class,
        )

    def _scan_replica(self, bucket: str) -> set[str]:
        """Source version ids already present in the replica (survives emulator restarts)."""
        done: set[str] = set()
        for entry in _versions_oldest_first(self.dst, bucket, ""):
            if entry["IsDeleteMarker"]:
                continue
            head = self.dst.head_object(Bucket=bucket, Key=entry["Key"], VersionId=entry["VersionId"])
            src_vid = head.get("Metadata", {}).get(SOURCE_VERSION_META)
            if src_vid:
                done.add(src_vid)
        return done


def _versions_oldest_first(client, bucket: str, prefix: str) -> Iterator[dict]:
    """All versions and delete markers under `prefix`, per key oldest first (keys in listing order).

    S3 lists each key newest first, versions and delete markers in separate arrays; moto's
    LastModified has 1 s resolution, so ties are broken by listing order and IsLatest goes last.
    """
    paginator = client.get_paginator("list_object_versions")
    pending: list[dict] = []
    current_key: str | None = None
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        entries = [dict(v, IsDeleteMarker=False) for v in page.get("Versions", [])]
        entries += [dict(m, IsDeleteMarker=True) for m in page.get("DeleteMarkers", [])]
        for e in sorted(entries, key=lambda e: e["Key"]):
            if e["Key"] != current_key:
                yield from _oldest_first(pending)
                pending, current_key = [], e["Key"]
            pending.append(e)
    yield from _oldest_first(pending)


def _oldest_first(entries: list[dict]) -> list[dict]:
    # listing order is newest first within each array: reverse it, then order by time (stable),
    # and make the current version (IsLatest) the last one whatever the clock says.
    return sorted(reversed(entries), key=lambda e: (e.get("IsLatest", False), e["LastModified"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint-url", required=True)
    parser.add_argument("--loop", action="store_true", help="keep replicating every --interval seconds")
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--state-dir", type=Path, default=Path(".devstack"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s replication %(message)s")
    emulator = ReplicationEmulator(
        load_plan(), endpoint_url=args.endpoint_url, state_file=args.state_dir / "replication-state.json"
    )
    while True:
        if not (args.state_dir / "replication.paused").exists():
            n = emulator.run_once()
            if n:
                log.info("replicated %d versions/markers", n)
        if not args.loop:
            return
        time.sleep(args.interval)


if __name__ == "__main__":
    main()
