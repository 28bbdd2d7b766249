"""Operator of s3_protection_setup: drift between the plan and S3/IAM, fixed when `apply` is true."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from dataprotection.operators.base import DataProtectionOperator, run_time_iso
from dataprotection.operators.monitoring import HealthCheckFailed
from dataprotection.protection import Enforcer
from dataprotection.reports import write_report


def as_bool(value: Any, name: str) -> bool:
    """A boolean param rendered by a template ("True"/"False") or given natively."""
    text = str(value).strip().lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise ValueError(f"{name} must be true or false, got {value!r}")


class S3ProtectionSetupOperator(DataProtectionOperator):
    """Computes the drift of every plan bucket (and the replication role), fixes exactly that when
    `apply`, verifies by reading everything again, writes the drift report to the compliance bucket.
    Fails at once, without retries (check `protection_drift`) when drift remains: always with apply=false, and with
    apply=true when something could not be fixed (e.g. a missing source bucket)."""

    template_fields = ("apply",)

    def __init__(self, *, apply: Any = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.apply = apply

    @cached_property
    def iam(self):
        hook = self.s3_hook
        return hook.session.client("iam", region_name=self.plan.regions.primary, endpoint_url=hook.endpoint_url)

    def execute(self, context) -> dict[str, Any]:
        apply = as_bool(self.apply, "apply")
        result = Enforcer(self.plan, self.primary, self.backup_region, self.iam).run(apply=apply)
        doc = {"format": 1, "kind": "protection-setup", "run_id": context["run_id"],
               "run_time": run_time_iso(context), **result.to_dict()}
        location = write_report(self.primary, self.plan, "protection-setup", context["run_id"], doc)
        self.log.info("drift report %s: %d differences, %d fixed, %d changes", location, doc["drift_count"],
                      doc["fixed"], len(doc["changes"]))
        if result.unfixed:
            fields = ", ".join(f"{d.bucket}:{d.field}" for d in result.unfixed[:10])
            raise HealthCheckFailed("protection_drift", len(result.unfixed), 0,
                              f"{'not fixed' if apply else 'apply=false, only reported'}: {fields} "
                              f"(report {location})")
        return {"location": location, "drift_count": doc["drift_count"], "fixed": doc["fixed"],
                "changes": len(doc["changes"])}
