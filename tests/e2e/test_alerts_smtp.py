"""Alerts by e-mail: with `alerts.notifier: smtp`, a failed monitoring check sends a mail through the SMTP
provider (a real SMTP server on 127.0.0.1) naming the DAG, the task, the check and the measured value."""

import email
import json
import socket

import pytest
import yaml
from aiosmtpd.controller import Controller

from dataprotection.config import DEFAULT_PLAN_PATH
from devstack.seed import create_buckets

pytestmark = pytest.mark.airflow


class _Inbox:
    """aiosmtpd handler keeping every message received: (recipients, parsed message)."""

    def __init__(self) -> None:
        self.messages = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.messages.append((envelope.rcpt_tos, email.message_from_bytes(envelope.original_content)))
        return "250 OK"


@pytest.fixture
def inbox(monkeypatch, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    handler = _Inbox()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    plan = yaml.safe_load(DEFAULT_PLAN_PATH.read_text())
    plan["alerts"] = {"notifier": "smtp", "smtp_conn_id": "smtp_alerts", "to": ["oncall@example.org"]}
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    monkeypatch.setenv("DATAPROTECTION_CONFIG", str(path))
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_ALERTS", json.dumps({
        "conn_type": "smtp", "host": "127.0.0.1", "port": port,
        "extra": {"from_email": "dataprotection@example.org", "disable_ssl": True, "disable_tls": True,
                  "timeout": 10, "retry_limit": 1}}))
    yield handler
    controller.stop()


def test_failed_check_sends_an_email_naming_check_and_value(run_dag, s3, s3_backup, plan, inbox):
    from dags.backup_monitoring import dag

    create_buckets(plan, s3, s3_backup)  # buckets, but no snapshot, no replication: every check fails
    run = run_dag(dag)
    assert run.state == "failed"
    subjects = {m["Subject"]: (to, m) for to, m in inbox.messages}
    bucket = plan.bucket_names[0]
    subject = f"[dataprotection] backup_monitoring.snapshot_freshness_{bucket} failed"
    assert subject in subjects, sorted(subjects)
    to, message = subjects[subject]
    assert to == ["oncall@example.org"]
    body = (message.get_payload(0) if message.is_multipart() else message).get_payload(decode=True).decode()
    for line in ("DAG: backup_monitoring", f"task: snapshot_freshness_{bucket}",
                 f"check: snapshot_freshness:{bucket}", "measured: None", "threshold: &lt; 26 h"):
        assert line in body, body
    assert len(inbox.messages) == len(run.failed())  # one mail per failed task
