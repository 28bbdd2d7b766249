"""Reports and records written to the compliance bucket: `reports/<kind>/<run id>.json`."""

from __future__ import annotations

import re

from dataprotection.config import Plan
from dataprotection.manifest import write_json

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def report_key(kind: str, run_id: str, suffix: str = "") -> str:
    """A safe key for a run's report: the run id with anything but [A-Za-z0-9._-] replaced."""
    return f"reports/{_UNSAFE.sub('_', kind)}/{_UNSAFE.sub('_', run_id)}{suffix}.json"


def write_report(client, plan: Plan, kind: str, run_id: str, doc: dict, suffix: str = "") -> str:
    """Write `doc` as the report of `run_id`; return its s3:// URI."""
    key = report_key(kind, run_id, suffix)
    write_json(client, plan.compliance_bucket, key, doc)
    return f"s3://{plan.compliance_bucket}/{key}"
