"""Operators of gdpr_user_erasure: find (preview) → [approval] → erase → verify → certify.

Logs and XCom carry counts only; the object list lives in the preview in the compliance bucket.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from airflow.sdk.exceptions import AirflowException, AirflowFailException

from dataprotection import manifest as mf
from dataprotection.gdpr import erase, ledger, record
from dataprotection.gdpr.footprint import ErasureInputError, check_request_reference, check_user_id
from dataprotection.gdpr.locate import Footprint, locate
from dataprotection.hooks.appdb import AppDatabaseHook
from dataprotection.operators.base import DataProtectionOperator
from dataprotection.operators.gdpr_common import gdpr_secret
from dataprotection.versions import delete_versions, prefix_versions

log = logging.getLogger(__name__)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _flag(value: Any) -> bool:
    return value is True or str(value).strip().lower() in ("true", "1", "yes")


def proceed_unless_dry_run(preview: dict) -> bool:
    """ShortCircuit callable: a dry run (or nothing to erase) stops after the preview."""
    if preview["dry_run"]:
        log.info("dry run: preview written to %s; nothing will be erased", preview["preview"])
        return False
    return True


class _GdprOperator(DataProtectionOperator):
    template_fields = ("user_id", "request_reference")

    def __init__(self, *, user_id: str, request_reference: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.user_id = user_id
        self.request_reference = request_reference

    @cached_property
    def db_hook(self) -> AppDatabaseHook:
        return AppDatabaseHook(self.plan.connections.app_db)

    def checked(self) -> tuple[str, str]:
        try:
            return check_user_id(self.plan, self.user_id), check_request_reference(self.request_reference)
        except ErasureInputError as exc:
            raise AirflowFailException(f"{self.task_id}: {exc}") from None

    def locate(self, user_id: str) -> Footprint:
        with self.db_hook.get_conn() as conn:
            return locate(self.plan, conn, self.primary, self.backup_region, user_id)

    def clients(self) -> dict[str, Any]:
        """bucket -> client of its region (sources primary, replicas backup)."""
        out = {b.name: self.primary for b in self.plan.source_buckets}
        out.update({b.replica: self.backup_region for b in self.plan.source_buckets if b.replica})
        return out


class GdprErasurePreviewOperator(_GdprOperator):
    """Find the user's data everywhere (no changes); write the preview to the compliance bucket."""

    template_fields = (*_GdprOperator.template_fields, "dry_run")

    def __init__(self, *, dry_run: Any = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.dry_run = dry_run

    def execute(self, context) -> dict:
        user_id, reference = self.checked()
        fp = self.locate(user_id)
        key = record.preview_key(reference, context["run_id"])
        doc = {"request_reference": reference, "run_id": context["run_id"], "created_at": _now(),
               "dry_run": _flag(self.dry_run), **fp.to_preview()}
        mf.write_json(self.primary, self.plan.compliance_bucket, key, doc)
        counts = fp.counts()
        log.info("preview of request %s: %s", reference, json.dumps(counts, sort_keys=True))
        return {"preview": f"s3://{self.plan.compliance_bucket}/{key}", "dry_run": _flag(self.dry_run),
                "counts": counts, "approval_text": approval_text(reference, counts)}


def approval_text(reference: str, counts: dict) -> str:
    rows = ", ".join(f"{t}: {n}" for t, n in counts["rows"].items()) or "none"
    lines = [
        f"**GDPR erasure request {reference}** — approve to delete permanently (this cannot be undone):",
        f"- database rows: {rows}; URL values to null: {sum(counts['url_values'].values())}",
        f"- S3 keys: {counts['keys']}; versions: {counts['versions']}; delete markers: {counts['delete_markers']}"
        f" (locked, will be kept: {counts['locked_versions']})",
        f"- stored copies in backups/archives: {counts['stored_copies']} "
        f"({counts['manifest_entries']} manifest entries in {counts['manifest_parts']} manifest parts)",
    ]
    for bucket, c in sorted(counts["by_bucket"].items()):
        lines.append(f"  - s3://{bucket}: {c['versions']} versions, {c['delete_markers']} delete markers, "
                     f"{c['locked']} locked")
    return "\n".join(lines)


class GdprEraseOperator(_GdprOperator):
    """Erase what is found now (the preview's scope, re-read): versions, stored copies, manifests, rows."""

    def execute(self, context) -> dict:
        user_id, reference = self.checked()
        started = _now()
        fp = self.locate(user_id)
        sources = [v for v in fp.versions if v.role == "source"]
        replicas = [v for v in fp.versions if v.role == "replica"]
        s3 = erase.erase_versions(self.clients(), sources)
        s3r = erase.erase_versions(self.clients(), replicas)
        stored = erase.erase_stored(self.primary, fp)
        manifests = erase.redact_manifests(self.primary, fp)
        with self.db_hook.get_conn() as conn:
            rows = erase.erase_rows(conn, self.plan, user_id)
        deleted = s3.deleted + s3r.deleted
        failed = s3.failed + s3r.failed
        work = {
            "started_at": started, "finished_at": _now(), "try": context["ti"].try_number,
            "deleted_versions": [v.ident for v in deleted],
            "deleted_stored": [f"{b}\t{loc}" for b, loc in fp.stored_locations],
            "keys": [list(k) for k in fp.keys],
            "counts": {"source_versions": sum(not v.delete_marker for v in s3.deleted),
                       "source_delete_markers": sum(v.delete_marker for v in s3.deleted),
                       "replica_versions": sum(not v.delete_marker for v in s3r.deleted),
                       "replica_delete_markers": sum(v.delete_marker for v in s3r.deleted),
                       "blocked": len(s3.blocked) + len(s3r.blocked), "failed": len(failed),
                       "stored_copies": stored, "manifest_entries": manifests["entries"],
                       "manifest_snapshots": manifests["snapshots"], "rows": rows},
        }
        key = f"{record.work_prefix(context['run_id'])}erased-{work['try']}.json"
        mf.write_json(self.primary, self.plan.compliance_bucket, key, work)
        log.info("erased for request %s: %s", reference, json.dumps(work["counts"], sort_keys=True))
        if failed:
            raise AirflowException(
                f"{len(failed)} versions could not be deleted (codes {sorted({f['code'] for f in failed})}); "
                "nothing else is affected; clear this task to retry (it only deletes what is still there)")
        return work["counts"]


class GdprVerifyErasureOperator(_GdprOperator):
    """List every location again; fail (no certificate) if anything of the user remains unlocked."""

    def execute(self, context) -> dict:
        user_id, reference = self.checked()
        fp = self.locate(user_id)
        found = record.problems(self.plan, fp)
        if found:
            raise AirflowFailException(f"erasure of request {reference} is NOT complete: " + "; ".join(found) +
                                   ". No certificate was issued; clear the erase task to retry.")
        blocked = record.blocked_items(gdpr_secret(self.plan), fp, self.plan)
        log.info("verified: nothing of the user remains except %d locked versions", len(blocked))
        return {"verified_at": _now(), "blocked": blocked, "remaining_versions": len(fp.versions)}


class GdprErasureCertificateOperator(_GdprOperator):
    """Append the ledger entry, write the certificate, remove the preview and the work records."""

    template_fields = (*_GdprOperator.template_fields, "verification", "preview")

    def __init__(self, *, verification: Any, preview: Any, **kwargs) -> None:
        super().__init__(**kwargs)
        self.verification = verification
        self.preview = preview

    def execute(self, context) -> dict:
        user_id, reference = self.checked()
        secret = gdpr_secret(self.plan)
        client, bucket = self.primary, self.plan.compliance_bucket
        works = self._work_records(context["run_id"])
        idents = [i for w in works for i in w["deleted_versions"]]
        keys = sorted({tuple(k) for w in works for k in w["keys"]})
        blocked = self.verification["blocked"]
        entry = ledger.LedgerEntry(
            event="erased_with_blocked" if blocked else "erased", request_reference=reference,
            user_hash=ledger.user_hash(secret, user_id), run_id=context["run_id"],
            key_hashes=sorted({ledger.key_hash(secret, b, k) for b, k in keys}),
            counts=_sum_counts(works))
        ledger_key = ledger.append(client, self.plan, entry)
        certificate = {
            "format": 1, "request_reference": reference, "run_id": context["run_id"],
            "status": entry.event, "user_hash": entry.user_hash,
            "started_at": min((w["started_at"] for w in works), default=None),
            "erased_at": max((w["finished_at"] for w in works), default=None),
            "verified_at": self.verification["verified_at"], "issued_at": _now(),
            "counts": {**entry.counts, "keys": len(keys), "deleted_object_versions": len(set(idents))},
            "preview_counts": {k: v for k, v in self.preview["counts"].items() if k not in ("by_bucket",)},
            "deleted_versions_sha256": record.versions_sha256(idents),
            "blocked": blocked, "ledger_entry": f"s3://{bucket}/{ledger_key}",
        }
        key = record.certificate_key(reference, context["run_id"])
        mf.write_json(client, bucket, key, certificate)
        removed = self._remove_named_records(context["run_id"], reference)
        log.info("certificate s3://%s/%s issued (%s); %d working records naming keys removed", bucket, key,
                 entry.event, removed)
        return {"certificate": f"s3://{bucket}/{key}", "status": entry.event, "counts": certificate["counts"],
                "blocked": len(blocked), "deleted_versions_sha256": certificate["deleted_versions_sha256"]}

    def _work_records(self, run_id: str) -> list[dict]:
        client, bucket = self.primary, self.plan.compliance_bucket
        keys = [o["Key"] for p in client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=record.work_prefix(run_id)) for o in p.get("Contents", [])]
        return [doc for k in sorted(keys) if (doc := mf.read_json(client, bucket, k)) is not None]

    def _remove_named_records(self, run_id: str, reference: str) -> int:
        """The preview and work records name the user's keys: delete every version of them."""
        client, bucket = self.primary, self.plan.compliance_bucket
        objects = [v for prefix in (record.work_prefix(run_id), record.preview_key(reference, run_id))
                   for v in prefix_versions(client, bucket, prefix)]
        delete_versions(client, bucket, objects)
        return len(objects)


def _sum_counts(works: list[dict]) -> dict:
    total: dict[str, Any] = {}
    for w in works:
        for k, v in w["counts"].items():
            if k == "rows":
                for table, c in v.items():
                    t = total.setdefault("rows", {}).setdefault(table, {})
                    for name, n in c.items():
                        t[name] = t.get(name, 0) + n
            elif k != "blocked":
                total[k] = total.get(k, 0) + v
    total["blocked"] = works[-1]["counts"]["blocked"] if works else 0
    return total
