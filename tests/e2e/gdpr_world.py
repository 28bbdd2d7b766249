"""A small world for GDPR tests: users u1, u10, u12 with uploads, avatars, rows, replicas, snapshots
and an archive; one of u1's objects under legal hold, one under COMPLIANCE retention. Plus helpers to
capture the whole state of S3 and the database, and to answer the approval the way the UI does."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import psycopg

from dataprotection.snapshot import SnapshotSpec, take_snapshot
from devstack.replication import ReplicationEmulator
from devstack.seed import create_buckets

URL = "https://{b}.s3.eu-central-1.amazonaws.com/{k}"
U1_KEYS = [
    "user-uploads/u1/menu.pdf",
    "user-uploads/u1/photos/store front.jpg",
    "user-uploads/u1/old.txt",  # deleted: only a version + a delete marker remain
    "user-uploads/u1/held.pdf",  # legal hold
    "user-uploads/u1/retained.pdf",  # COMPLIANCE retention
    "shared/2026/invoice-7781.pdf",  # named by u1's row, no user id in the key
]
OTHER_KEYS = ["user-uploads/u10/menu.pdf", "user-uploads/u12/x.pdf", "user-uploads/u1.bak"]


def build(s3, s3_backup, plan, app_db: str, endpoint: str) -> dict:
    uploads, profile = plan.bucket_names[0], plan.bucket_names[1]
    # Object Lock can only be enabled when a bucket is created
    s3.create_bucket(Bucket=uploads, ObjectLockEnabledForBucket=True,
                     CreateBucketConfiguration={"LocationConstraint": plan.regions.primary})
    create_buckets(plan, s3, s3_backup)
    for bucket in (plan.backup.bucket, plan.archive.bucket, plan.compliance_bucket):  # as s3_protection_setup does
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    put = lambda b, k, body, **kw: s3.put_object(Bucket=b, Key=k, Body=body, **kw)  # noqa: E731
    put(uploads, "user-uploads/u1/menu.pdf", b"u1 menu v1")
    put(uploads, "user-uploads/u1/menu.pdf", b"u1 menu v2")
    put(uploads, "user-uploads/u1/photos/store front.jpg", b"u1 photo")
    put(uploads, "user-uploads/u1/old.txt", b"u1 old")
    s3.delete_object(Bucket=uploads, Key="user-uploads/u1/old.txt")
    put(uploads, "user-uploads/u1/held.pdf", b"u1 held", ObjectLockLegalHoldStatus="ON", ChecksumAlgorithm="SHA256")
    until = datetime.now(UTC) + timedelta(days=1)
    put(uploads, "user-uploads/u1/retained.pdf", b"u1 retained", ObjectLockMode="COMPLIANCE",
        ObjectLockRetainUntilDate=until, ChecksumAlgorithm="SHA256")
    put(uploads, "shared/2026/invoice-7781.pdf", b"u1 invoice")
    for key in OTHER_KEYS:
        put(uploads, key, f"content of {key}".encode())
    for user in ("u1", "u10", "u12"):
        put(profile, f"avatars/{user}.png", f"{user} avatar".encode())
        put(profile, f"logos/{user}.png", f"{user} logo".encode())
    put(profile, "avatars/u1.png", b"u1 avatar v2")
    with psycopg.connect(app_db) as conn:
        rows = [("u1", k) for k in U1_KEYS if k != "user-uploads/u1/old.txt"] + \
               [("u10", OTHER_KEYS[0]), ("u12", OTHER_KEYS[1]), ("u12", OTHER_KEYS[2])]
        conn.cursor().executemany(
            "INSERT INTO user_uploads (user_id, s3_bucket, s3_key, s3_url, original_filename)"
            " VALUES (%s, %s, %s, %s, %s)",
            [(u, uploads, k, URL.format(b=uploads, k=k), k.rsplit("/", 1)[-1]) for u, k in rows])
        conn.cursor().executemany(
            "INSERT INTO business_profiles (user_id, business_name, avatar_s3_url, logo_s3_url)"
            " VALUES (%s, %s, %s, %s)",
            [(u, f"business of {u}", URL.format(b=profile, k=f"avatars/{u}.png"),
              URL.format(b=profile, k=f"logos/{u}.png")) for u in ("u1", "u10", "u12")])
    ReplicationEmulator(plan, endpoint_url=endpoint).run_once()
    for bucket in plan.bucket_names:
        take_snapshot(s3, s3, SnapshotSpec(bucket, plan.backup.bucket, "2026-11-30", concurrency=4))
    for b in plan.archived_buckets:
        take_snapshot(s3, s3, SnapshotSpec(b.name, plan.archive.bucket, "2026-W48", kind="weekly",
                                           storage_class="DEEP_ARCHIVE", concurrency=4))
    put(uploads, "user-uploads/u1/menu.pdf", b"u1 menu v3")
    for bucket in plan.bucket_names:
        take_snapshot(s3, s3, SnapshotSpec(bucket, plan.backup.bucket, "2026-12-01", concurrency=4))
    ReplicationEmulator(plan, endpoint_url=endpoint).run_once()
    return {"uploads": uploads, "profile": profile}


def all_versions(client, bucket: str) -> list[tuple]:
    out = []
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket):
        out += [(v["Key"], v["VersionId"], False, v["ETag"]) for v in page.get("Versions", [])]
        out += [(d["Key"], d["VersionId"], True, None) for d in page.get("DeleteMarkers", [])]
    return sorted(out)


def state(s3, s3_backup, plan, app_db: str) -> dict:
    """Every version of every plan bucket but the compliance bucket, and every table's rows."""
    doc = {}
    for b in plan.source_buckets:
        doc[b.name] = all_versions(s3, b.name)
        if b.replica:
            doc[b.replica] = all_versions(s3_backup, b.replica)
    for bucket in (plan.backup.bucket, plan.archive.bucket):
        doc[bucket] = all_versions(s3, bucket)
        doc[bucket + ":bytes"] = [s3.get_object(Bucket=bucket, Key=k)["Body"].read()
                                  for k, *_ in doc[bucket] if "/manifest/" in k or k.endswith("summary.json")]
    with psycopg.connect(app_db) as conn:
        for t in plan.database.tables:
            doc["table:" + t.name] = conn.execute(f"SELECT * FROM {t.name} ORDER BY id").fetchall()  # noqa: S608
    return doc


def answer_approval(dag_id: str, task_id: str, option: str, timeout: float = 180) -> threading.Thread:
    """In the background: wait for the approval task to ask, then answer it through the same code path
    the UI's Required Actions page uses (the public API's update_hitl_detail)."""
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.api_fastapi.core_api.datamodels.hitl import UpdateHITLDetailPayload
    from airflow.api_fastapi.core_api.routes.public.hitl import update_hitl_detail
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState

    started = datetime.now(UTC)

    def answer() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with create_session() as session:
                ti = session.query(TaskInstance).filter(
                    TaskInstance.dag_id == dag_id, TaskInstance.task_id == task_id,
                    TaskInstance.state == TaskInstanceState.AWAITING_INPUT,
                    TaskInstance.start_date >= started).first()
                if ti is not None:
                    update_hitl_detail(
                        dag_id=dag_id, dag_run_id=ti.run_id, task_id=task_id,
                        update_hitl_detail_payload=UpdateHITLDetailPayload(chosen_options=[option]),
                        user=SimpleAuthManagerUser(username="dpo", role="ADMIN"), session=session)
                    return
            time.sleep(0.5)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    return thread
