"""`make demo` runs the DAGs others depend on first, then every other DAG (new ones automatically)."""

from devstack import demo


def test_demo_runs_protection_backup_and_archive_first_then_everything_else():
    ids = demo._dag_ids()
    on_disk = sorted(p.stem for p in (demo.REPO / "dags").glob("*.py") if not p.name.startswith("_"))
    assert sorted(ids) == on_disk and len(ids) == len(set(ids))
    present = [d for d in demo.RUN_FIRST if d in on_disk]
    assert ids[:len(present)] == present
    if "backup_monitoring" in ids and "s3_daily_backup" in ids:
        assert ids.index("backup_monitoring") > ids.index("s3_weekly_archive") > ids.index("s3_daily_backup")
    manual = [d for d in ids[len(present):] if (demo.DEMO_CONF / f"{d}.json").exists()]
    assert ids[len(ids) - len(manual):] == manual  # manual DAGs last
