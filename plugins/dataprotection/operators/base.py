"""Shared plumbing of the data-protection operators: the plan, S3 clients, the run's date."""

from __future__ import annotations

from datetime import UTC, date, datetime
from functools import cached_property

from airflow.sdk import BaseOperator

from dataprotection.config import Plan, load_plan
from dataprotection.hooks.s3 import DataProtectionS3Hook


def run_time(context) -> datetime:
    """The moment a run is about, in UTC: its data interval's end (scheduled), else its logical date,
    else when it was triggered. Decisions use this clock, never now(), so a re-run decides the same."""
    for name in ("data_interval_end", "logical_date"):
        value = context.get(name)
        if value is not None:
            return value.astimezone(UTC)
    return context["dag_run"].run_after.astimezone(UTC)


def run_day(context) -> date:
    return run_time(context).date()


def run_time_iso(context) -> str:
    return run_time(context).strftime("%Y-%m-%dT%H:%M:%SZ")


class DataProtectionOperator(BaseOperator):
    """Base: holds `aws_conn_id`; gives the validated plan and per-region S3 clients."""

    def __init__(self, *, aws_conn_id: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.aws_conn_id = aws_conn_id

    @cached_property
    def plan(self) -> Plan:
        return load_plan()

    @cached_property
    def s3_hook(self) -> DataProtectionS3Hook:
        return DataProtectionS3Hook(aws_conn_id=self.aws_conn_id or self.plan.connections.aws,
                                    max_pool=self.plan.backup.max_concurrency + 8)

    @property
    def primary(self):
        return self.s3_hook.client(self.plan.regions.primary)

    @property
    def backup_region(self):
        return self.s3_hook.client(self.plan.regions.backup)
