"""Trigger that waits, in the triggerer, for archived (Glacier / Deep Archive) objects to be restored.

The objects are either an explicit list of keys or the stored objects of one complete snapshot
(re-read from its manifest on every poll, so nothing large is kept in the trigger's kwargs).
The trigger only reads (HEAD / GET): it never requests a restore — that is
`dataprotection.archive.request_restores`, run by a task before the wait.

Events (one per run, then the trigger ends):

- ``{"status": "success", **counts}`` — every object is restored (or was never archived);
- ``{"status": "error", "reason": "missing", "message": ..., **counts}`` — some objects do not exist;
- ``{"status": "error", "reason": "exception", "message": ...}`` — checking failed (S3, connection, manifest);
- ``{"status": "timeout", "message": ..., **counts}`` — `timeout_at` passed before every object was restored.

``counts`` is `dataprotection.archive.RestoreStatus.to_dict()` plus ``bucket`` and ``elapsed_seconds``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent
from botocore.exceptions import ClientError

from dataprotection.archive import RestoreStatus, check_restores, snapshot_locations

SNAPSHOT_FIELDS = ("store_bucket", "source_bucket", "snapshot_id")
MISSING_SHOWN = 5


class RestoreTargetError(ValueError):
    """The objects to wait for are not described correctly (keys / snapshot)."""


def validate_target(keys: Iterable[str] | str | None, snapshot: dict | None) -> None:
    """Exactly one of `keys` / `snapshot`; a snapshot names its store bucket, source bucket and id."""
    if (keys is None) == (snapshot is None):
        raise RestoreTargetError("give exactly one of `keys` (a list of object keys) or `snapshot`")
    if snapshot is not None:
        if not isinstance(snapshot, dict):
            raise RestoreTargetError(f"snapshot: expected a dict with {', '.join(SNAPSHOT_FIELDS)}; got {snapshot!r}")
        absent = [f for f in SNAPSHOT_FIELDS if not snapshot.get(f)]
        if absent:
            raise RestoreTargetError(f"snapshot: missing {', '.join(absent)} (needs {', '.join(SNAPSHOT_FIELDS)})")


def target_keys(client, keys: Iterable[str] | str | None, snapshot: dict | None) -> Iterable[str]:
    """The keys to check: `keys` as given (a single string is one key), else the snapshot's locations."""
    validate_target(keys, snapshot)
    if snapshot is not None:
        return snapshot_locations(client, snapshot["store_bucket"], snapshot["source_bucket"], snapshot["snapshot_id"])
    return [keys] if isinstance(keys, str) else keys


def restore_status(client, bucket: str, keys: Iterable[str] | str | None, snapshot: dict | None,
                   concurrency: int = 16) -> RestoreStatus:
    """Restore state of the target objects in `bucket` (HEADs, plus manifest GETs for a snapshot)."""
    return check_restores(client, bucket, target_keys(client, keys, snapshot), concurrency=concurrency)


def progress(bucket: str, status: RestoreStatus) -> str:
    """One log line: "n of N restored" (n counts objects readable now) and the breakdown."""
    return (f"s3://{bucket}: {status.ready} of {status.total} restored ({status.restored} restored, "
            f"{status.in_progress} in progress, {status.not_requested} not requested, "
            f"{status.not_archived} not archived, {len(status.missing)} missing)")


def missing_message(client, bucket: str, status: RestoreStatus) -> str:
    """Explain missing objects: name a few, and say whether the bucket itself is absent."""
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "") or str(exc)
        what = "does not exist" if code in ("404", "NoSuchBucket", "NotFound") else f"is not accessible ({code})"
        return (f"the bucket s3://{bucket} {what}, so none of the {status.total} objects can be read. "
                "Check the bucket name, the region and the connection's permissions")
    shown = ", ".join(repr(k) for k in status.missing[:MISSING_SHOWN])
    more = f" and {len(status.missing) - MISSING_SHOWN} more" if len(status.missing) > MISSING_SHOWN else ""
    return (f"{len(status.missing)} of {status.total} objects do not exist in s3://{bucket}: {shown}{more}. "
            "Check the keys (or the snapshot) given to the sensor")


class S3GlacierRestoreTrigger(BaseTrigger):
    """Poll the restore state of archived S3 objects until all are restored, some are missing, or time is up.

    :param bucket: bucket holding the archived objects.
    :param keys: object keys to wait for; or None when `snapshot` is given.
    :param snapshot: ``{"store_bucket", "source_bucket", "snapshot_id"}`` of a complete snapshot: wait for
        all its stored objects (its manifest is read on each poll).
    :param aws_conn_id: Airflow AWS connection (credentials, endpoint_url).
    :param region: region of `bucket`.
    :param poll_interval: seconds between polls.
    :param timeout_at: epoch seconds after which a "timeout" event is sent; None waits forever.
    :param concurrency: parallel HEAD requests per poll.
    """

    def __init__(
        self,
        *,
        bucket: str,
        keys: list[str] | None = None,
        snapshot: dict | None = None,
        aws_conn_id: str = "aws_default",
        region: str,
        poll_interval: float = 60.0,
        timeout_at: float | None = None,
        concurrency: int = 16,
    ) -> None:
        super().__init__()
        self.bucket = bucket
        self.keys = keys
        self.snapshot = snapshot
        self.aws_conn_id = aws_conn_id
        self.region = region
        self.poll_interval = poll_interval
        self.timeout_at = timeout_at
        self.concurrency = concurrency
        self._client = None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "dataprotection.triggers.glacier.S3GlacierRestoreTrigger",
            {
                "bucket": self.bucket,
                "keys": self.keys,
                "snapshot": self.snapshot,
                "aws_conn_id": self.aws_conn_id,
                "region": self.region,
                "poll_interval": self.poll_interval,
                "timeout_at": self.timeout_at,
                "concurrency": self.concurrency,
            },
        )

    # Runs in a worker thread (asyncio.to_thread): boto3 and the hook's connection lookup block.
    def _client_for_thread(self):
        if self._client is None:
            from dataprotection.hooks.s3 import DataProtectionS3Hook

            hook = DataProtectionS3Hook(aws_conn_id=self.aws_conn_id, max_pool=self.concurrency + 4)
            self._client = hook.client(self.region)
        return self._client

    def _check(self) -> tuple[RestoreStatus, str | None]:
        client = self._client_for_thread()
        status = restore_status(client, self.bucket, self.keys, self.snapshot, self.concurrency)
        problem = missing_message(client, self.bucket, status) if status.missing else None
        return status, problem

    def _counts(self, status: RestoreStatus, started: float) -> dict[str, Any]:
        return {**status.to_dict(), "bucket": self.bucket, "elapsed_seconds": round(time.monotonic() - started, 1)}

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll (blocking boto3 calls in a thread) until one event can be sent; send it and end."""
        started = time.monotonic()
        try:
            while True:
                status, problem = await asyncio.to_thread(self._check)
                self.log.info("%s", progress(self.bucket, status))
                if problem is not None:
                    yield TriggerEvent({"status": "error", "reason": "missing", "message": problem,
                                        **self._counts(status, started)})
                    return
                if status.complete:
                    yield TriggerEvent({"status": "success", **self._counts(status, started)})
                    return
                now = time.time()
                if self.timeout_at is not None and now >= self.timeout_at:
                    waited = time.monotonic() - started
                    message = (f"restore of s3://{self.bucket} not complete: {status.ready} of {status.total} "
                               f"restored after {waited:.0f} s ({status.in_progress} still in progress, "
                               f"{status.not_requested} never requested)")
                    yield TriggerEvent({"status": "timeout", "message": message, **self._counts(status, started)})
                    return
                if status.not_requested:
                    self.log.warning("s3://%s: %d archived objects have no restore requested; they will not "
                                     "become readable unless a restore is requested", self.bucket,
                                     status.not_requested)
                delay = self.poll_interval
                if self.timeout_at is not None:
                    delay = min(delay, max(0.0, self.timeout_at - now))
                await asyncio.sleep(delay)
        except Exception as exc:  # errors become events; cancellation (BaseException) still propagates
            self.log.exception("checking restores in s3://%s failed", self.bucket)
            yield TriggerEvent({"status": "error", "reason": "exception",
                                "message": f"checking restores in s3://{self.bucket} failed: "
                                           f"{type(exc).__name__}: {exc}"})
