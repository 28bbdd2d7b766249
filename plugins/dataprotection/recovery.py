"""Complete recovery from the weekly archive: choose the snapshots, prepare hardened target buckets,
estimate the cost, and write the recovery report. The restore requests, the wait and the copy back
are in `archive`, the Glacier sensor and `restore`.
"""

from __future__ import annotations

from datetime import date

from botocore.exceptions import ClientError

from dataprotection.config import Plan
from dataprotection.snapshot import latest_snapshot, latest_snapshot_as_of, read_summary

TARGET_SUFFIX_PATTERN = r"^-[a-z0-9][a-z0-9-]{0,20}$"


class RecoveryError(ValueError):
    """Recovery cannot start; the message names the parameter or what is missing."""


def parse_day(value: str, field: str) -> date | None:
    """YYYY-MM-DD, or "latest" (None)."""
    if str(value).strip().lower() == "latest":
        return None
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        raise RecoveryError(f"{field}: {value!r} is not a date; use YYYY-MM-DD or 'latest'") from None


def resolve_archive_snapshots(plan: Plan, store, recovery_date: date | None, target_suffix: str) -> list[dict]:
    """For each archived bucket, the latest complete weekly snapshot at or before `recovery_date`
    (None: the latest of all)."""
    chosen = []
    for bucket in (b.name for b in plan.archived_buckets):
        if recovery_date is None:
            sid = latest_snapshot(store, plan.archive.bucket, bucket)
        else:
            sid = latest_snapshot_as_of(store, plan.archive.bucket, bucket, recovery_date.isoformat())
        if sid is None:
            raise RecoveryError(
                f"recovery_date: no complete weekly archive of {bucket!r} as of {recovery_date or 'now'} "
                f"in s3://{plan.archive.bucket}; choose a later date"
            )
        summary = read_summary(store, plan.archive.bucket, bucket, sid)
        target = f"{bucket}{target_suffix}"
        if target in plan.bucket_names:
            raise RecoveryError(f"target_suffix: {target_suffix!r} would write into the live bucket {target!r}")
        chosen.append({
            "source_bucket": bucket,
            "snapshot_id": sid,
            "store_bucket": plan.archive.bucket,
            "target_bucket": target,
            "objects": summary["objects"],
            "bytes": summary["bytes"],
            "storage_class": summary.get("storage_class"),
        })
    return chosen


def estimate(snapshots: list[dict], tier: str, restore_days: int) -> dict:
    """What a recovery would do, in requests and bytes (upper bounds: restored objects are skipped)."""
    objects = sum(s["objects"] for s in snapshots)
    return {
        "buckets": len(snapshots),
        "objects": objects,
        "bytes": sum(s["bytes"] for s in snapshots),
        "tier": tier,
        "restore_days": restore_days,
        "requests": {
            "HeadObject (restore state)": objects,
            "RestoreObject (at most)": objects,
            "CopyObject (copy back, at most)": objects,
            "bucket setup": 4 * len(snapshots),
        },
        "bytes_restored_for_days": restore_days,
    }


def ensure_recovery_bucket(client, bucket: str, region: str) -> bool:
    """Create `bucket` (idempotent) with versioning, default encryption and a public-access block."""
    created = False
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("404", "NoSuchBucket", "NotFound"):
            raise
        kwargs = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        client.create_bucket(Bucket=bucket, **kwargs)
        created = True
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    client.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )
    client.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={"BlockPublicAcls": True, "IgnorePublicAcls": True,
                                        "BlockPublicPolicy": True, "RestrictPublicBuckets": True},
    )
    return created
