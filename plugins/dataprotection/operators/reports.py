"""Writes the run manifest of a backup/archive run (`manifests/<kind>/<id>.json`)."""

from __future__ import annotations

from typing import Any

from dataprotection import backup
from dataprotection.operators.base import DataProtectionOperator, run_day, run_time_iso


class S3BackupRunManifestOperator(DataProtectionOperator):
    """Collects the snapshot summaries and table exports of a run into its run manifest."""

    template_fields = ("kind", "summaries", "tables")

    def __init__(self, *, kind: backup.Kind = "daily", summaries: Any, tables: Any = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.kind = kind
        self.summaries = summaries
        self.tables = tables

    def execute(self, context) -> dict[str, Any]:
        day = run_day(context)
        sid = backup.snapshot_id(self.kind, day)
        doc = backup.run_manifest(self.plan, self.kind, sid, day, list(self.summaries), list(self.tables or []),
                                  timestamp=run_time_iso(context))
        location = backup.write_run_manifest(self.primary, self.plan, self.kind, doc, sid)
        self.log.info("run manifest %s: %d buckets, %d objects (%d bytes), %d copied", location,
                      len(doc["snapshots"]), doc["totals"]["objects"], doc["totals"]["bytes"],
                      doc["totals"]["copied"])
        return {"location": location, **doc["totals"]}
