"""Archive (Glacier / Deep Archive) restores for the objects of one archive snapshot.

    restore_state(head) -> "restored" | "in_progress" | "not_requested" | "not_archived"
    check_restores(client, bucket, keys)      -> RestoreStatus (counts, missing keys)
    request_restores(client, bucket, keys, days=7, tier="Standard", storage_class="DEEP_ARCHIVE")

Requests are idempotent: an object already restored, or with a restore in progress, is not requested
again (one HEAD each; RestoreObject only where needed). Nothing here waits: the sensor
`dataprotection.sensors.glacier.S3GlacierRestoreSensor` does, deferred.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from botocore.exceptions import ClientError

from dataprotection.snapshot import iter_manifest

log = logging.getLogger(__name__)
ARCHIVE_CLASSES = ("GLACIER", "DEEP_ARCHIVE")
TIERS = ("Standard", "Bulk", "Expedited")
SAMPLE = 20


class ArchiveRestoreError(ValueError):
    """A restore request was refused before anything was sent; the message says what is allowed."""


def validate_request(tier: str, days: int, storage_class: str) -> None:
    if tier not in TIERS:
        raise ArchiveRestoreError(f"tier: {tier!r} is not allowed; use one of {', '.join(TIERS)}")
    if tier == "Expedited" and storage_class == "DEEP_ARCHIVE":
        raise ArchiveRestoreError(
            "tier: 'Expedited' is not available for DEEP_ARCHIVE objects; use 'Standard' (within 12 hours) "
            "or 'Bulk' (within 48 hours)"
        )
    if not 1 <= days <= 365:
        raise ArchiveRestoreError(f"restore_days: {days} is not allowed; use 1 to 365 days")


def restore_state(head: dict) -> str:
    """Classify a HeadObject response of a (possibly) archived object."""
    restore = head.get("Restore")
    if restore:
        return "in_progress" if 'ongoing-request="true"' in restore else "restored"
    if head.get("StorageClass") in ARCHIVE_CLASSES:
        return "not_requested"
    return "not_archived"


@dataclass
class RestoreStatus:
    total: int = 0
    restored: int = 0
    in_progress: int = 0
    not_requested: int = 0
    not_archived: int = 0
    requested: int = 0  # RestoreObject requests sent by this call
    missing: list[str] = field(default_factory=list)
    bytes: int = 0

    @property
    def ready(self) -> int:
        """Objects that can be read now (restored or never archived)."""
        return self.restored + self.not_archived

    @property
    def complete(self) -> bool:
        return not self.missing and self.ready == self.total

    def to_dict(self) -> dict:
        return {"total": self.total, "restored": self.restored, "in_progress": self.in_progress,
                "not_requested": self.not_requested, "not_archived": self.not_archived,
                "requested": self.requested, "missing": self.missing[:SAMPLE], "missing_count": len(self.missing),
                "bytes": self.bytes, "ready": self.ready, "complete": self.complete}


def snapshot_locations(store, store_bucket: str, source_bucket: str, snapshot_id: str) -> Iterator[str]:
    """The stored-object keys a snapshot references (what must be restored to recover it)."""
    for entry in iter_manifest(store, store_bucket, source_bucket, snapshot_id):
        yield entry.location


def _head(client, bucket: str, key: str) -> dict | None:
    try:
        return client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


def check_restores(client, bucket: str, keys: Iterable[str], concurrency: int = 16) -> RestoreStatus:
    """Read the restore state of every key (HEAD only; changes nothing)."""
    status = RestoreStatus()
    with ThreadPoolExecutor(concurrency) as pool:
        for key, head in zip_keys(keys, pool, lambda k: _head(client, bucket, k)):
            _count(status, key, head)
    return status


def request_restores(client, bucket: str, keys: Iterable[str], *, days: int = 7, tier: str = "Standard",
                     storage_class: str = "DEEP_ARCHIVE", concurrency: int = 16) -> RestoreStatus:
    """Request a restore for every archived key not yet restored or in progress."""
    validate_request(tier, days, storage_class)
    status = RestoreStatus()

    def one(key: str) -> tuple[dict | None, bool]:
        head = _head(client, bucket, key)
        if head is None or restore_state(head) != "not_requested":
            return head, False
        try:
            client.restore_object(Bucket=bucket, Key=key,
                                  RestoreRequest={"Days": days, "GlacierJobParameters": {"Tier": tier}})
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "RestoreAlreadyInProgress":
                raise
        return head, True

    with ThreadPoolExecutor(concurrency) as pool:
        for key, (head, sent) in zip_keys(keys, pool, one):
            _count(status, key, head)
            if sent:
                status.requested += 1
                status.not_requested -= 1
                status.in_progress += 1
    log.info("restore requests for s3://%s: %d objects; requested %d, already restored %d, in progress %d, "
             "not archived %d, missing %d", bucket, status.total, status.requested, status.restored,
             status.in_progress - status.requested, status.not_archived, len(status.missing))
    return status


def zip_keys(keys: Iterable[str], pool: ThreadPoolExecutor, fn, window: int = 512):
    """Map `fn` over `keys` on `pool` with bounded look-ahead; yield (key, result) in order."""
    batch: list[str] = []
    for key in keys:
        batch.append(key)
        if len(batch) >= window:
            yield from zip(batch, pool.map(fn, batch), strict=True)
            batch = []
    if batch:
        yield from zip(batch, pool.map(fn, batch), strict=True)


def _count(status: RestoreStatus, key: str, head: dict | None) -> None:
    status.total += 1
    if head is None:
        status.missing.append(key)
        return
    status.bytes += head.get("ContentLength", 0)
    setattr(status, restore_state(head), getattr(status, restore_state(head)) + 1)
