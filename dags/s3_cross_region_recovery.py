"""s3_cross_region_recovery — restore a bucket from its replica in the backup region, server-side."""

from __future__ import annotations

from airflow.providers.standard.operators.python import ShortCircuitOperator
from airflow.sdk import Param, dag

from dataprotection.config import load_plan
from dataprotection.crossregion import TARGET_SUFFIX
from dataprotection.defaults import START_DATE, default_args
from dataprotection.operators.crossregion import (
    S3CrossRegionCopyOperator,
    S3CrossRegionPlanOperator,
    S3CrossRegionReportOperator,
    S3CrossRegionTargetOperator,
    S3CrossRegionVerifyOperator,
)

PLAN = load_plan()
REPLICATED = [b.name for b in PLAN.source_buckets if b.replica]

DOC = f"""
### Cross-region recovery from a replica

Restores `source_bucket` from its replica in the backup region ({PLAN.regions.backup}) — e.g. after the
bucket was deleted, emptied or corrupted — **server-side**: each object is copied by a CopyObject sent
to {PLAN.regions.primary} whose source is the replica, so nothing is downloaded or written to local
disk (the runbook downloaded the whole bucket and uploaded it again). Copies run in parallel
({PLAN.backup.max_concurrency} at a time).

- `target = original`: writes back into `source_bucket` as new current versions (the bucket must be
  versioned, so what is replaced stays recoverable). Only keys that are missing or differ (size/ETag)
  are copied: a re-run copies nothing. Keys the replica does not have are left alone.
- `target = new`: copies into `<source_bucket>{TARGET_SUFFIX}`, created with versioning, AES256 default
  encryption and a public-access block.

Then every live replica key is checked in the target: same size and same checksum (the SHA-256 S3
computed when the copy was written against the replica's stored SHA-256; the MD5 ETag when the replica
stores none — see `dataprotection.crossregion`). The report goes to
`s3://{PLAN.compliance_bucket}/reports/cross-region-recovery/<run id>.json`.

`dry_run` (default **true**) only counts what would be copied, writes that as the report, changes nothing.
"""


@dag(
    dag_id="s3_cross_region_recovery",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    doc_md=DOC,
    tags=["dataprotection", "recovery", "s3", "cross-region"],
    default_args=default_args(),
    params={
        "source_bucket": Param(REPLICATED[0] if REPLICATED else "", type="string", enum=REPLICATED,
                               description="The plan bucket to recover (only buckets with a replica)."),
        "target": Param("new", type="string", enum=["original", "new"],
                        description=f"'original': write back into the source bucket (new versions of missing or "
                                    f"changed keys); 'new': into <source_bucket>{TARGET_SUFFIX}."),
        "dry_run": Param(True, type="boolean", description="Only count what would be copied and report it."),
    },
)
def s3_cross_region_recovery():
    plan = S3CrossRegionPlanOperator(
        task_id="plan_recovery",
        source_bucket="{{ params.source_bucket }}",
        target="{{ params.target }}",
        dry_run="{{ params.dry_run }}",
    )
    stop_if_dry_run = ShortCircuitOperator(
        task_id="stop_if_dry_run", python_callable=lambda params: not params["dry_run"]
    )
    setup = S3CrossRegionTargetOperator(task_id="prepare_target", recovery=plan.output)
    copied = S3CrossRegionCopyOperator(task_id="copy_from_replica", recovery=plan.output)
    verified = S3CrossRegionVerifyOperator(task_id="verify_target", recovery=plan.output)
    report = S3CrossRegionReportOperator(
        task_id="write_report", recovery=plan.output, setup=setup.output, copied=copied.output,
        verified=verified.output,
    )
    plan >> stop_if_dry_run >> setup >> copied >> verified >> report


dag = s3_cross_region_recovery()

if __name__ == "__main__":
    dag.test()
