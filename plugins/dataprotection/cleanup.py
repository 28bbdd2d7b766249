"""Removal of expired objects under the plan's temporary prefixes (every version and delete marker).

A temporary prefix is a folder (`temp/`, validated to end in '/'): only keys that start with it are
listed (ListObjectVersions with that exact Prefix), so `temp-notes/x`, `archive/temp/x` and
`tempfile.txt` are never touched. A key is expired when its newest version or delete marker is older
than the rule's `expire_days`, counted back from the run's time (its data-interval end); then every
version and delete marker of it is deleted with DeleteObjects and VersionId, in batches of at most
1,000, reading each response's per-key Errors. The plan is made first (the preview), deletions follow,
and a second listing verifies that none of the planned versions is left.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

from dataprotection.config import Plan

log = logging.getLogger(__name__)
BATCH = 1000


class CleanupError(RuntimeError):
    """A temporary prefix could not be cleaned; the message says what to do."""


@dataclass(frozen=True)
class TempPrefix:
    rule: str
    prefix: str
    expire_days: int


@dataclass
class PrefixResult:
    rule: str
    prefix: str
    expire_days: int
    cutoff: str
    keys_expired: int = 0
    keys_kept: int = 0
    versions_deleted: int = 0
    delete_markers_deleted: int = 0
    bytes_deleted: int = 0
    errors: list[dict] = field(default_factory=list)
    left_after_verify: int = 0


@dataclass
class _Version:
    key: str
    version_id: str
    size: int
    delete_marker: bool


def temporary_prefixes(plan: Plan, bucket: str) -> list[TempPrefix]:
    """The temporary retention rules that apply to `bucket` (a source bucket, or a replica: its source's)."""
    source = next((b.name for b in plan.source_buckets if bucket in (b.name, b.replica)), None)
    if source is None:
        raise CleanupError(f"{bucket!r} is neither a source bucket nor a replica of the plan")
    return [TempPrefix(r.name, r.prefix, r.expire_days) for r in plan.retention
            if r.temporary and r.bucket in (None, source)]


def _versions(client, bucket: str, prefix: str):
    """Every version and delete marker under `prefix`, grouped per key (in listing order)."""
    group: list[_Version] = []
    newest: dict[str, float] = {}
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        entries = [(v, False) for v in page.get("Versions", [])] + [(m, True) for m in page.get("DeleteMarkers", [])]
        entries.sort(key=lambda e: e[0]["Key"])
        for item, marker in entries:
            key = item["Key"]
            if not key.startswith(prefix):  # defensive: the listing's Prefix already guarantees it
                continue
            if group and group[0].key != key:
                yield group, newest.pop(group[0].key)
                group = []
            group.append(_Version(key, item["VersionId"], 0 if marker else int(item.get("Size", 0)), marker))
            # compared as POSIX seconds: botocore's tzlocal() timestamps do not always compare with UTC ones
            modified = item["LastModified"].timestamp()
            if newest.get(key) is None or modified > newest[key]:
                newest[key] = modified
    if group:
        yield group, newest.pop(group[0].key)


def plan_prefix(client, bucket: str, tp: TempPrefix, now: datetime) -> tuple[PrefixResult, list[_Version]]:
    """The preview: which versions of which keys are expired (nothing is changed)."""
    now = now if now.tzinfo else now.replace(tzinfo=UTC)  # a naive time is UTC
    cutoff = now - timedelta(days=tp.expire_days)
    result = PrefixResult(tp.rule, tp.prefix, tp.expire_days, cutoff.strftime("%Y-%m-%dT%H:%M:%SZ"))
    doomed: list[_Version] = []
    for group, newest in _versions(client, bucket, tp.prefix):
        if newest < cutoff.timestamp():
            result.keys_expired += 1
            doomed += group
        else:
            result.keys_kept += 1
    return result, doomed


def clean_prefix(client, bucket: str, tp: TempPrefix, now: datetime, *, dry_run: bool = False) -> PrefixResult:
    result, doomed = plan_prefix(client, bucket, tp, now)
    log.info("s3://%s/%s: %d keys expired (%d versions and delete markers), %d kept (cutoff %s)%s",
             bucket, tp.prefix, result.keys_expired, len(doomed), result.keys_kept, result.cutoff,
             " — dry run, nothing deleted" if dry_run else "")
    if dry_run or not doomed:
        return result
    index = {(v.key, v.version_id): v for v in doomed}
    for start in range(0, len(doomed), BATCH):
        batch = doomed[start:start + BATCH]
        response = client.delete_objects(Bucket=bucket, Delete={
            "Objects": [{"Key": v.key, "VersionId": v.version_id} for v in batch], "Quiet": False})
        for d in response.get("Deleted", []):
            v = index.get((d["Key"], d.get("VersionId") or "null"))
            if v is None:
                continue
            if v.delete_marker:
                result.delete_markers_deleted += 1
            else:
                result.versions_deleted += 1
                result.bytes_deleted += v.size
        result.errors += [{"key": e["Key"], "version_id": e.get("VersionId"), "code": e.get("Code"),
                           "message": e.get("Message")} for e in response.get("Errors", [])]
        log.info("s3://%s/%s: %d of %d versions processed", bucket, tp.prefix, start + len(batch), len(doomed))
    # verify: none of the planned versions may be left (except those S3 refused, reported as errors)
    left = {(v.key, v.version_id) for group, _ in _versions(client, bucket, tp.prefix) for v in group}
    result.left_after_verify = len(left & set(index))
    return result


def clean_bucket(client, plan: Plan, bucket: str, now: datetime, *, dry_run: bool = False) -> dict:
    """Clean every temporary prefix of one bucket; return counts, bytes and errors per prefix."""
    prefixes = [clean_prefix(client, bucket, tp, now, dry_run=dry_run) for tp in temporary_prefixes(plan, bucket)]
    totals = {k: sum(getattr(p, k) for p in prefixes)
              for k in ("keys_expired", "keys_kept", "versions_deleted", "delete_markers_deleted", "bytes_deleted",
                        "left_after_verify")}
    totals["errors"] = sum(len(p.errors) for p in prefixes)
    return {"bucket": bucket, "dry_run": dry_run, **totals, "prefixes": [asdict(p) for p in prefixes]}
