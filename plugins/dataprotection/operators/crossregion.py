"""Operators of s3_cross_region_recovery: plan (and the dry-run report), prepare the target bucket,
copy from the replica server-side, verify every key and checksum, write the recovery report.

Plan, copy and verification re-apply the GDPR erasure ledger (each loads it afresh): keys an erasure
removed are not copied and not expected in the target; the reports count them under `gdpr_ledger`."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from dataprotection import crossregion
from dataprotection.gdpr.ledger import Redactor
from dataprotection.listing import is_versioned, iso
from dataprotection.operators.base import DataProtectionOperator
from dataprotection.operators.gdpr_common import load_redactor
from dataprotection.recovery import ensure_recovery_bucket
from dataprotection.reports import write_report

REPORT_KIND = "cross-region-recovery"
METHOD = ("server-side CopyObject in the target's region with CopySource in the backup region; "
          "no object was downloaded or written to local disk")


def _now() -> str:
    return iso(datetime.now(UTC))


def _flag(value: Any) -> bool:
    return str(value).strip().lower() in ("true", "1")


class _CrossRegionOperator(DataProtectionOperator):
    """Clients in the replica's and the target's regions for a recovery spec (a dict from the plan task)."""

    def spec(self, recovery: dict) -> crossregion.CrossRegionSpec:
        return crossregion.CrossRegionSpec.from_dict(recovery["spec"])

    def clients(self, spec: crossregion.CrossRegionSpec):
        return self.s3_hook.client(spec.replica_region), self.s3_hook.client(spec.target_region)

    def redactor(self) -> Redactor:
        """What the GDPR erasure ledger says was erased (never restored from the replica)."""
        return load_redactor(self.primary, self.plan)

    def check_original_target(self, target, spec: crossregion.CrossRegionSpec) -> None:
        """Writing back into the live bucket is only allowed when what is overwritten stays recoverable."""
        if spec.target != "original":
            return
        if not crossregion.target_exists(target, spec.target_bucket):
            raise crossregion.CrossRegionError(
                f"target 'original': the bucket {spec.target_bucket!r} does not exist in {spec.target_region}; "
                "recover into a new bucket (target 'new'), or create it (versioned) first and run again"
            )
        if not is_versioned(target, spec.target_bucket):
            raise crossregion.CrossRegionError(
                f"target 'original': {spec.target_bucket!r} is not versioned, so copying into it would destroy "
                "the objects it replaces; recover into a new bucket (target 'new') or enable versioning first"
            )


class S3CrossRegionPlanOperator(_CrossRegionOperator):
    """Validates the params, names the replica and the target, and counts what would be copied.
    With `dry_run` it also writes that plan as the run's report. Returns the spec and the plan."""

    template_fields = ("source_bucket", "target", "dry_run")

    def __init__(self, *, source_bucket: str, target: str, dry_run: Any, **kwargs) -> None:
        super().__init__(**kwargs)
        self.source_bucket = source_bucket
        self.target = target
        self.dry_run = dry_run

    def execute(self, context) -> dict:
        started = _now()
        spec = crossregion.recovery_spec(self.plan, self.source_bucket, self.target)
        replica, target = self.clients(spec)
        self.check_original_target(target, spec)
        planned = crossregion.plan_recovery(replica, target, spec, self.redactor())
        self.log.info("recovery of %s from s3://%s (%s) into s3://%s (%s): %d replica objects, %d to copy (%d bytes), "
                      "%d already present, %d erased under GDPR (ledger) skipped", spec.source_bucket,
                      spec.replica_bucket, spec.replica_region, spec.target_bucket, spec.target_region,
                      planned.objects, planned.copied, planned.copied_bytes, planned.present, planned.erased_skipped)
        dry_run = _flag(self.dry_run)
        if dry_run:
            doc = {"kind": REPORT_KIND, "dry_run": True, "status": "planned", "run_id": context["run_id"],
                   "params": {"source_bucket": self.source_bucket, "target": self.target, "dry_run": True},
                   "spec": spec.to_dict(), "plan": planned.to_dict(), "method": METHOD,
                   "gdpr_ledger": {"erased_skipped": planned.erased_skipped},
                   "started_at": started, "finished_at": _now()}
            uri = write_report(self.primary, self.plan, REPORT_KIND, context["run_id"], doc)
            self.log.info("dry run: nothing copied; report %s", uri)
        return {"source_bucket": spec.source_bucket, "objects": planned.objects, "to_copy": planned.copied,
                "dry_run": dry_run, "spec": spec.to_dict(), "plan": planned.to_dict(), "started_at": started}


class S3CrossRegionTargetOperator(_CrossRegionOperator):
    """Creates the new target bucket hardened (versioning, AES256 default encryption, public-access
    block), or checks that the original bucket exists and is versioned."""

    template_fields = ("recovery",)

    def __init__(self, *, recovery: Any, **kwargs) -> None:
        super().__init__(**kwargs)
        self.recovery = recovery

    def execute(self, context) -> dict:
        t0 = time.monotonic()
        spec = self.spec(self.recovery)
        _, target = self.clients(spec)
        created = False
        if spec.target == "new":
            created = ensure_recovery_bucket(target, spec.target_bucket, spec.target_region)
        else:
            self.check_original_target(target, spec)
        self.log.info("target s3://%s ready (%s)", spec.target_bucket, "created" if created else "existing")
        return {"target_bucket": spec.target_bucket, "created": created, "duration_s": round(time.monotonic() - t0, 3)}


class S3CrossRegionCopyOperator(_CrossRegionOperator):
    """Copies every replica object the target lacks or has with another size/ETag, server-side and
    in parallel (cross-region CopyObject), except keys erased under GDPR. A re-run copies nothing more."""

    template_fields = ("recovery",)

    def __init__(self, *, recovery: Any, **kwargs) -> None:
        super().__init__(**kwargs)
        self.recovery = recovery

    def execute(self, context) -> dict:
        spec = self.spec(self.recovery)
        replica, target = self.clients(spec)
        result = crossregion.copy_from_replica(replica, target, spec, self.redactor())
        return result.to_dict()


class S3CrossRegionVerifyOperator(_CrossRegionOperator):
    """Checks that every live replica key (except keys erased under GDPR) is in the target with the same
    size and checksum. On a difference it writes the failure into the run's report, then fails."""

    template_fields = ("recovery",)

    def __init__(self, *, recovery: Any, **kwargs) -> None:
        super().__init__(**kwargs)
        self.recovery = recovery

    def execute(self, context) -> dict:
        spec = self.spec(self.recovery)
        replica, target = self.clients(spec)
        result = crossregion.verify_recovery(replica, target, spec, self.redactor())
        if not result.ok:
            doc = {"kind": REPORT_KIND, "dry_run": False, "status": "verification_failed",
                   "run_id": context["run_id"], "spec": spec.to_dict(), "verification": result.to_dict(),
                   "gdpr_ledger": {"erased_skipped": result.erased_skipped}, "method": METHOD,
                   "started_at": self.recovery.get("started_at"), "finished_at": _now()}
            uri = write_report(self.primary, self.plan, REPORT_KIND, context["run_id"], doc)
            raise crossregion.CrossRegionError(
                f"s3://{spec.target_bucket} does not match its replica s3://{spec.replica_bucket}: {result.missing} "
                f"keys missing (e.g. {result.missing_sample[:3]}), {result.mismatched} differ "
                f"(e.g. {result.mismatch_sample[:3]}). Re-run copy_from_replica, then this task; report {uri}"
            )
        return result.to_dict()


class S3CrossRegionReportOperator(_CrossRegionOperator):
    """Writes the recovery report (plan, copies, verification by method, durations) to the compliance bucket."""

    template_fields = ("recovery", "setup", "copied", "verified")

    def __init__(self, *, recovery: Any, setup: Any, copied: Any, verified: Any, **kwargs) -> None:
        super().__init__(**kwargs)
        self.recovery = recovery
        self.setup = setup
        self.copied = copied
        self.verified = verified

    def execute(self, context) -> dict:
        spec = self.spec(self.recovery)
        doc = {
            "kind": REPORT_KIND,
            "dry_run": False,
            "status": "ok",
            "run_id": context["run_id"],
            "params": {k: context["params"][k] for k in ("source_bucket", "target", "dry_run")},
            "spec": spec.to_dict(),
            "target_created": self.setup["created"],
            "plan": self.recovery["plan"],
            "copy": self.copied,
            "verification": self.verified,
            "gdpr_ledger": {"erased_skipped": self.copied.get("erased_skipped", 0)},
            "method": METHOD,
            "phases_s": {
                "plan": self.recovery["plan"]["duration_s"],
                "prepare_target": self.setup["duration_s"],
                "copy": self.copied["duration_s"],
                "verify": self.verified["duration_s"],
            },
            "started_at": self.recovery["started_at"],
            "finished_at": _now(),
        }
        uri = write_report(self.primary, self.plan, REPORT_KIND, context["run_id"], doc)
        self.log.info("recovered s3://%s from s3://%s: %d objects (%d bytes), %d copied, all verified %s; report %s",
                      spec.target_bucket, spec.replica_bucket, self.verified["objects"], self.verified["bytes"],
                      self.copied["copied"], self.verified["by_method"], uri)
        return {"report": uri, "objects": self.verified["objects"], "bytes": self.verified["bytes"],
                "copied": self.copied["copied"], "verified": self.verified["verified"],
                "erased_skipped": self.copied.get("erased_skipped", 0)}
