"""Disaster-recovery drill: canaries, a simulated regional outage, RPO/RTO measured, integrity compared.

- Canaries: `drill.canaries` small objects (each carrying its SHA-256) written to every critical source
  bucket under its first replicated prefix + `drill.canary_prefix/<run tag>/`, each write time taken
  right after its PutObject returned.
- The outage is simulated, nothing real is broken: `block_region` makes an S3 client refuse every call
  (a botocore `before-call` handler raising `RegionUnavailable`), so anything that still tries the
  primary during the outage fails loudly.
- RPO: at failover time the replica is read; every canary not there (or with other bytes) is missing.
  Measured RPO = failover time - write time of the *oldest* missing canary (the span of writes that
  would be lost; 0 when none is missing). The age of the newest missing canary is reported too.
- RTO: outage start -> failover verified (record, function, every replica's canary read back).
- Integrity: primary vs replica, within the prefixes the replication rule names: keys missing on the
  replica, extra on the replica, and present on both with another size or ETag (single-part copies keep
  the MD5 ETag, so this compares content checksums).

Framework-free: S3 clients come from the caller; `clock` is injectable.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from botocore.exceptions import ClientError
from croniter import croniter

from dataprotection.config import Plan

log = logging.getLogger(__name__)
SAMPLE = 20
CANARY_SHA256_META = "canary-sha256"


class RegionUnavailable(RuntimeError):
    """Raised by a client whose region is marked unavailable for the drill."""


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def block_region(client, region: str):
    """Mark `client`'s region unavailable: every call it makes from now on raises RegionUnavailable."""

    def refuse(model=None, **_kwargs):
        name = getattr(model, "name", "?")
        raise RegionUnavailable(f"{region} is unavailable (simulated regional outage): {name} refused")

    client.meta.events.register("before-call.*.*", refuse)
    return client


# --------------------------------------------------------------------------- canaries
def critical_buckets(plan: Plan) -> list:
    return [b for b in plan.source_buckets if b.critical and b.replica]


def write_canaries(primary, plan: Plan, tag: str, clock: Callable[[], float] = time.time) -> list[dict]:
    """Write the drill's canaries; return each one's bucket, replica, key, sha256 and write time."""
    out = []
    for b in critical_buckets(plan):
        base = f"{b.replication.prefixes[0]}{plan.drill.canary_prefix}/{tag}/"
        for i in range(plan.drill.canaries):
            key = f"{base}canary-{i:03d}.txt"
            body = f"dr drill canary {tag} {b.name} {i} {clock():.6f}\n".encode()
            sha = hashlib.sha256(body).hexdigest()
            primary.put_object(Bucket=b.name, Key=key, Body=body, Metadata={CANARY_SHA256_META: sha})
            written = clock()
            out.append({"bucket": b.name, "replica": b.replica, "key": key, "sha256": sha,
                        "written_ts": written, "written_at": iso(written)})
    log.info("wrote %d canaries to %d critical buckets", len(out), len(critical_buckets(plan)))
    return out


def on_replica(backup, canary: dict) -> bool:
    try:
        body = backup.get_object(Bucket=canary["replica"], Key=canary["key"])["Body"].read()
    except ClientError:
        return False
    return hashlib.sha256(body).hexdigest() == canary["sha256"]


def wait_for_replication(backup, canaries: list[dict], wait_seconds: float, poll: float = 1.0,
                         clock: Callable[[], float] = time.monotonic) -> int:
    """Wait up to `wait_seconds` for every canary to reach its replica; return how many arrived."""
    deadline = clock() + wait_seconds
    while True:
        arrived = sum(on_replica(backup, c) for c in canaries)
        if arrived == len(canaries) or clock() >= deadline:
            log.info("%d of %d canaries on the replicas", arrived, len(canaries))
            return arrived
        time.sleep(min(poll, max(0.0, deadline - clock())))


def measure_rpo(backup, canaries: list[dict], failover_ts: float) -> dict:
    """RPO at `failover_ts` from which canaries the replicas hold (see the module docstring)."""
    missing = [c for c in canaries if not on_replica(backup, c)]
    oldest = min((c["written_ts"] for c in missing), default=None)
    newest = max((c["written_ts"] for c in missing), default=None)
    return {
        "measured_at": iso(failover_ts),
        "rpo_seconds": round(failover_ts - oldest, 3) if oldest is not None else 0.0,
        "newest_missing_age_seconds": round(failover_ts - newest, 3) if newest is not None else 0.0,
        "canaries": len(canaries),
        "missing": [{"bucket": c["bucket"], "key": c["key"], "written_at": c["written_at"]} for c in missing],
    }


# --------------------------------------------------------------------------- integrity
def _listing(client, bucket: str, prefix: str) -> Iterator[tuple[str, int, str]]:
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            yield o["Key"], o["Size"], o["ETag"].strip('"')


def compare_bucket(primary, backup, source: str, replica: str, prefixes: list[str]) -> dict:
    """Primary vs replica under the replicated prefixes: missing, extra and mismatched keys."""
    src: dict[str, tuple[int, str]] = {}
    dst: dict[str, tuple[int, str]] = {}
    for prefix in prefixes:
        src.update({k: (s, e) for k, s, e in _listing(primary, source, prefix)})
        dst.update({k: (s, e) for k, s, e in _listing(backup, replica, prefix)})
    missing = sorted(set(src) - set(dst))
    extra = sorted(set(dst) - set(src))
    mismatched = sorted(k for k in set(src) & set(dst) if src[k] != dst[k])
    return {"bucket": source, "replica": replica, "prefixes": prefixes, "primary_objects": len(src),
            "replica_objects": len(dst), "missing": len(missing), "extra": len(extra),
            "mismatched": len(mismatched), "missing_sample": missing[:SAMPLE], "extra_sample": extra[:SAMPLE],
            "mismatched_sample": mismatched[:SAMPLE]}


def check_integrity(primary, backup, plan: Plan) -> dict:
    buckets = [compare_bucket(primary, backup, b.name, b.replica, list(b.replication.prefixes))
               for b in plan.source_buckets if b.replica]
    totals = {k: sum(b[k] for b in buckets) for k in ("missing", "extra", "mismatched", "primary_objects")}
    return {"buckets": buckets, **totals}


# --------------------------------------------------------------------------- evaluation
def next_drill(schedule: str, after: datetime) -> str:
    """The next run of the drill's cron schedule after `after` (UTC), ISO-8601."""
    return croniter(schedule, after.astimezone(UTC)).get_next(datetime).strftime("%Y-%m-%dT%H:%M:%SZ")


def scenarios(plan: Plan, outage: dict | None, integrity: dict | None, failback: dict | None) -> list[dict]:
    """Pass/fail per scenario; a scenario whose task did not finish fails as 'not run'."""
    target = plan.targets.get("regional_outage")
    rto_t = target.rto_minutes * 60 if target else None
    rpo_t = target.rpo_minutes * 60 if target else None
    out = []

    def add(name: str, ok: bool | None, measured, threshold, detail: str = "") -> None:
        out.append({"scenario": name, "passed": bool(ok), "measured": measured, "target": threshold,
                    "detail": detail if ok is not None else "not run (its task failed; see the task log)"})

    fo = (outage or {}).get("failover")
    add("failover", None if fo is None else fo.get("verified"), None if fo is None else
        sum(not c["ok"] for c in fo.get("checks", [])), 0, "failed verification checks")
    add("data_integrity", None if integrity is None else
        integrity["missing"] + integrity["extra"] + integrity["mismatched"] == 0,
        None if integrity is None else {k: integrity[k] for k in ("missing", "extra", "mismatched")},
        {"missing": 0, "extra": 0, "mismatched": 0}, "primary vs replica within the replicated prefixes")
    rpo = (outage or {}).get("rpo")
    add("rpo", None if rpo is None or rpo_t is None else rpo["rpo_seconds"] <= rpo_t,
        None if rpo is None else rpo["rpo_seconds"], rpo_t, "seconds of writes missing on the replica at failover")
    rto = (outage or {}).get("rto_seconds")
    add("rto", None if rto is None or rto_t is None or not (fo or {}).get("verified") else rto <= rto_t,
        rto, rto_t, "seconds from outage start to verified failover")
    add("failback", None if failback is None else failback.get("verified"), None if failback is None else
        sum(not c["ok"] for c in failback.get("checks", [])), 0, "failed verification checks")
    return out


def issues(outage: dict | None, integrity: dict | None, failback: dict | None, results: list[dict]) -> list[str]:
    found = [f"{r['scenario']}: measured {r['measured']}, target {r['target']} ({r['detail']})"
             for r in results if not r["passed"]]
    for c in (outage or {}).get("rpo", {}).get("missing", [])[:SAMPLE]:
        found.append(f"canary not replicated at failover: s3://{c['bucket']}/{c['key']} written {c['written_at']}")
    for rep in ((outage or {}).get("failover"), failback):
        for c in (rep or {}).get("checks", []):
            if not c["ok"]:
                found.append(f"{rep['direction']} check {c['check']} failed: {c.get('error') or c}")
    for b in (integrity or {}).get("buckets", []):
        for kind in ("missing", "extra", "mismatched"):
            if b[kind]:
                found.append(f"{b['replica']}: {b[kind]} {kind} (e.g. {b[kind + '_sample'][:3]})")
    return found
