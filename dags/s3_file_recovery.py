"""s3_file_recovery — restore one S3 key: its latest version, a given version id, or its state as of a time."""

from __future__ import annotations

from airflow.sdk import Param, dag

from dataprotection.config import load_plan
from dataprotection.defaults import START_DATE, default_args
from dataprotection.operators.pointintime import S3FileRestoreOperator, S3FileVersionResolveOperator
from dataprotection.pointintime import AS_OF_PATTERN, KEY_PATTERN, PREFIX_PATTERN

PLAN = load_plan()

DOC = f"""
### Single-file recovery

Restores **exactly one key** (never keys that merely start with it: `a.txt` is not `a.txt.bak`):

* `mode=latest` — the newest version that has content (also brings back a deleted key);
* `mode=version` — the version `version_id` of that key;
* `mode=as_of` — the state of the key at `as_of` (ISO-8601 with a zone, e.g. `2026-12-01T10:00:00Z`).
  If the key was deleted (a delete marker) or not yet created at that time, the run reports
  *did not exist at T* and restores nothing. S3 timestamps have one-second resolution: an event in the
  same second as `as_of` counts as before it.

`source=versions` reads the bucket's version history; `source=snapshot` uses the daily snapshots in
`s3://{PLAN.backup.bucket}` (with `as_of`: the latest complete snapshot taken at or before it).

The copy is server-side. `destination=in_place` writes the old content as a **new current version** of
the key (the versions in between stay, so the restore can itself be undone);
`destination=recovery_prefix` writes it to `<recovery_prefix><key>` in the same bucket. If the
destination already holds that content nothing is copied, so re-running is harmless.

The report (version id, size, checksum of what was restored, or why nothing was) is written to
`s3://{PLAN.compliance_bucket}/reports/file-recovery/<run id>.json`.
"""


@dag(
    dag_id="s3_file_recovery",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    doc_md=DOC,
    tags=["dataprotection", "recovery", "s3", "point-in-time"],
    default_args=default_args(),
    params={
        "bucket": Param(PLAN.bucket_names[0], type="string", enum=PLAN.bucket_names,
                        description="Source bucket of the protection plan."),
        "key": Param("user-uploads/u1001/menu.pdf", type="string", minLength=1, maxLength=1024, pattern=KEY_PATTERN,
                     description="The exact object key to restore (no wildcard, not a prefix)."),
        "mode": Param("latest", type="string", enum=["latest", "version", "as_of"],
                      description="latest: newest version with content; version: version_id; as_of: state at as_of."),
        "version_id": Param(None, type=["null", "string"], pattern=r"^[A-Za-z0-9+/=._-]{1,1024}$",
                            description="Version id to restore (mode=version only)."),
        "as_of": Param(None, type=["null", "string"], format="date-time", pattern=AS_OF_PATTERN,
                       description="ISO-8601 time with zone, e.g. 2026-12-01T10:00:00Z (mode=as_of only)."),
        "source": Param("versions", type="string", enum=["versions", "snapshot"],
                        description="Bucket version history, or the daily snapshots in the backup bucket."),
        "destination": Param("recovery_prefix", type="string", enum=["in_place", "recovery_prefix"],
                             description="in_place: new current version of the key; recovery_prefix: a copy "
                                         "under recovery_prefix."),
        "recovery_prefix": Param("recovered/", type="string", pattern=PREFIX_PATTERN,
                                 description="Folder for destination=recovery_prefix, e.g. recovered/."),
    },
)
def s3_file_recovery():
    resolve = S3FileVersionResolveOperator(
        task_id="resolve_version",
        bucket="{{ params.bucket }}",
        key="{{ params.key }}",
        mode="{{ params.mode }}",
        version_id="{{ params.version_id }}",
        as_of="{{ params.as_of }}",
        source="{{ params.source }}",
        destination="{{ params.destination }}",
        recovery_prefix="{{ params.recovery_prefix }}",
    )
    S3FileRestoreOperator(task_id="restore_and_report", resolution=resolve.output)


dag = s3_file_recovery()

if __name__ == "__main__":
    dag.test()
