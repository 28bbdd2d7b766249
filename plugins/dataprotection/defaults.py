"""Defaults shared by every DAG: owner, retries with exponential backoff, the failure notifier."""

from __future__ import annotations

from datetime import timedelta

import pendulum

from dataprotection.notifiers import failure_notifier

START_DATE = pendulum.datetime(2026, 1, 1, tz="UTC")
OWNER = "data-protection"


def default_args(**overrides) -> dict:
    args = {
        "owner": OWNER,
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=30),
        "on_failure_callback": failure_notifier(),
    }
    args.update(overrides)
    return args
