"""Cross-region recovery: restore a source bucket from its replica in the backup region, server-side.

    spec = recovery_spec(plan, source_bucket, "original" | "new")   # which replica, which target
    plan_recovery(replica, target, spec, redactor)       # what would be copied (the dry run)
    copy_from_replica(replica, target, spec, redactor)   # CopyObject in parallel, only what is missing or different
    verify_recovery(replica, target, spec, redactor)     # every replica key in the target, same size and checksum

`replica` is an S3 client in the backup region, `target` one in the target bucket's region. Every
copy is a CopyObject sent to the target's region whose CopySource is the replica in the backup
region: S3 reads the bytes there and writes them here. No byte passes through this process and
nothing is written to local disk (the runbook downloaded the whole bucket and uploaded it again).
The only requests are listings, HeadObject, CopyObject (and UploadPartCopy above 5 GiB).

What is copied. The replica's live objects (the current version of each key; a key whose newest
entry is a delete marker is not live) are merged, in S3's key order, with a listing of the target:
a key the target lacks, or has with a different size or ETag, is copied from the exact replica
version that was listed; anything else is left alone, so a re-run copies nothing. Keys of the target
that the replica does not have (e.g. outside the replicated prefixes) are counted, never touched.
With target "original" the copies become new current versions of the source bucket (which must be
versioned, so what they replace stays recoverable); with "new" they go into `<bucket>-restored`.
Copies keep the replica's metadata and content type and get the target bucket's default storage
class and encryption (not the replica's STANDARD_IA).
Memory stays flat: both listings are streamed and at most a window of copies is in flight.

GDPR erasures. Given a `Redactor` (the erasure ledger, dataprotection.gdpr.ledger), a replica key an
erasure removed is never copied, whether or not the target has it, and is not expected in the target
by the verification: such keys are counted as `erased_skipped` and left out of `objects`.

How checksums are verified (a separate pass after the copies, over both listings again, one HEAD
with ChecksumMode=ENABLED on each side per key):
- "sha256": the replica stores a full-object SHA-256 (written with one) and so does the target.
  Every object copied here has one: CopyObject with ChecksumAlgorithm=SHA256 makes S3 compute it over
  the bytes it wrote. Equal digests prove the bytes are equal end to end.
- "md5-etag": the replica stores no SHA-256. Computing one would mean reading every byte (a
  download), which this module never does; and the SHA-256 S3 computed during the copy is its own
  digest of the bytes it read from the replica, so comparing it with itself would prove nothing.
  The independent evidence is the ETag: for an object written in one part without SSE-KMS it is the
  MD5 of its bytes, computed by S3 when each side was written. Equal ETags and sizes are required.
  (The target's SHA-256, set by the copy, makes every later check of the target a SHA-256 one.)
- "multipart-etag": both ETags are multipart ETags (MD5 of the part MD5s) and equal.
- "size-only": nothing comparable: e.g. an object above 5 GiB copied in parts (its ETag is a
  multipart one, the replica's is not), or SSE-KMS ETags. Counted and named in the result; such
  objects are compared by size only, and — their ETags differing — copied again by a re-run.
A differing digest, a differing size or a missing key is a failure (`ok` is False).

Objects up to 5 GiB (S3's CopyObject limit) are copied with a single CopyObject so they all get a
full-object SHA-256; only larger ones use UploadPartCopy.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Literal

from botocore.exceptions import ClientError

from dataprotection.config import BUCKET_RE, Plan
from dataprotection.copier import MAX_SINGLE_COPY, CopySpec, CopyTuning, MiB, OrderedPool, copy_object
from dataprotection.gdpr.ledger import Redactor
from dataprotection.listing import SourceObject, is_versioned, list_live_objects

log = logging.getLogger(__name__)

TARGETS = ("original", "new")
TARGET_SUFFIX = "-restored"
SAMPLE = 20
PROGRESS_EVERY = 5000
_MISSING_BUCKET = ("NoSuchBucket", "404", "NotFound")

Target = Literal["original", "new"]


class CrossRegionError(RuntimeError):
    """Cross-region recovery cannot start or did not reproduce the replica; the message says what to do."""


@dataclass(frozen=True)
class CrossRegionSpec:
    source_bucket: str
    replica_bucket: str
    replica_region: str
    target: Target
    target_bucket: str
    target_region: str
    concurrency: int = 32
    multipart_threshold: int = MAX_SINGLE_COPY
    multipart_chunk: int = 64 * MiB

    @property
    def tuning(self) -> CopyTuning:
        return CopyTuning(self.multipart_threshold, self.multipart_chunk)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict) -> CrossRegionSpec:
        return cls(**{k: doc[k] for k in cls.__dataclass_fields__ if k in doc})


def recovery_spec(plan: Plan, source_bucket: str, target: str) -> CrossRegionSpec:
    """Validate the request against the plan and name the replica and the target bucket."""
    replicated = [b.name for b in plan.source_buckets if b.replica]
    if source_bucket not in replicated:
        raise CrossRegionError(
            f"source_bucket: {source_bucket!r} is not a plan bucket with a replica "
            f"(choose one of: {', '.join(replicated) or 'none in the plan'})"
        )
    if target not in TARGETS:
        raise CrossRegionError(f"target: {target!r} is not allowed; use 'original' or 'new'")
    bucket = plan.bucket(source_bucket)
    target_bucket = source_bucket if target == "original" else f"{source_bucket}{TARGET_SUFFIX}"
    if target == "new":
        if not re.match(BUCKET_RE, target_bucket):
            raise CrossRegionError(
                f"target: the new bucket name {target_bucket!r} is not a valid S3 bucket name (too long?); "
                "recover into the original bucket or shorten the source bucket's name"
            )
        taken = set(plan.bucket_names) | {b.replica for b in plan.source_buckets if b.replica} | {
            plan.backup.bucket, plan.archive.bucket, plan.compliance_bucket, plan.export_bucket}
        if target_bucket in taken:
            raise CrossRegionError(
                f"target: the new bucket {target_bucket!r} is a bucket of the plan; recovering into it would "
                "overwrite data it holds. Rename that bucket in the plan or choose target 'original'"
            )
    return CrossRegionSpec(
        source_bucket=source_bucket,
        replica_bucket=bucket.replica,
        replica_region=plan.regions.backup,
        target=target,
        target_bucket=target_bucket,
        target_region=plan.regions.primary,
        concurrency=plan.backup.max_concurrency,
        multipart_chunk=plan.backup.multipart_chunk_mb * MiB,
    )


# --------------------------------------------------------------------------- results
@dataclass
class CopyResult:
    source_bucket: str
    replica_bucket: str
    target_bucket: str
    dry_run: bool = False
    objects: int = 0  # live objects of the replica (erased ones not included)
    bytes: int = 0
    copied: int = 0  # copied (or, in a dry run, to copy): missing in the target or different
    copied_bytes: int = 0
    present: int = 0  # already in the target with the same size and ETag: not copied
    extra_in_target: int = 0  # target keys the replica does not have (left alone)
    erased_skipped: int = 0  # replica keys erased under GDPR (the ledger): never copied
    target_exists: bool = True
    copied_sample: list[str] = field(default_factory=list)
    duration_s: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class VerifyResult:
    source_bucket: str
    replica_bucket: str
    target_bucket: str
    objects: int = 0
    bytes: int = 0
    verified: int = 0
    by_method: dict[str, int] = field(default_factory=dict)
    missing: int = 0
    mismatched: int = 0
    extra_in_target: int = 0
    erased_skipped: int = 0  # replica keys erased under GDPR (the ledger): not expected in the target
    missing_sample: list[str] = field(default_factory=list)
    mismatch_sample: list[dict] = field(default_factory=list)
    size_only_sample: list[str] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.missing == 0 and self.mismatched == 0 and self.verified == self.objects

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


# --------------------------------------------------------------------------- listings
def _replica_listing(replica, spec: CrossRegionSpec) -> Iterator[SourceObject]:
    try:
        versioned = is_versioned(replica, spec.replica_bucket)
    except ClientError as exc:
        if exc.response["Error"]["Code"] in _MISSING_BUCKET:
            raise CrossRegionError(
                f"the replica bucket {spec.replica_bucket!r} of {spec.source_bucket!r} does not exist in "
                f"{spec.replica_region}; check the plan's replica and that replication was set up"
            ) from None
        raise
    return list_live_objects(replica, spec.replica_bucket, versioned=versioned)


def target_exists(target, bucket: str) -> bool:
    try:
        target.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if exc.response["Error"]["Code"] in _MISSING_BUCKET:
            return False
        raise
    return True


def _target_listing(target, bucket: str) -> Iterator[dict]:
    """The target's current objects in key order (ListObjectsV2: delete-marked keys are absent)."""
    for page in target.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        yield from page.get("Contents", [])


def _merge(replica_objects: Iterator[SourceObject], target_objects: Iterator[dict], on_extra
           ) -> Iterator[tuple[SourceObject, dict | None]]:
    """Pair each replica object with the target's object of the same key (None if absent).

    Both sequences are in S3's key order (UTF-8 byte order, which is Python's str order);
    `on_extra()` is called for every target key the replica does not have."""
    current = next(target_objects, None)
    for obj in replica_objects:
        while current is not None and current["Key"] < obj.key:
            on_extra()
            current = next(target_objects, None)
        if current is not None and current["Key"] == obj.key:
            yield obj, current
            current = next(target_objects, None)
        else:
            yield obj, None
    while current is not None:
        on_extra()
        current = next(target_objects, None)


def _not_erased(pairs: Iterator[tuple[SourceObject, dict | None]], spec: CrossRegionSpec,
                redactor: Redactor | None, on_erased) -> Iterator[tuple[SourceObject, dict | None]]:
    """The pairs whose replica key was not erased; `on_erased()` is called for each one that was."""
    for obj, present in pairs:
        if redactor and redactor.erased_key(spec.source_bucket, obj.key):
            on_erased()
        else:
            yield obj, present


def _same(obj: SourceObject, present: dict | None) -> bool:
    return present is not None and present["Size"] == obj.size and present["ETag"].strip('"') == obj.etag


# --------------------------------------------------------------------------- plan and copy
def plan_recovery(replica, target, spec: CrossRegionSpec, redactor: Redactor | None = None) -> CopyResult:
    """What `copy_from_replica` would copy now (listings only; nothing is written)."""
    return _run(replica, target, spec, redactor, dry_run=True)


def copy_from_replica(replica, target, spec: CrossRegionSpec, redactor: Redactor | None = None) -> CopyResult:
    """Copy every replica object the target lacks (or has with another size/ETag) server-side, except
    keys `redactor` says were erased.

    The target bucket must exist (create a new one with `recovery.ensure_recovery_bucket`)."""
    return _run(replica, target, spec, redactor, dry_run=False)


def _run(replica, target, spec: CrossRegionSpec, redactor: Redactor | None, *, dry_run: bool) -> CopyResult:
    started = time.monotonic()
    result = CopyResult(spec.source_bucket, spec.replica_bucket, spec.target_bucket, dry_run=dry_run)
    result.target_exists = target_exists(target, spec.target_bucket)
    if not result.target_exists and not dry_run:
        raise CrossRegionError(
            f"the target bucket {spec.target_bucket!r} does not exist in {spec.target_region}; "
            "create it first (ensure_recovery_bucket)"
        )

    def extra() -> None:
        result.extra_in_target += 1

    def erased() -> None:
        result.erased_skipped += 1

    listing = _target_listing(target, spec.target_bucket) if result.target_exists else iter(())
    pairs = _not_erased(_merge(_replica_listing(replica, spec), listing, extra), spec, redactor, erased)
    log.info("%s s3://%s (%s) into s3://%s (%s)", "planning the recovery of" if dry_run else "recovering",
             spec.replica_bucket, spec.replica_region, spec.target_bucket, spec.target_region)
    tuning = spec.tuning
    for obj, copied in OrderedPool(spec.concurrency).run(_work(pairs, target, spec, tuning, dry_run)):
        result.objects += 1
        result.bytes += obj.size
        if copied:
            result.copied += 1
            result.copied_bytes += obj.size
            if len(result.copied_sample) < SAMPLE:
                result.copied_sample.append(obj.key)
        else:
            result.present += 1
        if result.objects % PROGRESS_EVERY == 0:
            log.info("%d replica objects, %d %s, %d already present", result.objects, result.copied,
                     "to copy" if dry_run else "copied", result.present)
    result.duration_s = round(time.monotonic() - started, 3)
    log.info("%s: %d replica objects (%d bytes); %s %d (%d bytes); %d already present; %d target keys not in "
             "the replica (left alone); %d erased under GDPR (ledger) skipped; %.1f s", "plan" if dry_run else "copy",
             result.objects, result.bytes, "to copy" if dry_run else "copied", result.copied, result.copied_bytes,
             result.present, result.extra_in_target, result.erased_skipped, result.duration_s)
    return result


def _work(pairs, target, spec: CrossRegionSpec, tuning: CopyTuning, dry_run: bool):
    """(object, fn) for the pool: fn copies and returns True; None passes an object through as present."""
    for obj, present in pairs:
        if _same(obj, present):
            yield obj, None
        elif dry_run:
            yield obj, _true
        else:
            copy = CopySpec(spec.replica_bucket, obj.key, obj.version_id, obj.size, spec.target_bucket, obj.key)
            yield obj, (lambda copy=copy: _copy(target, copy, tuning))


def _true() -> bool:
    return True


def _copy(target, copy: CopySpec, tuning: CopyTuning) -> bool:
    try:
        copy_object(target, copy, tuning)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise CrossRegionError(
            f"copying s3://{copy.src_bucket}/{copy.src_key} (version {copy.src_version_id}) to "
            f"s3://{copy.dst_bucket} failed: {error.get('Code')} ({error.get('Message', '')}). "
            "An archived replica object must be restored first; a missing version was deleted since the "
            "listing: re-run the task"
        ) from exc
    return True


# --------------------------------------------------------------------------- verification
def verify_recovery(replica, target, spec: CrossRegionSpec, redactor: Redactor | None = None) -> VerifyResult:
    """Check every live replica key is in the target with the same size and checksum (see the module doc);
    keys `redactor` says were erased are not expected there."""
    started = time.monotonic()
    result = VerifyResult(spec.source_bucket, spec.replica_bucket, spec.target_bucket)
    if not target_exists(target, spec.target_bucket):
        raise CrossRegionError(f"the target bucket {spec.target_bucket!r} does not exist: nothing to verify")

    def extra() -> None:
        result.extra_in_target += 1

    def erased() -> None:
        result.erased_skipped += 1

    pairs = _not_erased(_merge(_replica_listing(replica, spec), _target_listing(target, spec.target_bucket), extra),
                        spec, redactor, erased)
    work = ((pair, (lambda pair=pair: _heads(replica, target, spec, pair)) if pair[1] is not None else None)
            for pair in pairs)
    for (obj, present), heads in OrderedPool(spec.concurrency).run(work):
        result.objects += 1
        result.bytes += obj.size
        if present is None:
            result.missing += 1
            if len(result.missing_sample) < SAMPLE:
                result.missing_sample.append(obj.key)
            continue
        method, problem = compare(*heads)
        if problem:
            result.mismatched += 1
            if len(result.mismatch_sample) < SAMPLE:
                result.mismatch_sample.append({"key": obj.key, "problem": problem})
            continue
        result.verified += 1
        result.by_method[method] = result.by_method.get(method, 0) + 1
        if method == "size-only" and len(result.size_only_sample) < SAMPLE:
            result.size_only_sample.append(obj.key)
    result.duration_s = round(time.monotonic() - started, 3)
    log.info("verify s3://%s against its replica s3://%s: %d objects, %d verified %s, %d missing, %d mismatched, "
             "%d erased under GDPR (ledger) not expected, %.1f s", spec.target_bucket, spec.replica_bucket,
             result.objects, result.verified, result.by_method, result.missing, result.mismatched,
             result.erased_skipped, result.duration_s)
    if result.by_method.get("size-only"):
        log.warning("%d objects could be compared by size only (no comparable checksum), e.g. %s",
                    result.by_method["size-only"], result.size_only_sample[:3])
    return result


def _heads(replica, target, spec: CrossRegionSpec, pair: tuple[SourceObject, dict]) -> tuple[dict, dict]:
    obj, _ = pair
    kwargs = {"VersionId": obj.version_id} if obj.version_id and obj.version_id != "null" else {}
    r = replica.head_object(Bucket=spec.replica_bucket, Key=obj.key, ChecksumMode="ENABLED", **kwargs)
    t = target.head_object(Bucket=spec.target_bucket, Key=obj.key, ChecksumMode="ENABLED")
    return r, t


def _full_sha256(head: dict) -> str | None:
    """The object's full-object SHA-256 (base64), None if it has none or only a composite one."""
    value = head.get("ChecksumSHA256")
    if not value or head.get("ChecksumType") == "COMPOSITE" or "-" in value:
        return None
    return value


def compare(replica_head: dict, target_head: dict) -> tuple[str, str | None]:
    """(method, problem): how the target object was compared with the replica's, and what differs (None: equal)."""
    r_size, t_size = replica_head["ContentLength"], target_head["ContentLength"]
    if r_size != t_size:
        return "size", f"size {t_size} in the target, {r_size} in the replica"
    r_sha, t_sha = _full_sha256(replica_head), _full_sha256(target_head)
    if r_sha and t_sha:
        return "sha256", None if r_sha == t_sha else f"sha256 {t_sha} in the target, {r_sha} in the replica"
    r_etag, t_etag = replica_head["ETag"].strip('"'), target_head["ETag"].strip('"')
    kms = any(str(h.get("ServerSideEncryption", "")).startswith("aws:kms") for h in (replica_head, target_head))
    if kms:  # an SSE-KMS object's ETag is not the MD5 of its bytes
        return "size-only", None
    if "-" not in r_etag and "-" not in t_etag:
        return "md5-etag", None if r_etag == t_etag else f"ETag (MD5) {t_etag} in the target, {r_etag} in the replica"
    if r_etag == t_etag:
        return "multipart-etag", None
    return "size-only", None
