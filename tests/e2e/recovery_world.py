"""Demo data with a daily snapshot of every bucket, a weekly archive and table exports (core calls)."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg

from dataprotection import backup
from dataprotection.snapshot import take_snapshot
from dataprotection.tables import export_table
from devstack.seed import seed_all


def backed_up_world(plan, s3, s3_backup, app_db) -> str:
    """Seed, then back up as s3_daily_backup and s3_weekly_archive would; return the daily snapshot id."""
    seed_all(plan, s3, s3_backup, app_db)
    day = datetime.now(UTC).date()
    sid = backup.snapshot_id("daily", day)
    for bucket in plan.bucket_names:
        take_snapshot(s3, s3, backup.snapshot_spec(plan, "daily", bucket, sid, f"{sid}T02:00:00Z"))
    week = backup.snapshot_id("weekly", day)
    for b in plan.archived_buckets:
        take_snapshot(s3, s3, backup.snapshot_spec(plan, "weekly", b.name, week, f"{sid}T03:00:00Z"))
    with psycopg.connect(app_db) as conn:
        for table in plan.database.tables:
            export_table(conn, table, s3, plan.backup.bucket, backup.table_export_key(sid, table.name))
    return sid
