"""Lifecycle rules generated from the plan, and a normal form to compare them with what S3 returns.

Source buckets (and their replicas, which hold the same keys) get one rule per retention-table entry
that names them or names no bucket: transitions, expiration after `expire_days`, expiration of
noncurrent versions, and aborting incomplete multipart uploads. One bucket-wide rule expires
noncurrent versions and aborts incomplete uploads for keys outside every retention prefix.
Service buckets: the backup and archive buckets expire their snapshots themselves (retention in the
snapshot engine), so they only get the bucket-wide rule; the compliance bucket too (reports and
certificates are never expired); the export bucket expires `exports/` after `gdpr.export_expire_days`.
"""

from __future__ import annotations

from dataprotection.config import Plan, RetentionRule

BUCKET_WIDE_ID = "dataprotection-noncurrent-and-multipart"
EXPORTS_ID = "dataprotection-gdpr-exports"
EXPORTS_PREFIX = "exports/"


def _rule(rule_id: str, prefix: str, *, transitions=(), expire_days: int | None, noncurrent_days: int,
          abort_days: int) -> dict:
    rule: dict = {"ID": rule_id, "Status": "Enabled", "Filter": {"Prefix": prefix}}
    if transitions:
        rule["Transitions"] = [{"Days": days, "StorageClass": cls} for days, cls in transitions]
    if expire_days is not None:
        rule["Expiration"] = {"Days": expire_days}
    rule["NoncurrentVersionExpiration"] = {"NoncurrentDays": noncurrent_days}
    rule["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": abort_days}
    return rule


def _bucket_wide(plan: Plan) -> dict:
    p = plan.protection
    return _rule(BUCKET_WIDE_ID, "", expire_days=None, noncurrent_days=p.noncurrent_version_expire_days,
                 abort_days=p.abort_incomplete_multipart_days)


def retention_rules_for(plan: Plan, source_bucket: str) -> list[RetentionRule]:
    """The retention-table entries that apply to `source_bucket` (its own and bucket-less ones)."""
    return [r for r in plan.retention if r.bucket in (None, source_bucket)]


def source_rules(plan: Plan, source_bucket: str) -> list[dict]:
    """Lifecycle rules of a source bucket (and of its replica)."""
    p = plan.protection
    rules = [
        _rule(r.name, r.prefix, transitions=[(t.days, t.storage_class) for t in r.transitions],
              expire_days=r.expire_days,
              noncurrent_days=p.temporary_noncurrent_expire_days if r.temporary else p.noncurrent_version_expire_days,
              abort_days=p.abort_incomplete_multipart_days)
        for r in retention_rules_for(plan, source_bucket)
    ]
    return [*rules, _bucket_wide(plan)]


def service_rules(plan: Plan, bucket: str) -> list[dict]:
    """Lifecycle rules of the backup, archive, compliance and export buckets."""
    rules = [_bucket_wide(plan)]
    if bucket == plan.export_bucket:
        p = plan.protection
        rules.insert(0, _rule(EXPORTS_ID, EXPORTS_PREFIX, expire_days=plan.gdpr.export_expire_days,
                              noncurrent_days=p.temporary_noncurrent_expire_days,
                              abort_days=p.abort_incomplete_multipart_days))
    return rules


def normalize_rule(rule: dict) -> dict:
    """The comparable content of one lifecycle rule as S3 returns it (or as we put it).

    S3 may return the filter as `Filter.Prefix`, `Filter.And.Prefix` or the legacy top-level `Prefix`;
    anything else in the filter (tags, object sizes) is kept so that it shows up as a difference.
    """
    flt = dict(rule.get("Filter") or {})
    and_ = dict(flt.pop("And", {}) or {})
    prefix = flt.pop("Prefix", None)
    if prefix is None:
        prefix = and_.pop("Prefix", rule.get("Prefix", ""))
    extra_filter = {**flt, **and_}
    exp = rule.get("Expiration") or {}
    nce = rule.get("NoncurrentVersionExpiration") or {}
    out = {
        "status": rule.get("Status"),
        "prefix": prefix or "",
        "transitions": sorted([t.get("Days"), t.get("StorageClass")] for t in rule.get("Transitions") or []),
        "expiration_days": exp.get("Days"),
        "noncurrent_days": nce.get("NoncurrentDays"),
        "abort_multipart_days": (rule.get("AbortIncompleteMultipartUpload") or {}).get("DaysAfterInitiation"),
    }
    if extra_filter:
        out["filter_other"] = extra_filter
    if exp.get("ExpiredObjectDeleteMarker") is not None or exp.get("Date") is not None:
        out["expiration_other"] = {k: str(v) for k, v in exp.items() if k != "Days"}
    if rule.get("NoncurrentVersionTransitions"):
        out["noncurrent_transitions"] = sorted(
            [t.get("NoncurrentDays"), t.get("StorageClass")] for t in rule["NoncurrentVersionTransitions"])
    return out


def normalize_rules(rules: list[dict]) -> dict[str, dict]:
    """Rules by ID, each in normal form."""
    return {r.get("ID", f"(rule {i})"): normalize_rule(r) for i, r in enumerate(rules)}
