"""backup_monitoring — hourly (and on every fresh daily snapshot) health checks of the backups."""

from __future__ import annotations

from airflow.sdk import Asset, AssetAny, dag
from airflow.timetables.assets import AssetOrTimeSchedule
from airflow.timetables.trigger import CronTriggerTimetable

from dataprotection.config import load_plan
from dataprotection.defaults import START_DATE, default_args
from dataprotection.operators.monitoring import (
    BackupHealthCheckOperator,
    BackupHealthReportOperator,
    snapshot_asset_name,
)

PLAN = load_plan()
SNAPSHOT_ASSETS = [Asset(name=snapshot_asset_name(b), uri=f"s3://{PLAN.backup.bucket}/snapshots/{b}/")
                   for b in PLAN.bucket_names]
M = PLAN.monitoring

DOC = f"""
### Backup monitoring

One task per check, so a failed check is a failed task (and an alert naming the check and the value):

- `snapshot_freshness_<bucket>`: the newest complete daily snapshot is younger than {M.snapshot_max_age_hours} h;
- `archive_freshness_<bucket>`: the newest complete weekly archive is younger than {M.archive_max_age_days} days;
- `replication_config_<bucket>` (critical buckets): replication configured as the plan says, own replica only;
- `snapshot_spot_check` / `archive_spot_check`: {M.spot_check_sample} random manifest entries per bucket —
  each stored copy exists with the manifest's size, storage class and checksum (HEAD only);
- `write_health_report` (runs whatever happened): every check, result, measured value and threshold in
  `s3://{PLAN.compliance_bucket}/reports/backup-health/<run id>.json`; fails if any check failed.

Runs hourly and whenever a daily snapshot Asset (`daily_snapshot__<bucket>`) is updated: such a run
verifies **every** entry (up to {M.fresh_snapshot_max_entries}) of the fresh snapshots. Ages are measured
against the run's time.
"""


@dag(
    dag_id="backup_monitoring",
    schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable("@hourly", timezone="UTC"),
                                 assets=AssetAny(*SNAPSHOT_ASSETS)),  # any one fresh snapshot
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    doc_md=DOC,
    tags=["dataprotection", "monitoring", "s3"],
    default_args=default_args(),
)
def backup_monitoring():
    checks = [BackupHealthCheckOperator(task_id=f"snapshot_freshness_{b}", check="snapshot_freshness", bucket=b)
              for b in PLAN.bucket_names]
    checks += [BackupHealthCheckOperator(task_id=f"archive_freshness_{b.name}", check="archive_freshness",
                                         bucket=b.name) for b in PLAN.archived_buckets]
    checks += [BackupHealthCheckOperator(task_id=f"replication_config_{b.name}", check="replication_config",
                                         bucket=b.name) for b in PLAN.source_buckets if b.critical]
    checks.append(BackupHealthCheckOperator(task_id="snapshot_spot_check", check="snapshot_spot_check"))
    if PLAN.archived_buckets:
        checks.append(BackupHealthCheckOperator(task_id="archive_spot_check", check="archive_spot_check"))
    report = BackupHealthReportOperator(task_id="write_health_report", check_task_ids=[c.task_id for c in checks],
                                        trigger_rule="all_done")
    checks >> report


dag = backup_monitoring()

if __name__ == "__main__":
    dag.test()
