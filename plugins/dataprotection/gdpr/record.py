"""Verification after an erasure, and the certificate (no personal data, no file contents).

Compliance bucket layout:

    gdpr/previews/<request>/<run>.json          the preview (names keys; deleted once erased)
    gdpr/work/<run>/erased-<try>.json           what each erase attempt deleted (deleted once certified)
    gdpr/certificates/<request>/<run>.json      the certificate
    gdpr/ledger/<YYYY>/<time>-<uuid>.json       the append-only ledger (see ledger.py)
"""

from __future__ import annotations

import hashlib
import re

from dataprotection.config import Plan
from dataprotection.gdpr.ledger import key_hash
from dataprotection.gdpr.locate import Footprint

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe(name: str) -> str:
    return _UNSAFE.sub("_", name)[:128]


def preview_key(request_reference: str, run_id: str) -> str:
    return f"gdpr/previews/{safe(request_reference)}/{safe(run_id)}.json"


def work_prefix(run_id: str) -> str:
    return f"gdpr/work/{safe(run_id)}/"


def certificate_key(request_reference: str, run_id: str) -> str:
    return f"gdpr/certificates/{safe(request_reference)}/{safe(run_id)}.json"


def problems(plan: Plan, fp: Footprint) -> list[str]:
    """What of the user is still there after an erasure, except versions S3 keeps under a lock."""
    out = []
    left = [v for v in fp.versions if not v.locked]
    if left:
        markers = sum(v.delete_marker for v in left)
        out.append(f"{len(left) - markers} versions and {markers} delete markers remain in "
                   f"{sorted({v.bucket for v in left})}")
    if fp.stored_locations:
        out.append(f"{len(fp.stored_locations)} stored copies remain in {sorted({b for b, _ in fp.stored_locations})}")
    entries = sum(s.snapshot_id is not None for s in fp.stored)
    if entries:
        out.append(f"{entries} manifest entries still name the user's keys")
    for table in plan.database.tables:
        if table.on_erasure == "delete" and fp.rows.get(table.name):
            out.append(f"{fp.rows[table.name]} rows remain in {table.name}")
        if fp.url_values.get(table.name):
            out.append(f"{fp.url_values[table.name]} URL values remain in {table.name}")
    return out


def blocked_items(secret: bytes, fp: Footprint, plan: Plan) -> list[dict]:
    """Versions kept by Object Lock / legal hold, with dates; the key only as a keyed hash."""
    from dataprotection.gdpr.ledger import source_bucket_of

    return [
        {"bucket": v.bucket, "key_hash": key_hash(secret, source_bucket_of(plan, v.bucket), v.key),
         "version_id": v.version_id, "lock_mode": v.lock_mode, "retain_until": v.retain_until,
         "legal_hold": v.legal_hold}
        for v in fp.versions if v.locked
    ]


def versions_sha256(idents: list[str]) -> str:
    """sha256 of the sorted list of deleted object versions ("bucket<TAB>key<TAB>version id" lines)."""
    digest = hashlib.sha256()
    for line in sorted(set(idents)):
        digest.update(line.encode("utf-8") + b"\n")
    return digest.hexdigest()
