"""Sensor that waits for archived (Glacier / Deep Archive) S3 objects to be restored.

Deferrable by default: it checks once, and if restores are still running it hands the wait to
`dataprotection.triggers.glacier.S3GlacierRestoreTrigger` in the triggerer (no worker slot is held for
the hours a Deep Archive restore takes). With ``deferrable=False`` it is an ordinary poke/reschedule
sensor. It never requests restores; run `dataprotection.archive.request_restores` before it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSensorTimeout

from dataprotection.config import Plan, load_plan
from dataprotection.hooks.s3 import DataProtectionS3Hook
from dataprotection.triggers.glacier import (
    RestoreTargetError,
    S3GlacierRestoreTrigger,
    missing_message,
    progress,
    restore_status,
    validate_target,
)

# The deferral's own timeout is a backstop: the trigger sends its "timeout" event first.
DEFERRAL_MARGIN = timedelta(minutes=5)


class GlacierObjectsMissingError(AirflowFailException):
    """Objects the sensor waits for do not exist: waiting or retrying cannot help."""


class S3GlacierRestoreSensor(BaseSensorOperator):
    """Wait until every target object in `bucket` is restored from GLACIER / DEEP_ARCHIVE (or not archived).

    :param bucket: bucket holding the archived objects (templated).
    :param keys: object keys to wait for (templated); a single string is one key.
    :param snapshot: instead of `keys`, ``{"store_bucket", "source_bucket", "snapshot_id"}`` of a complete
        snapshot: wait for all the objects it stores (templated).
    :param aws_conn_id: Airflow AWS connection; default the plan's ``connections.aws``.
    :param region: region of `bucket`; default the plan's primary region.
    :param deferrable: wait in the triggerer (default); False uses `mode` ("poke" / "reschedule").
    :param poll_interval: seconds between checks while deferred (`poke_interval` applies otherwise).
    :param concurrency: parallel HEAD requests per check.

    Returns (XCom) the counts: total, restored, in_progress, not_requested, not_archived, ready, bytes, ...
    Fails without retry when objects are missing; fails with AirflowSensorTimeout after `timeout` seconds.
    """

    template_fields: Sequence[str] = ("bucket", "keys", "snapshot")
    ui_color = "#c7e0f4"

    def __init__(
        self,
        *,
        bucket: str,
        keys: list[str] | str | None = None,
        snapshot: dict | None = None,
        aws_conn_id: str | None = None,
        region: str | None = None,
        deferrable: bool = True,
        poll_interval: float = 60,
        concurrency: int = 16,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.bucket = bucket
        self.keys = keys
        self.snapshot = snapshot
        self.aws_conn_id = aws_conn_id
        self.region = region
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.concurrency = concurrency

    @cached_property
    def plan(self) -> Plan:
        return load_plan()

    @property
    def conn_id(self) -> str:
        return self.aws_conn_id or self.plan.connections.aws

    @property
    def bucket_region(self) -> str:
        return self.region or self.plan.regions.primary

    @cached_property
    def hook(self) -> DataProtectionS3Hook:
        return DataProtectionS3Hook(aws_conn_id=self.conn_id, max_pool=self.concurrency + 4)

    def _validate(self) -> None:
        try:
            validate_target(self.keys, self.snapshot)
        except RestoreTargetError as exc:
            raise AirflowFailException(f"{self.task_id}: {exc}") from None

    def check(self) -> dict[str, Any]:
        """Check once; return the counts. Raises GlacierObjectsMissingError when objects do not exist."""
        self._validate()
        client = self.hook.client(self.bucket_region)
        status = restore_status(client, self.bucket, self.keys, self.snapshot, self.concurrency)
        self.log.info("%s", progress(self.bucket, status))
        if status.missing:
            raise GlacierObjectsMissingError(missing_message(client, self.bucket, status))
        return {**status.to_dict(), "bucket": self.bucket}

    def poke(self, context) -> PokeReturnValue:
        """One check; truthy when every object is readable (the counts go to XCom)."""
        counts = self.check()
        return PokeReturnValue(is_done=counts["complete"], xcom_value=counts)

    def execute(self, context) -> dict[str, Any] | None:
        """Deferrable: check once, return the counts if already complete, else defer to the trigger with
        `timeout` as its deadline. Otherwise the usual poke / reschedule loop of BaseSensorOperator."""
        if not self.deferrable:
            return super().execute(context)
        counts = self.check()
        if counts["complete"]:
            return counts
        self.defer(
            trigger=S3GlacierRestoreTrigger(
                bucket=self.bucket,
                keys=[self.keys] if isinstance(self.keys, str) else self.keys,
                snapshot=self.snapshot,
                aws_conn_id=self.conn_id,
                region=self.bucket_region,
                poll_interval=self.poll_interval,
                timeout_at=time.time() + self.timeout,
                concurrency=self.concurrency,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout) + DEFERRAL_MARGIN,
        )

    def execute_complete(self, context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resume after the trigger: return the counts on success, raise on anything else."""
        if event is None:
            raise AirflowException(f"{self.task_id}: resumed without a trigger event; re-run the task")
        status = event.get("status")
        if status == "success":
            counts = {k: v for k, v in event.items() if k != "status"}
            self.log.info("s3://%s: %s of %s restored", self.bucket, counts.get("ready"), counts.get("total"))
            return counts
        if status == "error":
            message = event.get("message", "unknown error")
            if event.get("reason") == "missing":
                raise GlacierObjectsMissingError(message)
            raise AirflowException(f"{message}. The task can be retried once the cause is fixed")
        if status == "timeout":
            raise AirflowSensorTimeout(
                f"{event.get('message', 'restore not complete')} (sensor timeout {self.timeout:.0f} s). "
                "Restores already requested keep running: clear this task to wait again, or raise `timeout` "
                "(DEEP_ARCHIVE restores take up to 12 h with the Standard tier, 48 h with Bulk); objects "
                "never requested need a restore request first"
            )
        raise AirflowException(f"{self.task_id}: unexpected trigger event {event!r}")
