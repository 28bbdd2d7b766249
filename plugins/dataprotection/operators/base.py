"""Shared plumbing of the data-protection operators: the plan, S3 clients, the run's date."""

from __future__ import annotations

from datetime import date
from functools import cached_property

from airflow.sdk import BaseOperator

from dataprotection.config import Plan, load_plan
from dataprotection.hooks.s3 import DataProtectionS3Hook


def run_day(context) -> date:
    """The day a run is about: its data interval's end (scheduled), else its logical date / run_after."""
    for name in ("data_interval_end", "logical_date"):
        value = context.get(name)
        if value is not None:
            return value.date()
    return context["dag_run"].run_after.date()


def run_time_iso(context) -> str:
    for name in ("data_interval_end", "logical_date"):
        value = context.get(name)
        if value is not None:
            return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    return context["dag_run"].run_after.strftime("%Y-%m-%dT%H:%M:%SZ")


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
