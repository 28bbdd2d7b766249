"""Erase one user's footprint (found by `locate`): versions, stored copies, manifest entries, rows.

- S3 versions and delete markers: DeleteObjects with VersionId, at most 1,000 per request, the
  per-key Errors read back. Object Lock is never bypassed (no BypassGovernanceRetention): a version
  under legal hold or retention is recorded as blocked with its retain-until date.
- Stored copies in the backup/archive buckets are deleted (every version, if a store is versioned),
  then each manifest part naming the user's keys is rewritten without those entries (key names can be
  personal data), its part record and the snapshot summary updated; the summary keeps a count of
  redacted entries, never the keys.
- Rows: `on_erasure: delete` tables lose the user's rows, `null_urls` tables get their URL columns
  nulled — in one transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

from psycopg import sql

from dataprotection import manifest as mf
from dataprotection.config import Plan
from dataprotection.gdpr.locate import Footprint, VersionRef
from dataprotection.listing import is_versioned
from dataprotection.versions import key_versions, purge_noncurrent

log = logging.getLogger(__name__)
BATCH = 1000
LOCK_ERRORS = ("AccessDenied", "InvalidRequest", "ObjectLocked")


class ErasureError(RuntimeError):
    """Part of an erasure failed; the message says what and that a re-run is safe."""


@dataclass
class S3Erasure:
    deleted: list[VersionRef] = field(default_factory=list)
    blocked: list[dict] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)


def erase_versions(clients: dict[str, object], versions: list[VersionRef]) -> S3Erasure:
    """Delete exactly these versions/markers; `clients` maps bucket -> client of its region.

    Versions known to be locked are not sent at all (S3 would refuse them; some S3 implementations
    answer "Deleted" and keep them): they are recorded as blocked. A version S3 refuses is blocked too.
    """
    out = S3Erasure()
    by_bucket: dict[str, list[VersionRef]] = {}
    for v in versions:
        if v.locked:
            out.blocked.append(_blocked(clients[v.bucket], v, {"Code": "ObjectLocked"}))
        else:
            by_bucket.setdefault(v.bucket, []).append(v)
    for bucket, items in sorted(by_bucket.items()):
        client = clients[bucket]
        for i in range(0, len(items), BATCH):
            batch = items[i:i + BATCH]
            index = {(v.key, v.version_id): v for v in batch}
            response = client.delete_objects(Bucket=bucket, Delete={
                "Objects": [{"Key": v.key, "VersionId": v.version_id} for v in batch], "Quiet": False})
            for d in response.get("Deleted", []):
                out.deleted.append(index[(d["Key"], d.get("VersionId") or "null")])
            for err in response.get("Errors", []):
                v = index.get((err["Key"], err.get("VersionId") or "null"))
                if v is None:
                    continue
                if v.locked or err.get("Code") in LOCK_ERRORS:
                    out.blocked.append(_blocked(client, v, err))
                else:
                    out.failed.append({"bucket": bucket, "version_id": v.version_id, "code": err.get("Code"),
                                       "message": err.get("Message")})
        log.info("s3://%s: %d versions/markers deleted, %d blocked, %d failed so far", bucket, len(out.deleted),
                 len(out.blocked), len(out.failed))
    return out


def _blocked(client, v: VersionRef, err: dict) -> dict:
    """A version S3 refused to delete, with its lock (re-read: the preview may be older)."""
    from dataprotection.gdpr.locate import with_lock

    locked = with_lock(client, v)
    return {"bucket": v.bucket, "key": v.key, "version_id": v.version_id, "role": v.role,
            "lock_mode": locked.lock_mode, "retain_until": locked.retain_until, "legal_hold": locked.legal_hold,
            "error": err.get("Code")}


# --------------------------------------------------------------------------- backups and archives
def erase_stored(store, fp: Footprint) -> int:
    """Delete every stored copy of the footprint (all versions where a store bucket is versioned)."""
    deleted = 0
    by_bucket: dict[str, list[str]] = {}
    for bucket, location in fp.stored_locations:
        by_bucket.setdefault(bucket, []).append(location)
    for bucket, locations in by_bucket.items():
        objects = _stored_versions(store, bucket, locations) if is_versioned(store, bucket) else \
            [{"Key": k} for k in locations]
        for i in range(0, len(objects), BATCH):
            response = store.delete_objects(Bucket=bucket, Delete={"Objects": objects[i:i + BATCH], "Quiet": False})
            if response.get("Errors"):
                raise ErasureError(f"{len(response['Errors'])} stored copies in s3://{bucket} could not be deleted "
                                   f"(codes {sorted({e.get('Code') for e in response['Errors']})}); re-run the task")
            deleted += len(response.get("Deleted", []))
        log.info("s3://%s: %d stored copies deleted", bucket, len(locations))
    return deleted


def _stored_versions(store, bucket: str, locations: list[str]) -> list[dict]:
    return [v for key in locations for v in key_versions(store, bucket, key)]


def redact_manifests(store, fp: Footprint, now: datetime | None = None) -> dict:
    """Rewrite every manifest part naming the user's keys without those entries; update records."""
    erased = set(fp.keys)
    touched: dict[tuple[str, str, str], int] = {}  # (store, source, snapshot) -> entries removed
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for s in {(s.store_bucket, s.source_bucket, s.snapshot_id, s.part_key) for s in fp.stored if s.part_key}:
        store_bucket, source, snapshot_id, part = s
        removed = _rewrite_part(store, store_bucket, source, part, erased)
        touched[(store_bucket, source, snapshot_id)] = touched.get((store_bucket, source, snapshot_id), 0) + removed
    for (store_bucket, source, snapshot_id), removed in sorted(touched.items()):
        _refresh_summary(store, store_bucket, source, snapshot_id, removed, stamp)
    log.info("manifests: %d entries removed from %d snapshots", sum(touched.values()), len(touched))
    return {"snapshots": len(touched), "entries": sum(touched.values())}


def _rewrite_part(store, bucket: str, source: str, part: str, erased: set[tuple[str, str]]) -> int:
    removed = 0
    with mf.ManifestWriter() as writer:
        for e in mf.iter_manifest_part(store, bucket, part):
            if (source, e.key) in erased:
                removed += 1
            else:
                writer.write(e)
        if not removed:
            return 0
        sha = writer.upload(store, bucket, part)
        # in a versioned store the previous part (with the erased keys' names) would stay as an old version
        purge_noncurrent(store, bucket, [part])
        done_key = part.removesuffix(".jsonl.gz") + ".json"
        done = mf.read_json(store, bucket, done_key)
        if done is not None:
            done.update(objects=writer.count, bytes=writer.bytes, manifest_sha256=sha)
            mf.write_json(store, bucket, done_key, done)
    return removed


def _refresh_summary(store, bucket: str, source: str, snapshot_id: str, removed: int, stamp: str) -> None:
    """Recompute a complete snapshot's totals from its part records (an incomplete one has no summary)."""
    key = mf.summary_key(source, snapshot_id)
    summary = mf.read_json(store, bucket, key)
    if summary is None:
        return
    parts = []
    for p in summary["parts"]:
        done = mf.read_json(store, bucket, p["manifest_key"].removesuffix(".jsonl.gz") + ".json") or p
        parts.append({**p, **{k: done[k] for k in ("objects", "bytes", "manifest_sha256") if k in done}})
    summary["parts"] = parts
    summary["objects"] = sum(p["objects"] for p in parts)
    summary["bytes"] = sum(p["bytes"] for p in parts)
    summary.setdefault("redactions", []).append({"at": stamp, "entries": removed, "reason": "gdpr_erasure"})
    mf.write_json(store, bucket, key, summary)


# --------------------------------------------------------------------------- database
def erase_rows(conn, plan: Plan, user_id: str) -> dict:
    """Delete / null the user's rows in every plan table, in one transaction; return counts."""
    counts: dict[str, dict[str, int]] = {}
    with conn.transaction():
        for table in plan.database.tables:
            where = sql.SQL("{u} = %s").format(u=sql.Identifier(table.user_column))
            if table.on_erasure == "delete":
                cur = conn.execute(sql.SQL("DELETE FROM {t} WHERE ").format(t=sql.Identifier(table.name)) + where,
                                   (user_id,))
                counts[table.name] = {"deleted": cur.rowcount}
            elif table.url_columns:
                sets = sql.SQL(", ").join(sql.SQL("{c} = NULL").format(c=sql.Identifier(c)) for c in table.url_columns)
                any_set = sql.SQL(" OR ").join(
                    sql.SQL("{c} IS NOT NULL").format(c=sql.Identifier(c)) for c in table.url_columns)
                cur = conn.execute(sql.SQL("UPDATE {t} SET ").format(t=sql.Identifier(table.name)) + sets +
                                   sql.SQL(" WHERE ") + where + sql.SQL(" AND (") + any_set + sql.SQL(")"),
                                   (user_id,))
                counts[table.name] = {"urls_nulled": cur.rowcount}
    log.info("database: %s", counts)
    return counts
