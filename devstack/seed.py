"""Buckets, application schema and demo data for the dev stack (and tests that want them).

Creates every bucket the plan names (source buckets and their replicas versioned, in their
regions), then a handful of demo users: uploads under `user-uploads/<user_id>/`, avatars, logos,
reports, temp files, several versions of some objects and one deleted object; and the matching
rows in `user_uploads` and `business_profiles`. Idempotent: seeding twice changes nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import psycopg
from botocore.exceptions import ClientError

from dataprotection.config import Plan

USERS = {
    "u1001": "Alice Bakery",
    "u1002": "Bob's Bistro",
    "u1003": "Chen Noodle Bar",
    "u1004": "Dana Deli",
    "u-1005": "Eve Espresso",
}
# (user, file name, content type, number of versions); file names exercise spaces, unicode, '+'.
UPLOADS = [
    ("u1001", "menu.pdf", "application/pdf", 3),
    ("u1001", "menu.pdf.bak", "application/pdf", 1),
    ("u1001", "photos/storefront.jpg", "image/jpeg", 1),
    ("u1002", "price list+2026.csv", "text/csv", 2),
    ("u1002", "invoices/2026/11/inv-001.pdf", "application/pdf", 1),
    ("u1003", "Résumé final.pdf", "application/pdf", 1),
    ("u1003", "empty.txt", "text/plain", 1),
    ("u1004", "contract.docx", "application/octet-stream", 1),
    ("u-1005", "logo draft.svg", "image/svg+xml", 2),
]
DELETED_UPLOAD = ("u1004", "old-contract.docx")  # uploaded, then deleted (a delete marker remains)


@dataclass
class SeedSummary:
    buckets: int = 0
    objects: int = 0
    rows: int = 0


def demo_bytes(key: str, version: int) -> bytes:
    """Deterministic content for a demo object version (0-byte for files named empty.*)."""
    if key.rsplit("/", 1)[-1].startswith("empty."):
        return b""
    seed = hashlib.sha256(f"{key}#{version}".encode()).hexdigest()
    return (f"demo content of {key} version {version}\n".encode() + seed.encode()) * (1 + version)


def ensure_bucket(client, bucket: str, region: str, versioned: bool) -> bool:
    """Create `bucket` in `region` if missing; enable versioning. Return True if created."""
    created = False
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError:
        kwargs = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        client.create_bucket(Bucket=bucket, **kwargs)
        created = True
    if versioned:
        client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    return created


def create_buckets(plan: Plan, primary, backup) -> int:
    """Every bucket of the plan: sources + compliance versioned; replicas versioned in the backup region."""
    n = 0
    for b in plan.source_buckets:
        n += ensure_bucket(primary, b.name, plan.regions.primary, versioned=True)
        if b.replica:
            n += ensure_bucket(backup, b.replica, plan.regions.backup, versioned=True)
    for name in (plan.backup.bucket, plan.archive.bucket, plan.export_bucket):
        n += ensure_bucket(primary, name, plan.regions.primary, versioned=False)
    n += ensure_bucket(primary, plan.compliance_bucket, plan.regions.primary, versioned=True)
    return n


def _put_versions(client, bucket: str, key: str, versions: int, content_type: str) -> int:
    existing = client.list_object_versions(Bucket=bucket, Prefix=key).get("Versions", [])
    have = sum(1 for v in existing if v["Key"] == key)
    for v in range(have + 1, versions + 1):
        client.put_object(Bucket=bucket, Key=key, Body=demo_bytes(key, v), ContentType=content_type)
    return max(0, versions - have)


def seed_objects(plan: Plan, primary) -> list[tuple[str, str, str, str, int]]:
    """Put the demo objects; return upload rows (user, bucket, key, content_type, size)."""
    uploads_bucket, profile_bucket, reports_bucket = plan.bucket_names[:3]
    rows = []
    for user, name, ctype, versions in UPLOADS:
        key = f"user-uploads/{user}/{name}"
        _put_versions(primary, uploads_bucket, key, versions, ctype)
        rows.append((user, uploads_bucket, key, ctype, len(demo_bytes(key, versions))))
    user, name = DELETED_UPLOAD
    key = f"user-uploads/{user}/{name}"
    if _put_versions(primary, uploads_bucket, key, 1, "application/octet-stream"):
        primary.delete_object(Bucket=uploads_bucket, Key=key)
    for user in USERS:
        _put_versions(primary, profile_bucket, f"avatars/{user}.png", 2 if user == "u1001" else 1, "image/png")
        _put_versions(primary, profile_bucket, f"logos/{user}.png", 1, "image/png")
        _put_versions(primary, reports_bucket, f"vc-reports/2026-11/{user}-report.pdf", 1, "application/pdf")
    for i in range(3):
        _put_versions(primary, uploads_bucket, f"temp/upload-{i}.part", 1, "application/octet-stream")
        _put_versions(primary, reports_bucket, f"tmp/render-{i}.tmp", 1, "application/octet-stream")
    return rows


def seed_database(conninfo: str, plan: Plan, upload_rows) -> int:
    """Insert demo rows (skipped when the tables already hold demo data); return rows inserted."""
    profile_bucket = plan.bucket_names[1]
    region = plan.regions.primary
    url = "https://{b}.s3.{r}.amazonaws.com/{k}"
    with psycopg.connect(conninfo) as conn:
        if conn.execute("SELECT count(*) FROM user_uploads").fetchone()[0]:
            return 0
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO user_uploads (user_id, s3_bucket, s3_key, s3_url, original_filename,"
                " content_type, file_size) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                [
                    (u, b, k, url.format(b=b, r=region, k=k), k.rsplit("/", 1)[-1], ct, size)
                    for u, b, k, ct, size in upload_rows
                ],
            )
            cur.executemany(
                "INSERT INTO business_profiles (user_id, business_name, avatar_s3_url, logo_s3_url)"
                " VALUES (%s, %s, %s, %s)",
                [
                    (
                        u,
                        name,
                        url.format(b=profile_bucket, r=region, k=f"avatars/{u}.png"),
                        url.format(b=profile_bucket, r=region, k=f"logos/{u}.png"),
                    )
                    for u, name in USERS.items()
                ],
            )
    return len(upload_rows) + len(USERS)


def seed_all(plan: Plan, primary, backup, conninfo: str | None) -> SeedSummary:
    summary = SeedSummary(buckets=create_buckets(plan, primary, backup))
    rows = seed_objects(plan, primary)
    summary.objects = len(rows)
    if conninfo:
        summary.rows = seed_database(conninfo, plan, rows)
    return summary
