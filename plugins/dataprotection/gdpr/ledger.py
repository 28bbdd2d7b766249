"""The erasure ledger: an append-only record of GDPR erasures, and the filter every restore applies.

Layout in the compliance bucket:

    gdpr/ledger/<YYYY>/<time>-<uuid>.json      one immutable entry per event (never overwritten)

An entry holds no personal data: the user id and each erased (bucket, key) appear only as keyed
hashes (HMAC-SHA256 with the plan's secret key), next to the request reference, time and status.
`Redactor` loads every "erased" entry and answers "was this key / this user erased?" so that every
restore path (file, bulk, cross-region, complete recovery, database records) skips what an erasure
removed and an erased user never comes back from a backup.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from dataprotection import manifest as mf
from dataprotection.config import Plan
from dataprotection.gdpr.footprint import prefix_owner

log = logging.getLogger(__name__)
LEDGER_PREFIX = "gdpr/ledger/"
ERASED = ("erased", "erased_with_blocked")
MIN_KEY_BYTES = 16


class LedgerError(RuntimeError):
    """The ledger cannot be written or read, or its key is missing; the message says what to do."""


def check_hash_key(key: str | bytes | None, where: str) -> bytes:
    raw = key.encode("utf-8") if isinstance(key, str) else key
    if not raw or len(raw) < MIN_KEY_BYTES:
        raise LedgerError(
            f"the GDPR hashing key ({where}) is missing or shorter than {MIN_KEY_BYTES} bytes; set it to a "
            "long random secret (e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`) and never "
            "change it: ledger entries written with another key no longer match"
        )
    return raw


def user_hash(secret: bytes, user_id: str) -> str:
    return hmac.new(secret, b"user\n" + user_id.encode("utf-8"), hashlib.sha256).hexdigest()


def key_hash(secret: bytes, bucket: str, key: str) -> str:
    return hmac.new(secret, f"key\n{bucket}\n{key}".encode(), hashlib.sha256).hexdigest()


def source_bucket_of(plan: Plan, bucket: str) -> str:
    """The plan's source bucket a bucket belongs to (a replica maps to its source)."""
    for b in plan.source_buckets:
        if bucket in (b.name, b.replica):
            return b.name
    return bucket


@dataclass
class LedgerEntry:
    event: str  # previewed | erased | erased_with_blocked | rejected
    request_reference: str
    user_hash: str
    run_id: str
    time: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    key_hashes: list[str] = field(default_factory=list)
    counts: dict = field(default_factory=dict)
    format: int = 1


def append(client, plan: Plan, entry: LedgerEntry) -> str:
    """Write one new ledger object (never overwrites: the key is unique and the write conditional)."""
    stamp = entry.time.replace(":", "").replace("-", "").replace(".", "")
    key = f"{LEDGER_PREFIX}{entry.time[:4]}/{stamp}-{uuid.uuid4().hex}.json"
    body = mf.json_bytes(entry.__dict__)
    client.put_object(Bucket=plan.compliance_bucket, Key=key, Body=body, ContentType="application/json",
                      IfNoneMatch="*")
    log.info("erasure ledger: %s entry for request %s written to s3://%s/%s", entry.event,
             entry.request_reference, plan.compliance_bucket, key)
    return key


def entries(client, plan: Plan) -> Iterable[dict]:
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=plan.compliance_bucket, Prefix=LEDGER_PREFIX):
        for obj in page.get("Contents", []):
            doc = mf.read_json(client, plan.compliance_bucket, obj["Key"])
            if doc is not None:
                yield doc


class Redactor:
    """What the ledger says was erased; `erased_key` / `erased_user` are what restores consult."""

    def __init__(self, plan: Plan, secret: bytes, user_hashes: set[str], key_hashes: set[str]) -> None:
        self.plan = plan
        self._secret = secret
        self.user_hashes = user_hashes
        self.key_hashes = key_hashes

    @classmethod
    def load(cls, client, plan: Plan, secret: bytes) -> Redactor:
        users: set[str] = set()
        keys: set[str] = set()
        n = 0
        for doc in entries(client, plan):
            if doc.get("event") in ERASED:
                n += 1
                users.add(doc["user_hash"])
                keys.update(doc.get("key_hashes", []))
        log.info("erasure ledger: %d erasures (%d users, %d keys) will be re-applied to what is restored",
                 n, len(users), len(keys))
        return cls(plan, secret, users, keys)

    @classmethod
    def empty(cls, plan: Plan) -> Redactor:
        return cls(plan, b"", set(), set())

    def __bool__(self) -> bool:
        return bool(self.user_hashes or self.key_hashes)

    def erased_user(self, user_id: str | None) -> bool:
        return bool(self.user_hashes) and user_id is not None and user_hash(self._secret, user_id) in self.user_hashes

    def erased_key(self, bucket: str, key: str) -> bool:
        """True if an erasure removed this key of this (source or replica) bucket, or it lies in the
        per-user folder of an erased user."""
        if not self:
            return False
        source = source_bucket_of(self.plan, bucket)
        if key_hash(self._secret, source, key) in self.key_hashes:
            return True
        return self.erased_user(prefix_owner(self.plan, source, key))
