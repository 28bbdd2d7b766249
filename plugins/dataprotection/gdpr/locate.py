"""Find everything of one user, everywhere, without changing anything (the erasure preview).

Where a user's data lives:
- rows: every plan table, by its user column (parameterised SQL);
- keys: the S3 objects those rows name (bucket/key columns, URL columns) in the plan's source buckets,
  plus every key under the plan's per-user folders (`user-uploads/<user_id>/`), in the source buckets,
  their replicas and the snapshot manifests (a key deleted long ago may survive only in a backup);
- versions: every version AND delete marker of exactly those keys (exact key match, never a
  substring: `a.txt` never matches `a.txt.bak`) in each source bucket and its replica;
- stored copies: every manifest entry of those keys in every daily snapshot (backup bucket) and
  weekly archive (archive bucket), complete or not, found by reading the manifests, not by name
  patterns; plus any stored object at those keys' exact stored-copy folders that no manifest names.

Object Lock: in buckets with Object Lock enabled, each version's lock (mode, retain-until, legal hold)
is read with HEAD so the preview already shows what an erasure will not be allowed to delete.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from botocore.exceptions import ClientError

from dataprotection import manifest as mf
from dataprotection.config import Plan
from dataprotection.gdpr.footprint import prefix_owner, row_refs, user_prefixes, user_rows
from dataprotection.listing import iso

log = logging.getLogger(__name__)


@dataclass(frozen=True, order=True)
class VersionRef:
    bucket: str
    key: str
    version_id: str
    delete_marker: bool
    size: int = 0
    role: str = "source"  # source | replica
    lock_mode: str | None = None  # GOVERNANCE | COMPLIANCE
    retain_until: str | None = None
    legal_hold: bool = False

    @property
    def locked(self) -> bool:
        """Under legal hold, or under retention whose retain-until date is still ahead."""
        if self.legal_hold:
            return True
        return bool(self.lock_mode and self.retain_until and self.retain_until > iso(datetime.now(UTC)))

    @property
    def ident(self) -> str:
        return f"{self.bucket}\t{self.key}\t{self.version_id}"


@dataclass(frozen=True, order=True)
class StoredRef:
    """One manifest entry naming one of the user's keys (or an orphan stored object: snapshot_id None)."""

    store_bucket: str
    source_bucket: str
    location: str
    key: str
    snapshot_id: str | None
    part_key: str | None


@dataclass
class Footprint:
    user_id: str
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows of the user
    row_ids: dict[str, list] = field(default_factory=dict)
    url_values: dict[str, int] = field(default_factory=dict)  # table -> non-null URL cells (null_urls tables)
    keys: list[tuple[str, str]] = field(default_factory=list)  # (source bucket, key)
    outside_plan: list[tuple[str, str]] = field(default_factory=list)  # referenced, not a plan bucket
    versions: list[VersionRef] = field(default_factory=list)
    stored: list[StoredRef] = field(default_factory=list)

    @property
    def stored_locations(self) -> list[tuple[str, str]]:
        return sorted({(s.store_bucket, s.location) for s in self.stored})

    @property
    def manifest_parts(self) -> list[tuple[str, str]]:
        return sorted({(s.store_bucket, s.part_key) for s in self.stored if s.part_key})

    def counts(self) -> dict:
        by_bucket: dict[str, dict[str, int]] = {}
        for v in self.versions:
            c = by_bucket.setdefault(v.bucket, {"versions": 0, "delete_markers": 0, "locked": 0, "bytes": 0})
            c["delete_markers" if v.delete_marker else "versions"] += 1
            c["locked"] += v.locked
            c["bytes"] += v.size
        stores: dict[str, dict[str, int]] = {}
        for bucket, _ in self.stored_locations:
            stores.setdefault(bucket, {"stored_copies": 0, "manifest_entries": 0, "manifest_parts": 0})
            stores[bucket]["stored_copies"] += 1
        for s in self.stored:
            if s.snapshot_id is not None:
                stores.setdefault(s.store_bucket, {"stored_copies": 0, "manifest_entries": 0, "manifest_parts": 0})
                stores[s.store_bucket]["manifest_entries"] += 1
        for bucket, _ in self.manifest_parts:
            stores[bucket]["manifest_parts"] += 1
        return {
            "rows": dict(self.rows),
            "url_values": dict(self.url_values),
            "keys": len(self.keys),
            "versions": sum(not v.delete_marker for v in self.versions),
            "delete_markers": sum(v.delete_marker for v in self.versions),
            "locked_versions": sum(v.locked for v in self.versions),
            "stored_copies": len(self.stored_locations),
            "manifest_entries": sum(s.snapshot_id is not None for s in self.stored),
            "manifest_parts": len(self.manifest_parts),
            "referenced_outside_plan": len(self.outside_plan),
            "by_bucket": by_bucket,
            "by_store": stores,
        }

    def is_empty(self) -> bool:
        return not (self.versions or self.stored or any(self.rows.values()) or any(self.url_values.values()))

    def to_preview(self) -> dict:
        """The preview document (names keys: it goes to the compliance bucket only, never to logs)."""
        return {
            "user_id": self.user_id,
            "counts": self.counts(),
            "row_ids": self.row_ids,
            "keys": [{"bucket": b, "key": k} for b, k in self.keys],
            "referenced_outside_plan": [{"bucket": b, "key": k} for b, k in self.outside_plan],
            "versions": [asdict(v) for v in self.versions],
            "stored": [asdict(s) for s in self.stored],
        }


# --------------------------------------------------------------------------- database
def find_rows(conn, plan: Plan, fp: Footprint) -> set[tuple[str, str]]:
    """Count the user's rows per table; return the (bucket, key) pairs they reference."""
    refs: set[tuple[str, str]] = set()
    for table in plan.database.tables:
        rows = user_rows(conn, table, fp.user_id)
        fp.rows[table.name] = len(rows)
        fp.row_ids[table.name] = [r[table.primary_key] for r in rows]
        if table.on_erasure == "null_urls":
            fp.url_values[table.name] = sum(1 for r in rows for c in table.url_columns if r.get(c) is not None)
        for row in rows:
            refs.update((ref.bucket, ref.key) for ref in row_refs(table, row))
    return refs


# --------------------------------------------------------------------------- S3 versions
def version_pages(client, bucket: str, prefix: str) -> Iterator[dict]:
    yield from client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix)


def _versions(client, bucket: str, prefix: str, role: str, exact: bool) -> Iterator[VersionRef]:
    for page in version_pages(client, bucket, prefix):
        for item, marker in [(v, False) for v in page.get("Versions", [])] + \
                            [(d, True) for d in page.get("DeleteMarkers", [])]:
            if exact and item["Key"] != prefix:
                continue
            yield VersionRef(bucket, item["Key"], item.get("VersionId") or "null", marker,
                             0 if marker else item.get("Size", 0), role)


def object_lock_enabled(client, bucket: str) -> bool:
    try:
        conf = client.get_object_lock_configuration(Bucket=bucket)
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("ObjectLockConfigurationNotFoundError", "NoSuchBucket",
                                              "NotImplemented", "404"):
            return False
        raise
    return conf.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"


def with_lock(client, v: VersionRef) -> VersionRef:
    """The version with its Object Lock state (HEAD; get_object_retention is unreliable on moto)."""
    if v.delete_marker:
        return v
    try:
        head = client.head_object(Bucket=v.bucket, Key=v.key, VersionId=v.version_id)
    except ClientError:
        return v
    until = head.get("ObjectLockRetainUntilDate")
    return VersionRef(v.bucket, v.key, v.version_id, v.delete_marker, v.size, v.role,
                      head.get("ObjectLockMode"), iso(until) if isinstance(until, datetime) else until,
                      head.get("ObjectLockLegalHoldStatus") == "ON")


# --------------------------------------------------------------------------- manifests
def stores(plan: Plan) -> list[tuple[str, list[str]]]:
    """(store bucket, source buckets snapshotted into it): daily backups and weekly archives."""
    return [(plan.backup.bucket, plan.bucket_names), (plan.archive.bucket, [b.name for b in plan.archived_buckets])]


def manifest_parts(store, store_bucket: str, source_bucket: str) -> Iterator[tuple[str, str]]:
    """(snapshot id, part key) of every manifest part of every snapshot, complete or not."""
    paginator = store.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=store_bucket, Prefix=mf.snapshots_prefix(source_bucket)):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            if key.endswith(".jsonl.gz") and "/manifest/" in key:
                snapshot_id = key[len(mf.snapshots_prefix(source_bucket)):].split("/", 1)[0]
                yield snapshot_id, key


def scan_manifests(store, plan: Plan, fp: Footprint, keys: set[tuple[str, str]]) -> None:
    """Manifest entries naming a key of `keys`, or a key in the user's per-user folders (adds the key)."""
    for store_bucket, sources in stores(plan):
        for source in sources:
            n_parts = 0
            for snapshot_id, part in manifest_parts(store, store_bucket, source):
                n_parts += 1
                for e in mf.iter_manifest_part(store, store_bucket, part):
                    if (source, e.key) in keys or prefix_owner(plan, source, e.key) == fp.user_id:
                        keys.add((source, e.key))
                        fp.stored.append(StoredRef(store_bucket, source, e.location, e.key, snapshot_id, part))
            log.info("read %d manifest parts of %s in s3://%s", n_parts, source, store_bucket)


def orphan_copies(store, plan: Plan, fp: Footprint, keys: set[tuple[str, str]]) -> None:
    """Stored objects at the exact stored-copy folder of each key that no manifest names."""
    named = {(s.store_bucket, s.location) for s in fp.stored}
    for store_bucket, sources in stores(plan):
        for source, key in sorted(keys):
            if source not in sources:
                continue
            folder = mf.stored_location(source, key, "x")[:-1]  # data/<bucket>/<key>/ (or _long/<sha>/)
            for page in store.get_paginator("list_objects_v2").paginate(Bucket=store_bucket, Prefix=folder,
                                                                         Delimiter="/"):
                for obj in page.get("Contents", []):
                    if (store_bucket, obj["Key"]) not in named:
                        fp.stored.append(StoredRef(store_bucket, source, obj["Key"], key, None, None))


# --------------------------------------------------------------------------- all together
def locate(plan: Plan, conn, primary, backup, user_id: str) -> Footprint:
    """Everything of `user_id`, everywhere the plan protects (read-only)."""
    fp = Footprint(user_id)
    names = set(plan.bucket_names)
    keys: set[tuple[str, str]] = set()
    for bucket, key in sorted(find_rows(conn, plan, fp)):
        if bucket in names:
            keys.add((bucket, key))
        else:
            fp.outside_plan.append((bucket, key))
    replicas = {b.name: b.replica for b in plan.source_buckets if b.replica}
    for bucket, prefix in user_prefixes(plan, user_id):
        for client, name in ((primary, bucket), (backup, replicas.get(bucket))):
            if name:
                keys.update((bucket, v.key) for v in _versions(client, name, prefix, "", exact=False))
    scan_manifests(primary, plan, fp, keys)
    orphan_copies(primary, plan, fp, keys)
    fp.keys = sorted(keys)
    for role, client, bucket_of in (("source", primary, lambda b: b), ("replica", backup, replicas.get)):
        locked = {}
        for source, key in fp.keys:
            bucket = bucket_of(source)
            if not bucket:
                continue
            if bucket not in locked:
                locked[bucket] = object_lock_enabled(client, bucket)
            for v in _versions(client, bucket, key, role, exact=True):
                fp.versions.append(with_lock(client, v) if locked[bucket] else v)
    fp.stored.sort()
    log.info("found: %s", {k: v for k, v in fp.counts().items() if k not in ("by_bucket", "by_store")})
    return fp
