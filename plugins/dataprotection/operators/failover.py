"""Operator of s3_regional_failover (and of the drill's failover/failback): switch the plan's DNS record
and function configuration to the backup region or back, verify, report."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from dataprotection import failover
from dataprotection.hooks.failover import lambda_client, route53_client
from dataprotection.notifiers import CheckFailed
from dataprotection.operators.base import DataProtectionOperator
from dataprotection.reports import write_report

REPORT_KIND = "regional-failover"


class VerificationFailed(CheckFailed, AirflowFailException):
    """A verification found the result wrong: retrying would not change it, so the task fails at once."""


def flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text not in ("true", "false", "1", "0"):
        raise ValueError(f"dry_run: {value!r} is not allowed; expected true or false")
    return text in ("true", "1")


def raise_if_unverified(report: dict) -> None:
    bad = failover.failed_checks(report)
    if bad:
        first = bad[0]
        what = f"{first['bucket']}/{first['key']}" if "bucket" in first else first["check"]
        raise VerificationFailed(f"{report['scope']}_{report['direction']}_verification",
                          f"{len(bad)} failed checks", "0 failed checks",
                          f"first: {first['check']} {what}: {first.get('error') or first}")


class _FailoverClientsMixin(DataProtectionOperator):
    @cached_property
    def failover_clients(self) -> failover.Clients:
        conn = self.aws_conn_id or self.plan.connections.aws
        return failover.Clients(
            route53=route53_client(conn),
            lambda_=lambda_client(conn, failover.function_region(self.plan)),
            s3={self.plan.regions.primary: self.primary, self.plan.regions.backup: self.backup_region},
        )


class RegionalFailoverOperator(_FailoverClientsMixin):
    """Fail over (or back) the production record and function; a dry run only reports the changes.

    Writes `reports/regional-failover/<run id>-<direction>.json`; raises CheckFailed when the
    verification finds the record, the function or a bucket not as expected."""

    template_fields = ("direction", "dry_run")

    def __init__(self, *, direction: str, dry_run: Any = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.direction = direction
        self.dry_run = dry_run

    def execute(self, context) -> dict:
        direction = failover.check_direction(str(self.direction))
        dry_run = flag(self.dry_run)
        sc = failover.scope(self.plan, "production")
        report = failover.run(self.plan, self.failover_clients, sc, direction, dry_run=dry_run)
        report["run_id"] = context["run_id"]
        location = write_report(self.primary, self.plan, REPORT_KIND, context["run_id"], report,
                                suffix=f"-{direction}")
        self.log.info("%s %s (dry run %s): report %s", sc.name, direction, dry_run, location)
        raise_if_unverified(report)
        return {"report": location, "direction": direction, "dry_run": dry_run, "verified": report["verified"],
                "record_changes": report["record"]["changes"],
                "changed_variables": sorted(report["function"]["changed_variables"])}
