"""Failure alerts: one notifier for every DAG, routed as the plan's `alerts` section says.

`notifier: log` (default) writes one ERROR line per failure to the task log; `notifier: smtp`
also sends an e-mail through the SMTP provider's connection `smtp_conn_id` to `alerts.to`.
The message names the DAG, the task, the run, the check and the measured value when the task
raised a `CheckFailed`.
"""

from __future__ import annotations

import html
import logging

from airflow.sdk import BaseNotifier

from dataprotection.config import load_plan

log = logging.getLogger("dataprotection.alerts")


class CheckFailed(RuntimeError):
    """A health or verification check failed; carries what was measured against what was allowed."""

    def __init__(self, check: str, measured: object, threshold: object, detail: str = "") -> None:
        self.check, self.measured, self.threshold = check, measured, threshold
        super().__init__(f"check {check} failed: measured {measured}, threshold {threshold}. {detail}".strip())


def alert_message(context) -> tuple[str, str]:
    ti = context.get("ti") or context.get("task_instance")
    dag_id = getattr(ti, "dag_id", "?")
    task_id = getattr(ti, "task_id", "?")
    run_id = getattr(ti, "run_id", context.get("run_id", "?"))
    exc = context.get("exception")
    subject = f"[dataprotection] {dag_id}.{task_id} failed"
    lines = [f"DAG: {dag_id}", f"task: {task_id}", f"run: {run_id}"]
    if isinstance(exc, CheckFailed):
        lines += [f"check: {exc.check}", f"measured: {exc.measured}", f"threshold: {exc.threshold}"]
    if exc is not None:
        lines.append(f"error: {type(exc).__name__}: {exc}")
    return subject, "\n".join(lines)


class DataProtectionNotifier(BaseNotifier):
    """Sends the failure alert through the channel the plan names."""

    template_fields = ()

    def notify(self, context) -> None:
        subject, body = alert_message(context)
        log.error("%s | %s", subject, body.replace("\n", " | "))
        alerts = load_plan().alerts
        if alerts.notifier == "smtp" and alerts.to:
            from airflow.providers.smtp.notifications.smtp import SmtpNotifier

            SmtpNotifier(to=alerts.to, subject=subject, html_content=f"<pre>{html.escape(body)}</pre>",
                         smtp_conn_id=alerts.smtp_conn_id).notify(context)


def failure_notifier() -> DataProtectionNotifier:
    return DataProtectionNotifier()
