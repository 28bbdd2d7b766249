"""Operators of s3_complete_recovery: plan (and dry-run report), hardened target buckets, restore
requests for an archive snapshot, copy back with verification, and the recovery report.

The copy back re-applies the GDPR erasure ledger: keys an erasure removed are not copied into the
targets (nor expected there by the verification); the report counts them under `gdpr_ledger`.
Restore requests still cover every object the snapshot's manifest references: the erasure normally
removes an erased key's entries from the manifests, and any it left (e.g. copies under Object Lock) must
be restored too, because the restore sensor waits for every object of the snapshot. A restored archive
copy is only readable in the archive bucket for `restore_days`; it is never copied back."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from dataprotection import recovery
from dataprotection.archive import request_restores, snapshot_locations, validate_request
from dataprotection.listing import iso
from dataprotection.operators.base import DataProtectionOperator
from dataprotection.operators.gdpr_common import load_redactor
from dataprotection.reports import write_report
from dataprotection.restore import restore_snapshot


def _now() -> str:
    return iso(datetime.now(UTC))


class S3CompleteRecoveryPlanOperator(DataProtectionOperator):
    """Validates the params, picks the archive snapshot of each archived bucket at or before
    `recovery_date`, and returns them. With `dry_run` it also writes the estimate as the report."""

    template_fields = ("recovery_date", "tier", "restore_days", "target_suffix", "dry_run")

    def __init__(self, *, recovery_date: str, tier: str, restore_days: Any, target_suffix: str, dry_run: Any,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.recovery_date = recovery_date
        self.tier = tier
        self.restore_days = restore_days
        self.target_suffix = target_suffix
        self.dry_run = dry_run

    def execute(self, context) -> list[dict]:
        day = recovery.parse_day(self.recovery_date, "recovery_date")
        validate_request(self.tier, int(self.restore_days), self.plan.archive.storage_class)
        snapshots = recovery.resolve_archive_snapshots(self.plan, self.primary, day, self.target_suffix)
        estimate = recovery.estimate(snapshots, self.tier, int(self.restore_days))
        chosen = [(s["source_bucket"], s["snapshot_id"], s["objects"]) for s in snapshots]
        self.log.info("recovery as of %s: %s", day or "the latest archive", chosen)
        if str(self.dry_run).lower() in ("true", "1"):
            doc = {"dry_run": True, "run_id": context["run_id"], "recovery_date": str(day or "latest"),
                   "snapshots": snapshots, "estimate": estimate, "written_at": _now()}
            uri = write_report(self.primary, self.plan, "complete-recovery", context["run_id"], doc)
            self.log.info("dry run: would restore %d objects (%d bytes) into %s; report %s",
                          estimate["objects"], estimate["bytes"], [s["target_bucket"] for s in snapshots], uri)
        return snapshots


class S3RecoveryBucketsOperator(DataProtectionOperator):
    """Creates the target buckets (versioning, AES256 default encryption, public-access block)."""

    template_fields = ("snapshots",)

    def __init__(self, *, snapshots: Any, **kwargs) -> None:
        super().__init__(**kwargs)
        self.snapshots = snapshots

    def execute(self, context) -> dict:
        started, t0 = _now(), time.monotonic()
        created = [s["target_bucket"] for s in self.snapshots
                   if recovery.ensure_recovery_bucket(self.primary, s["target_bucket"], self.plan.regions.primary)]
        return {"created": created, "started_at": started, "finished_at": _now(),
                "duration_s": round(time.monotonic() - t0, 3)}


class S3ArchiveRestoreRequestOperator(DataProtectionOperator):
    """Requests RestoreObject for exactly the objects one archive snapshot references (idempotent)."""

    template_fields = ("snapshot", "tier", "restore_days")

    def __init__(self, *, snapshot: Any, tier: str, restore_days: Any, **kwargs) -> None:
        super().__init__(**kwargs)
        self.snapshot = snapshot
        self.tier = tier
        self.restore_days = restore_days

    def execute(self, context) -> dict:
        started, t0 = _now(), time.monotonic()
        s = self.snapshot
        keys = snapshot_locations(self.primary, s["store_bucket"], s["source_bucket"], s["snapshot_id"])
        status = request_restores(self.primary, s["store_bucket"], keys, days=int(self.restore_days), tier=self.tier,
                                  storage_class=self.plan.archive.storage_class)
        if status.missing:
            raise RuntimeError(f"{len(status.missing)} archived objects of snapshot {s['snapshot_id']} "
                               f"({s['source_bucket']}) are missing, e.g. {status.missing[:3]}")
        return {"source_bucket": s["source_bucket"], **status.to_dict(), "started_at": started,
                "finished_at": _now(), "duration_s": round(time.monotonic() - t0, 3)}


class S3SnapshotCopyBackOperator(DataProtectionOperator):
    """Copies a (restored) snapshot into its target bucket server-side, verifying every checksum; keys
    erased under GDPR (the erasure ledger) are skipped and counted."""

    template_fields = ("snapshot",)

    def __init__(self, *, snapshot: Any, **kwargs) -> None:
        super().__init__(**kwargs)
        self.snapshot = snapshot

    def execute(self, context) -> dict:
        started, t0 = _now(), time.monotonic()
        s = self.snapshot
        result = restore_snapshot(self.primary, self.primary, store_bucket=s["store_bucket"],
                                  source_bucket=s["source_bucket"], snapshot_id=s["snapshot_id"],
                                  target_bucket=s["target_bucket"], concurrency=self.plan.backup.max_concurrency,
                                  skip_existing=True, redactor=load_redactor(self.primary, self.plan))
        return {"source_bucket": s["source_bucket"], "target_bucket": s["target_bucket"],
                "snapshot_id": s["snapshot_id"], "objects": result.objects, "bytes": result.bytes,
                "verified": result.verified, "already_present": result.skipped_present,
                "erased_skipped": result.erased_skipped,
                "started_at": started, "finished_at": _now(), "duration_s": round(time.monotonic() - t0, 3)}


class S3RecoveryReportOperator(DataProtectionOperator):
    """Writes the recovery report (counts, bytes, measured duration of each phase) to the compliance bucket."""

    template_fields = ("snapshots", "setup", "requests", "copies")

    def __init__(self, *, snapshots: Any, setup: Any, requests: Any, copies: Any, **kwargs) -> None:
        super().__init__(**kwargs)
        self.snapshots = snapshots
        self.setup = setup
        self.requests = requests
        self.copies = copies

    def execute(self, context) -> dict:
        requests, copies = list(self.requests), list(self.copies)
        waited = _seconds(max(r["finished_at"] for r in requests), min(c["started_at"] for c in copies))
        doc = {
            "dry_run": False,
            "run_id": context["run_id"],
            "params": {k: context["params"][k] for k in ("recovery_date", "tier", "restore_days", "target_suffix")},
            "snapshots": self.snapshots,
            "targets": [c["target_bucket"] for c in copies],
            "objects": sum(c["objects"] for c in copies),
            "bytes": sum(c["bytes"] for c in copies),
            "verified": sum(c["verified"] for c in copies),
            "gdpr_ledger": {"erased_skipped": sum(c.get("erased_skipped", 0) for c in copies)},
            "restore_requests": {"requested": sum(r["requested"] for r in requests),
                                 "already_restored": sum(r["restored"] for r in requests),
                                 "not_archived": sum(r["not_archived"] for r in requests)},
            "phases_s": {
                "create_targets": self.setup["duration_s"],
                "restore_requests": max(r["duration_s"] for r in requests),
                "wait_for_restore": waited,
                "copy_back_and_verify": max(c["duration_s"] for c in copies),
            },
            "started_at": self.setup["started_at"],
            "finished_at": _now(),
        }
        doc["total_s"] = _seconds(doc["started_at"], doc["finished_at"])
        uri = write_report(self.primary, self.plan, "complete-recovery", context["run_id"], doc)
        self.log.info("recovered %d objects (%d bytes) into %s, all verified; report %s",
                      doc["objects"], doc["bytes"], doc["targets"], uri)
        return {"report": uri, "objects": doc["objects"], "bytes": doc["bytes"],
                "erased_skipped": doc["gdpr_ledger"]["erased_skipped"], "total_s": doc["total_s"]}


def _seconds(start: str, end: str) -> float:
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    return max(0.0, (datetime.strptime(end, fmt) - datetime.strptime(start, fmt)).total_seconds())
