"""Typed DAG params shared by several manual DAGs (validated by the trigger form before a run exists)."""

from __future__ import annotations

from airflow.sdk import Param

from dataprotection.config import Plan

# A ticket id such as "DPO-2026-0042" or "JIRA:PRIV-17": letters, digits and . _ : # / -
REQUEST_REFERENCE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:#/-]{0,127}$"


def user_id_param(plan: Plan) -> Param:
    return Param(
        None,
        type="string",
        pattern=plan.gdpr.user_id_pattern,
        minLength=1,
        maxLength=256,
        description=f"Required: the application user id (must match {plan.gdpr.user_id_pattern}).",
    )


def request_reference_param() -> Param:
    return Param(
        None,
        type="string",
        pattern=REQUEST_REFERENCE_PATTERN,
        minLength=1,
        maxLength=128,
        description="Required: the ticket id of the data-subject request, e.g. DPO-2026-0042.",
    )


def dry_run_param(description: str = "Only find and report; change nothing.") -> Param:
    return Param(True, type="boolean", description=description)
