"""Protection settings of every plan bucket: desired state from the plan, actual state from S3/IAM,
the difference (drift), and fixing exactly that difference.

Buckets and what they get:
- source buckets: versioning, default encryption, public-access block, lifecycle from the retention
  table, and ONE replication configuration whose only destination is the bucket's own replica (the
  runbook applied one configuration to both buckets, replicating uploads into the profile replica);
- replicas (backup region): versioning (replication needs it), encryption, public-access block, the
  source's lifecycle rules (they hold the same keys);
- backup, archive, compliance buckets: versioning, encryption, public-access block, a bucket-wide
  lifecycle rule (noncurrent versions, incomplete uploads);
- export bucket: encryption, public-access block, lifecycle expiring `exports/`; its versioning is not
  enforced (an expired export of personal data must not live on as an old version);
- the IAM role replication assumes, with its trust policy and inline policy.

A missing source bucket is reported and never created (creating an empty bucket would hide a loss:
recover it instead); missing replicas and service buckets are created in their plan region.

Only what S3 really stores is compared. The local S3 server (moto) keeps a replication rule's ID,
Priority, Status and Destination (bucket, storage class) and the Role, but always returns
`Filter {"Prefix": ""}` and `DeleteMarkerReplication: Disabled`; so the comparison covers exactly
the kept fields, and each rule's ID names its prefix and delete-marker setting, which makes a changed
prefix or setting in the plan a difference too. Encryption is compared by algorithm (and KMS key),
lifecycle rules in a normal form (`lifecycle.normalize_rule`), public-access blocks by their four flags.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from dataprotection import lifecycle
from dataprotection.config import Plan

log = logging.getLogger(__name__)

PAB_FLAGS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
_MISSING_CODES = {
    "ServerSideEncryptionConfigurationNotFoundError", "NoSuchPublicAccessBlockConfiguration",
    "NoSuchLifecycleConfiguration", "ReplicationConfigurationNotFoundError",
}
S3_TRUST = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"}, "Action": "sts:AssumeRole"}]}


class ProtectionError(RuntimeError):
    """The protection settings could not be read or applied; the message says what to do."""


@dataclass
class Drift:
    bucket: str  # a bucket name, or "iam:role/<name>" for the replication role
    field: str
    expected: Any
    actual: Any
    fixed: bool = False


@dataclass(frozen=True)
class BucketTarget:
    name: str
    region: str
    kind: str  # source | replica | backup | archive | compliance | export
    versioning: bool
    lifecycle_rules: tuple = ()
    replica: str | None = None
    replication: Any = None  # the plan's Replication of a source bucket with a replica

    @property
    def creatable(self) -> bool:
        return self.kind != "source"


@dataclass
class ProtectionResult:
    apply: bool
    drifts: list[Drift] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)

    @property
    def unfixed(self) -> list[Drift]:
        return [d for d in self.drifts if not d.fixed]

    def to_dict(self) -> dict:
        return {"apply": self.apply, "drift_count": len(self.drifts),
                "fixed": sum(d.fixed for d in self.drifts), "unfixed": len(self.unfixed),
                "drifts": [asdict(d) for d in self.drifts], "changes": list(self.changes)}


# --------------------------------------------------------------------------- desired state
def targets(plan: Plan) -> list[BucketTarget]:
    """Every bucket the plan protects, replicas and service buckets first (replication needs them)."""
    out = []
    for b in plan.source_buckets:
        if b.replica:
            out.append(BucketTarget(b.replica, plan.regions.backup, "replica", True,
                                    tuple(lifecycle.source_rules(plan, b.name))))
    for kind, name in (("backup", plan.backup.bucket), ("archive", plan.archive.bucket),
                       ("compliance", plan.compliance_bucket), ("export", plan.export_bucket)):
        out.append(BucketTarget(name, plan.regions.primary, kind, kind != "export",
                                tuple(lifecycle.service_rules(plan, name))))
    for b in plan.source_buckets:
        out.append(BucketTarget(b.name, plan.regions.primary, "source", True,
                                tuple(lifecycle.source_rules(plan, b.name)), b.replica,
                                b.replication if b.replica else None))
    return out


def replication_rule_id(prefix: str, delete_markers: bool) -> str:
    """A rule ID that names what S3 may not echo back (prefix, delete-marker setting)."""
    rid = f"dataprotection:{prefix or '*'}:delete-markers-{'on' if delete_markers else 'off'}"
    if len(rid) > 255:
        rid = "dataprotection:sha256-" + hashlib.sha256(rid.encode()).hexdigest()
    return rid


def replication_config(target: BucketTarget, role_arn: str) -> dict:
    """The replication configuration of one source bucket: every rule's destination is its OWN replica."""
    rep = target.replication
    dm = "Enabled" if rep.delete_markers else "Disabled"
    return {"Role": role_arn, "Rules": [
        {"ID": replication_rule_id(prefix, rep.delete_markers), "Priority": i, "Status": "Enabled",
         "Filter": {"Prefix": prefix}, "DeleteMarkerReplication": {"Status": dm},
         "Destination": {"Bucket": f"arn:aws:s3:::{target.replica}", "StorageClass": rep.storage_class}}
        for i, prefix in enumerate(rep.prefixes, start=1)
    ]}


def replication_policy(plan: Plan) -> dict:
    """The inline policy of the replication role: read versions from the sources, replicate into replicas."""
    pairs = [(b.name, b.replica) for b in plan.source_buckets if b.replica]
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetReplicationConfiguration", "s3:ListBucket"],
         "Resource": [f"arn:aws:s3:::{s}" for s, _ in pairs]},
        {"Effect": "Allow",
         "Action": ["s3:GetObjectVersionForReplication", "s3:GetObjectVersionAcl", "s3:GetObjectVersionTagging"],
         "Resource": [f"arn:aws:s3:::{s}/*" for s, _ in pairs]},
        {"Effect": "Allow", "Action": ["s3:ReplicateObject", "s3:ReplicateDelete", "s3:ReplicateTags"],
         "Resource": [f"arn:aws:s3:::{r}/*" for _, r in pairs]},
    ]}


def _expected(plan: Plan, t: BucketTarget) -> dict[str, Any]:
    p = plan.protection
    exp: dict[str, Any] = {}
    if t.versioning:
        exp["versioning"] = "Enabled"
    exp["encryption"] = {"algorithm": p.encryption, "kms_key_id": p.kms_key_id}
    exp["public_access_block"] = dict.fromkeys(PAB_FLAGS, True)
    for rid, rule in lifecycle.normalize_rules(list(t.lifecycle_rules)).items():
        exp[f"lifecycle.{rid}"] = rule
    if t.replication is not None:
        exp["replication"] = _normalize_replication(replication_config(t, f"arn:aws:iam::0:role/{p.replication_role}"))
    return exp


# --------------------------------------------------------------------------- actual state
def _normalize_replication(cfg: dict | None) -> dict | None:
    """Only the fields S3 (and moto) keep as stored: Role (by name), rule ID, priority, status, destination."""
    if cfg is None:
        return None
    return {"role": (cfg.get("Role") or "").rsplit("/", 1)[-1], "rules": sorted(
        ({"id": r.get("ID"), "priority": r.get("Priority"), "status": r.get("Status"),
          "destination": r.get("Destination", {}).get("Bucket"),
          "storage_class": r.get("Destination", {}).get("StorageClass") or "STANDARD"}
         for r in cfg.get("Rules", [])), key=lambda r: (r["priority"] or 0, r["id"] or ""))}


def _get(call, **kwargs):
    """Call a Get* API; None when the configuration does not exist."""
    try:
        return call(**kwargs)
    except ClientError as exc:
        if exc.response["Error"]["Code"] in _MISSING_CODES:
            return None
        raise


def bucket_exists(client, bucket: str) -> bool:
    try:
        client.head_bucket(Bucket=bucket)
        return True
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("404", "NoSuchBucket", "NotFound"):
            return False
        raise


def _actual(client, t: BucketTarget) -> dict[str, Any]:
    b = t.name
    act: dict[str, Any] = {}
    if t.versioning:
        act["versioning"] = client.get_bucket_versioning(Bucket=b).get("Status", "Disabled")
    enc = _get(client.get_bucket_encryption, Bucket=b)
    rules = (enc or {}).get("ServerSideEncryptionConfiguration", {}).get("Rules", [])
    default = rules[0].get("ApplyServerSideEncryptionByDefault", {}) if rules else None
    act["encryption"] = (None if default is None else
                         {"algorithm": default.get("SSEAlgorithm"), "kms_key_id": default.get("KMSMasterKeyID")})
    pab = _get(client.get_public_access_block, Bucket=b)
    act["public_access_block"] = (None if pab is None else
                                  {k: bool(pab["PublicAccessBlockConfiguration"].get(k)) for k in PAB_FLAGS})
    lc = _get(client.get_bucket_lifecycle_configuration, Bucket=b)
    for rid, rule in lifecycle.normalize_rules((lc or {}).get("Rules", [])).items():
        act[f"lifecycle.{rid}"] = rule
    if t.replication is not None:
        rep = _get(client.get_bucket_replication, Bucket=b)
        act["replication"] = _normalize_replication((rep or {}).get("ReplicationConfiguration"))
    return act


def bucket_drifts(plan: Plan, client, t: BucketTarget) -> list[Drift]:
    """Differences of one existing bucket: every field whose actual value differs from the plan's."""
    exp, act = _expected(plan, t), _actual(client, t)
    return [Drift(t.name, f, exp.get(f), act.get(f)) for f in sorted(set(exp) | set(act), key=_field_order)
            if exp.get(f) != act.get(f)]


def _field_order(f: str) -> tuple[int, str]:
    order = ("versioning", "encryption", "public_access_block", "lifecycle", "replication")
    return next((i for i, o in enumerate(order) if f.startswith(o)), len(order)), f


def _canon(doc: Any) -> Any:
    """A policy document in canonical form: single strings as one-element lists, lists sorted."""
    if isinstance(doc, dict):
        return {k: _canon([v] if k in ("Action", "Resource") and isinstance(v, str) else v)
                for k, v in sorted(doc.items())}
    if isinstance(doc, list):
        items = [_canon(v) for v in doc]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    return doc


def role_drifts(plan: Plan, iam) -> list[Drift]:
    name = plan.protection.replication_role
    who = f"iam:role/{name}"
    try:
        role = iam.get_role(RoleName=name)["Role"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "NoSuchEntity":
            raise
        return [Drift(who, "exists", True, False)]
    out = []
    trust = role.get("AssumeRolePolicyDocument")
    trust = json.loads(trust) if isinstance(trust, str) else trust
    if _canon(trust) != _canon(S3_TRUST):
        out.append(Drift(who, "trust_policy", _canon(S3_TRUST), _canon(trust)))
    try:
        policy = iam.get_role_policy(RoleName=name, PolicyName=name)["PolicyDocument"]
        policy = json.loads(policy) if isinstance(policy, str) else policy
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "NoSuchEntity":
            raise
        policy = None
    if _canon(policy) != _canon(replication_policy(plan)):
        out.append(Drift(who, "inline_policy", _canon(replication_policy(plan)), _canon(policy)))
    return out


# --------------------------------------------------------------------------- diff + apply
class Enforcer:
    """Computes the drift of every plan bucket and the replication role, and (with apply) fixes it."""

    def __init__(self, plan: Plan, primary, backup, iam) -> None:
        self.plan, self.iam = plan, iam
        self.clients = {plan.regions.primary: primary, plan.regions.backup: backup}
        self.needs_role = any(b.replica for b in plan.source_buckets)

    def client(self, t: BucketTarget):
        return self.clients[t.region]

    def diff(self) -> list[Drift]:
        drifts = role_drifts(self.plan, self.iam) if self.needs_role else []
        for t in targets(self.plan):
            if not bucket_exists(self.client(t), t.name):
                drifts.append(Drift(t.name, "exists", True, False))
                continue
            drifts += bucket_drifts(self.plan, self.client(t), t)
        return drifts

    def run(self, apply: bool) -> ProtectionResult:
        result = ProtectionResult(apply=apply, drifts=self.diff())
        log.info("protection drift: %d differences from the plan", len(result.drifts))
        for d in result.drifts:
            log.info("drift %s %s: expected %s, actual %s", d.bucket, d.field, _short(d.expected), _short(d.actual))
        if not apply or not result.drifts:
            return result
        self._apply(result)
        remaining = {(d.bucket, d.field) for d in self.diff()}
        for d in result.drifts:
            d.fixed = (d.bucket, d.field) not in remaining
        log.info("protection: %d of %d differences fixed", len(result.drifts) - len(result.unfixed),
                 len(result.drifts))
        return result

    def _apply(self, result: ProtectionResult) -> None:
        by_bucket: dict[str, list[Drift]] = {}
        for d in result.drifts:
            by_bucket.setdefault(d.bucket, []).append(d)
        role_arn = None
        if self.needs_role:
            role_arn = self._fix_role(by_bucket.get(f"iam:role/{self.plan.protection.replication_role}", []),
                                      result.changes)
        for t in targets(self.plan):
            drifts = by_bucket.get(t.name, [])
            if not drifts:
                continue
            client = self.client(t)
            if any(d.field == "exists" for d in drifts):
                if not t.creatable:
                    log.error("source bucket %s does not exist: not created (recover it, e.g. from its replica)",
                              t.name)
                    continue
                self._create(client, t, result.changes)
                drifts = bucket_drifts(self.plan, client, t)  # a new bucket: everything is to be set
            self._fix_bucket(client, t, {d.field.split(".", 1)[0] for d in drifts}, role_arn, result.changes)

    def _create(self, client, t: BucketTarget, changes: list[str]) -> None:
        kwargs = {} if t.region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": t.region}}
        client.create_bucket(Bucket=t.name, **kwargs)
        changes.append(f"create_bucket {t.name} ({t.region})")

    def _fix_bucket(self, client, t: BucketTarget, fields: set[str], role_arn, changes: list[str]) -> None:
        p, b = self.plan.protection, t.name
        if "versioning" in fields:
            client.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
            changes.append(f"put_bucket_versioning {b}")
        if "encryption" in fields:
            default = {"SSEAlgorithm": p.encryption, **({"KMSMasterKeyID": p.kms_key_id} if p.kms_key_id else {})}
            client.put_bucket_encryption(Bucket=b, ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": default}]})
            changes.append(f"put_bucket_encryption {b}")
        if "public_access_block" in fields:
            client.put_public_access_block(Bucket=b, PublicAccessBlockConfiguration=dict.fromkeys(PAB_FLAGS, True))
            changes.append(f"put_public_access_block {b}")
        if "lifecycle" in fields:
            client.put_bucket_lifecycle_configuration(Bucket=b, LifecycleConfiguration={
                "Rules": [dict(r) for r in t.lifecycle_rules]})
            changes.append(f"put_bucket_lifecycle_configuration {b}")
        if "replication" in fields and role_arn:
            client.put_bucket_replication(Bucket=b, ReplicationConfiguration=replication_config(t, role_arn))
            changes.append(f"put_bucket_replication {b} -> {t.replica}")

    def _fix_role(self, drifts: list[Drift], changes: list[str]) -> str:
        name = self.plan.protection.replication_role
        fields = {d.field for d in drifts}
        trust = json.dumps(S3_TRUST)
        if "exists" in fields:
            self.iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust,
                                 Description="S3 replication of the data-protection plan's source buckets")
            changes.append(f"iam create_role {name}")
        elif "trust_policy" in fields:
            self.iam.update_assume_role_policy(RoleName=name, PolicyDocument=trust)
            changes.append(f"iam update_assume_role_policy {name}")
        if fields & {"exists", "inline_policy"}:
            self.iam.put_role_policy(RoleName=name, PolicyName=name,
                                     PolicyDocument=json.dumps(replication_policy(self.plan)))
            changes.append(f"iam put_role_policy {name}")
        return self.iam.get_role(RoleName=name)["Role"]["Arn"]


def _short(value: Any, limit: int = 200) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[:limit] + "…"
