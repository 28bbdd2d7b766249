"""s3_bulk_recovery — restore every key under a prefix to its state at a point in time."""

from __future__ import annotations

from airflow.sdk import Param, dag

from dataprotection.config import BUCKET_RE, load_plan
from dataprotection.defaults import START_DATE, default_args
from dataprotection.operators.pointintime import S3BulkRecoveryCheckOperator, S3BulkRecoveryOperator
from dataprotection.pointintime import AS_OF_PATTERN, FOLDER_PATTERN, PREFIX_PATTERN

PLAN = load_plan()

DOC = f"""
### Bulk point-in-time recovery of a prefix

For every key under `prefix` (a folder, nested folders included), restores its state at `as_of`
(ISO-8601 with a zone, e.g. `2026-12-01T10:00:00Z`; one-second resolution, as S3's timestamps):

* the newest version at or before `as_of` — never an older one;
* a key whose state at `as_of` is a delete marker (or that did not exist yet) is **not** restored;
* a key deleted after `as_of` is restored;
* with `delete_newer` (in place only), keys that did not exist at `as_of` get a delete marker —
  undo by deleting the marker.

`source=versions` streams the bucket's version listing page by page (memory stays flat however many
versions); `source=snapshot` uses the latest complete daily snapshot in `s3://{PLAN.backup.bucket}`
taken at or before `as_of` (what the key held at the snapshot's time).

`destination=in_place` writes old content as new current versions of the same keys; keys already
holding the right content are left alone, so re-running is harmless. `destination=other_location`
writes `<target_prefix><key>` into `target_bucket` (empty: the same bucket); a target that would
overwrite or mix with the source prefix is refused — use `in_place` for that.

Copies are server-side and parallel ({PLAN.backup.max_concurrency} at a time). `dry_run` (default
**true**) only decides. The report — counts, bytes and a sample of per-key decisions — goes to
`s3://{PLAN.compliance_bucket}/reports/bulk-recovery/<run id>.json`.
"""


@dag(
    dag_id="s3_bulk_recovery",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    doc_md=DOC,
    tags=["dataprotection", "recovery", "s3", "point-in-time"],
    default_args=default_args(),
    params={
        "bucket": Param(PLAN.bucket_names[0], type="string", enum=PLAN.bucket_names,
                        description="Source bucket of the protection plan."),
        "prefix": Param("user-uploads/u1002/", type="string", minLength=1, maxLength=1024, pattern=FOLDER_PATTERN,
                        description="Folder to restore (ends with /), e.g. user-uploads/u1002/."),
        "as_of": Param(None, type=["null", "string"], format="date-time", pattern=AS_OF_PATTERN,
                       description="Required: ISO-8601 time with zone, e.g. 2026-12-01T10:00:00Z."),
        "source": Param("versions", type="string", enum=["versions", "snapshot"],
                        description="Bucket version history, or the latest daily snapshot at or before as_of."),
        "destination": Param("in_place", type="string", enum=["in_place", "other_location"],
                             description="in_place: same keys (new versions); other_location: target_bucket/"
                                         "target_prefix."),
        "target_bucket": Param(None, type=["null", "string"], pattern=BUCKET_RE,
                               description="other_location only: target bucket (empty: the source bucket)."),
        "target_prefix": Param(None, type=["null", "string"], pattern=PREFIX_PATTERN,
                               description="other_location only: folder the keys are written under, e.g. "
                                           "recovered/."),
        "delete_newer": Param(False, type="boolean",
                              description="in_place only: add delete markers to keys created after as_of."),
        "dry_run": Param(True, type="boolean", description="Only decide and report; change nothing."),
    },
)
def s3_bulk_recovery():
    check = S3BulkRecoveryCheckOperator(
        task_id="check_request",
        bucket="{{ params.bucket }}",
        prefix="{{ params.prefix }}",
        as_of="{{ params.as_of }}",
        source="{{ params.source }}",
        destination="{{ params.destination }}",
        target_bucket="{{ params.target_bucket }}",
        target_prefix="{{ params.target_prefix }}",
        delete_newer="{{ params.delete_newer }}",
        dry_run="{{ params.dry_run }}",
    )
    S3BulkRecoveryOperator(task_id="recover_prefix", request=check.output)


dag = s3_bulk_recovery()

if __name__ == "__main__":
    dag.test()
