"""Operators of backup_monitoring: one check per task (a failed check is a failed task), the report."""

from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from dataprotection import monitoring
from dataprotection.notifiers import CheckFailed
from dataprotection.operators.base import DataProtectionOperator, run_time
from dataprotection.reports import write_report

ASSET_PREFIX = "daily_snapshot__"


class HealthCheckFailed(CheckFailed, AirflowFailException):
    """A failed health check: alerts at once, without retries (the next hourly run checks again).
    S3 errors while checking are ordinary exceptions and are retried."""


def snapshot_asset_name(bucket: str) -> str:
    return f"{ASSET_PREFIX}{bucket}"


def buckets_of_asset_events(events) -> set[str]:
    """Source buckets whose daily-snapshot Asset triggered this run (empty for scheduled runs)."""
    names = set()
    for asset in dict(events or {}):
        name = getattr(asset, "name", None) or str(asset)
        if name.startswith(ASSET_PREFIX):
            names.add(name.removeprefix(ASSET_PREFIX))
    return names


class BackupHealthCheckOperator(DataProtectionOperator):
    """Runs one health check; returns its result, raises CheckFailed (check, measured, threshold) if it failed.

    `check` is one of snapshot_freshness, archive_freshness, replication_config (with `bucket`),
    snapshot_spot_check, archive_spot_check (every plan bucket resp. every archived bucket).
    """

    template_fields = ("check", "bucket")
    CHECKS = ("snapshot_freshness", "archive_freshness", "replication_config", "snapshot_spot_check",
              "archive_spot_check")

    def __init__(self, *, check: str, bucket: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.check = check
        self.bucket = bucket

    def execute(self, context) -> dict[str, Any]:
        if self.check not in self.CHECKS:
            raise ValueError(f"check must be one of {', '.join(self.CHECKS)}, got {self.check!r}")
        outcome = self._run(context)
        self.log.info("%s: %s — measured %s, threshold %s. %s", outcome["check"], "ok" if outcome["ok"] else "FAILED",
                      outcome["measured"], outcome["threshold"], outcome["detail"])
        if not outcome["ok"]:
            # the check's result is kept for the report even though the task fails
            context["ti"].xcom_push(key="check", value=outcome)
            raise HealthCheckFailed(outcome["check"], outcome["measured"], outcome["threshold"], outcome["detail"])
        return outcome

    def _run(self, context) -> dict[str, Any]:
        plan, now = self.plan, run_time(context)
        if self.check == "snapshot_freshness":
            return monitoring.snapshot_freshness(self.primary, plan, self.bucket, now)
        if self.check == "archive_freshness":
            return monitoring.archive_freshness(self.primary, plan, self.bucket, now)
        if self.check == "replication_config":
            return monitoring.replication_config(self.primary, plan, self.bucket)
        seed = context["run_id"]
        if self.check == "snapshot_spot_check":
            fresh = buckets_of_asset_events(context.get("triggering_asset_events"))
            return monitoring.spot_check(self.primary, plan.backup.bucket, plan.bucket_names,
                                         sample=plan.monitoring.spot_check_sample, seed=seed,
                                         check="snapshot_spot_check", storage_class=plan.backup.storage_class,
                                         full=fresh, full_limit=plan.monitoring.fresh_snapshot_max_entries)
        return monitoring.spot_check(self.primary, plan.archive.bucket, [b.name for b in plan.archived_buckets],
                                     sample=plan.monitoring.spot_check_sample, seed=seed, check="archive_spot_check",
                                     storage_class=plan.archive.storage_class)


class BackupHealthReportOperator(DataProtectionOperator):
    """Collects every check's result (passed: return value; failed: the pushed `check` XCom; a check
    task that did not run at all is reported as such), writes the health report to the compliance
    bucket, and fails if any check failed."""

    template_fields = ("check_task_ids",)

    def __init__(self, *, check_task_ids: list[str], **kwargs) -> None:
        super().__init__(**kwargs)
        self.check_task_ids = check_task_ids

    def execute(self, context) -> dict[str, Any]:
        ti = context["ti"]
        checks, missing = [], []
        for task_id in self.check_task_ids:
            value = ti.xcom_pull(task_ids=task_id) or ti.xcom_pull(task_ids=task_id, key="check")
            if value:
                checks.append(value)
            else:
                missing.append(task_id)
                checks.append(monitoring.result(task_id, False, None, None, "the check did not produce a result"))
        doc = monitoring.health_report(checks, context["run_id"], run_time(context))
        doc["triggered_by_snapshot_of"] = sorted(buckets_of_asset_events(context.get("triggering_asset_events")))
        location = write_report(self.primary, self.plan, "backup-health", context["run_id"], doc)
        self.log.info("health report %s: %s (%d checks, failed: %s)", location,
                      "healthy" if doc["healthy"] else "UNHEALTHY", len(checks), ", ".join(doc["failed"]) or "none")
        if not doc["healthy"]:
            raise HealthCheckFailed("backup_health", f"{len(doc['failed'])} failed: {', '.join(doc['failed'])}",
                              "0 failed", f"report {location}")
        return {"location": location, "healthy": True, "checks": len(checks)}
