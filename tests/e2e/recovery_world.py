"""Demo data with a daily snapshot of every bucket, a weekly archive and table exports (core calls)."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg

from dataprotection import backup, failover, monitoring
from dataprotection.protection import Enforcer
from dataprotection.snapshot import read_summary, take_snapshot
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


def protected_world(plan, s3, s3_backup, endpoint: str, boto_session, day):
    """Seeded buckets, s3_protection_setup's state applied, a daily snapshot of every bucket and a weekly
    archive taken at 02:00 of `day`; returns when the daily snapshot was taken (monitoring's clock)."""
    seed_all(plan, s3, s3_backup, None)
    iam = boto_session.client("iam", region_name=plan.regions.primary, endpoint_url=endpoint)
    Enforcer(plan, s3, s3_backup, iam).run(apply=True)
    for kind in ("daily", "weekly"):
        for bucket in backup.buckets_for(plan, kind):
            spec = backup.snapshot_spec(plan, kind, bucket, backup.snapshot_id(kind, day), f"{day}T02:00:00Z")
            take_snapshot(s3, s3, spec)
    return monitoring.taken_at(read_summary(s3, plan.backup.bucket, plan.bucket_names[0], day.isoformat()))


def failover_state(plan, boto_session, endpoint: str):
    """A function returning the zone's record sets and both functions' environments, to compare later."""
    route53 = boto_session.client("route53", region_name="us-east-1", endpoint_url=endpoint)
    lam = boto_session.client("lambda", region_name=failover.function_region(plan), endpoint_url=endpoint)
    zone = failover.zone_id(route53, plan.failover.hosted_zone)

    def state():
        return (route53.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"],
                {n: lam.get_function_configuration(FunctionName=n)["Environment"]
                 for n in (plan.failover.function_name, plan.drill.function_name)})

    return state
