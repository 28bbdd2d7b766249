"""Operators of s3_temp_cleanup: expired temporary objects of one bucket; the run's report."""

from __future__ import annotations

from typing import Any

from dataprotection.cleanup import clean_bucket
from dataprotection.notifiers import CheckFailed
from dataprotection.operators.base import DataProtectionOperator, run_time_iso
from dataprotection.operators.monitoring import run_time
from dataprotection.reports import write_report


class S3TempCleanupOperator(DataProtectionOperator):
    """Deletes every version and delete marker of the expired keys under the temporary prefixes of
    one bucket (a source bucket in the primary region or a replica in the backup region)."""

    template_fields = ("bucket",)

    def __init__(self, *, bucket: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.bucket = bucket

    def execute(self, context) -> dict[str, Any]:
        replicas = {b.replica for b in self.plan.source_buckets if b.replica}
        client = self.backup_region if self.bucket in replicas else self.primary
        return clean_bucket(client, self.plan, self.bucket, run_time(context))


class S3TempCleanupReportOperator(DataProtectionOperator):
    """Writes the cleanup report (counts and bytes per bucket and prefix); fails if any deletion failed."""

    template_fields = ("results",)

    def __init__(self, *, results: Any, **kwargs) -> None:
        super().__init__(**kwargs)
        self.results = results

    def execute(self, context) -> dict[str, Any]:
        results = [r for r in self.results if r]
        totals = {k: sum(r[k] for r in results)
                  for k in ("keys_expired", "keys_kept", "versions_deleted", "delete_markers_deleted",
                            "bytes_deleted", "errors", "left_after_verify")}
        doc = {"format": 1, "kind": "temp-cleanup", "run_id": context["run_id"], "run_time": run_time_iso(context),
               "totals": totals, "buckets": results}
        location = write_report(self.primary, self.plan, "temp-cleanup", context["run_id"], doc)
        self.log.info("temp cleanup report %s: %d keys expired, %d versions + %d delete markers deleted, %d bytes",
                      location, totals["keys_expired"], totals["versions_deleted"], totals["delete_markers_deleted"],
                      totals["bytes_deleted"])
        if totals["errors"] or totals["left_after_verify"]:
            raise CheckFailed("temp_cleanup", totals["errors"] + totals["left_after_verify"], 0,
                              f"versions not deleted or still present after cleanup (report {location})")
        return {"location": location, **totals}
