"""The protection plan: typed models, loading and validation with one-line errors.

`load_plan()` reads `include/config/protection.yaml` (or the file named by the environment
variable DATAPROTECTION_CONFIG) and returns a validated `Plan`. Any mistake raises `PlanError`
whose message is a single line: the file, the field path and what is allowed.
"""

from __future__ import annotations

import os
import re
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

CONFIG_ENV = "DATAPROTECTION_CONFIG"
DEFAULT_PLAN_PATH = Path(__file__).resolve().parents[2] / "include" / "config" / "protection.yaml"

# AWS commercial + EU/US/AP regions follow this shape; a typo such as "eu-central1" fails.
REGION_RE = (
    r"^(us|eu|ap|sa|ca|me|af|il|mx)-"
    r"(north|south|east|west|central|northeast|southeast|northwest|southwest)-[1-9]$"
)
# S3 bucket naming rules (lowercase, digits, dots, hyphens; 3-63; starts/ends alnum).
BUCKET_RE = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"

StorageClass = Literal[
    "STANDARD", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE"
]
BucketName = Annotated[str, Field(pattern=BUCKET_RE)]


def _region(value: str) -> str:
    if not re.match(REGION_RE, value):
        raise ValueError(f"{value!r} is not an AWS region name such as eu-central-1")
    return value


Region = Annotated[str, AfterValidator(_region)]
Identifier = Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]{0,62}$")]
NonNegInt = Annotated[int, Field(ge=0)]
PosInt = Annotated[int, Field(ge=1)]


class PlanError(ValueError):
    """The protection plan is invalid; the message is one line naming the field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Connections(_Model):
    aws: str = "aws_default"
    app_db: str = "app_db"


class Regions(_Model):
    primary: Region
    backup: Region

    @model_validator(mode="after")
    def _distinct(self) -> Regions:
        if self.primary == self.backup:
            raise ValueError(f"backup region must differ from primary region {self.primary!r}")
        return self


class Replication(_Model):
    prefixes: list[str] = Field(default_factory=lambda: [""], min_length=1)
    storage_class: StorageClass = "STANDARD_IA"
    delete_markers: bool = True


class SourceBucket(_Model):
    name: BucketName
    critical: bool = False
    replica: BucketName | None = None
    replication: Replication = Field(default_factory=Replication)
    archive: bool = False
    shards: PosInt = 1

    @model_validator(mode="after")
    def _replica_differs(self) -> SourceBucket:
        if self.replica == self.name:
            raise ValueError(f"replica must differ from the source bucket {self.name!r}")
        if self.critical and not self.replica:
            raise ValueError(f"critical bucket {self.name!r} needs a replica")
        return self


class Backup(_Model):
    bucket: BucketName
    storage_class: StorageClass = "STANDARD_IA"
    retention_days: PosInt = 365
    max_concurrency: Annotated[int, Field(ge=1, le=256)] = 32
    multipart_threshold_mb: Annotated[int, Field(ge=5, le=5120)] = 64
    multipart_chunk_mb: Annotated[int, Field(ge=5, le=5120)] = 64


class Archive(_Model):
    bucket: BucketName
    storage_class: StorageClass = "DEEP_ARCHIVE"
    retention_years: PosInt = 7
    restore_poll_seconds: Annotated[int, Field(ge=1, le=3600)] = 300
    restore_timeout_hours: Annotated[int, Field(ge=1, le=240)] = 60


class Transition(_Model):
    days: NonNegInt
    storage_class: StorageClass


class RetentionRule(_Model):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    bucket: BucketName | None = None  # None: every source bucket
    prefix: Annotated[str, Field(min_length=1)]
    transitions: list[Transition] = Field(default_factory=list)
    expire_days: PosInt
    temporary: bool = False

    @model_validator(mode="after")
    def _lifecycle_rules(self) -> RetentionRule:
        if self.temporary and not self.prefix.endswith("/"):
            raise ValueError(f"temporary prefix {self.prefix!r} must be a folder ending in '/'")
        days = [t.days for t in self.transitions]
        if days != sorted(set(days)) or any(d >= self.expire_days for d in days):
            raise ValueError(f"transition days {days} must be increasing and below expire_days {self.expire_days}")
        return self


class Target(_Model):
    rto_minutes: NonNegInt
    rpo_minutes: NonNegInt


class Table(_Model):
    name: Identifier
    primary_key: Identifier = "id"
    user_column: Identifier = "user_id"
    bucket_column: Identifier | None = None
    key_column: Identifier | None = None
    url_columns: list[Identifier] = Field(default_factory=list)
    on_erasure: Literal["delete", "null_urls"] = "delete"


class Database(_Model):
    tables: list[Table] = Field(min_length=1)

    @field_validator("tables")
    @classmethod
    def _unique(cls, tables: list[Table]) -> list[Table]:
        _no_duplicates([t.name for t in tables], "table")
        return tables


class UserPrefix(_Model):
    bucket: BucketName
    prefix: Annotated[str, Field(pattern=r"\{user_id\}")]


class Gdpr(_Model):
    user_id_pattern: str = r"^[A-Za-z0-9_-]{1,64}$"
    user_prefixes: list[UserPrefix] = Field(default_factory=list)
    export_link_days: Annotated[int, Field(ge=1, le=7)] = 7
    export_expire_days: Annotated[int, Field(ge=1, le=90)] = 30
    # Airflow Variable holding the secret key of the erasure ledger's keyed hashes (never in the plan).
    hash_key_variable: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,250}$")] = "dataprotection_gdpr_hash_key"

    @field_validator("user_id_pattern")
    @classmethod
    def _anchored_regex(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        if not (pattern.startswith("^") and pattern.endswith("$")):
            raise ValueError("must be anchored with ^ and $")
        return pattern


class Alerts(_Model):
    notifier: Literal["log", "smtp"] = "log"
    smtp_conn_id: str = "smtp_default"
    to: list[str] = Field(default_factory=list)


class Protection(_Model):
    """What s3_protection_setup enforces besides the per-bucket settings (see README)."""

    replication_role: Annotated[str, Field(pattern=r"^[A-Za-z0-9+=,.@_-]{1,64}$")] = "dataprotection-s3-replication"
    encryption: Literal["AES256", "aws:kms"] = "AES256"
    kms_key_id: Annotated[str, Field(min_length=1, max_length=2048)] | None = None
    noncurrent_version_expire_days: PosInt = 90
    temporary_noncurrent_expire_days: PosInt = 1
    abort_incomplete_multipart_days: PosInt = 7

    @model_validator(mode="after")
    def _kms_key(self) -> Protection:
        if (self.encryption == "aws:kms") != (self.kms_key_id is not None):
            raise ValueError("kms_key_id is required with encryption aws:kms and allowed only with it")
        return self


class Monitoring(_Model):
    """Thresholds of backup_monitoring's checks."""

    snapshot_max_age_hours: Annotated[int, Field(ge=1, le=720)] = 26
    archive_max_age_days: Annotated[int, Field(ge=1, le=366)] = 8
    spot_check_sample: Annotated[int, Field(ge=1, le=100_000)] = 20
    fresh_snapshot_max_entries: Annotated[int, Field(ge=1, le=1_000_000)] = 100_000


# --------------------------------------------------------------------------- recovery tests and DR drills
DnsName = Annotated[str, Field(pattern=r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+$")]  # lowercase, ending "."
FunctionName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


def _env_name(value: str) -> str:
    # Lambda reserves AWS_* (AWS_REGION among them) and _* environment variables: refuse them.
    if not re.fullmatch(r"[A-Z][A-Z0-9_]{0,99}", value) or value.startswith("AWS_"):
        raise ValueError(f"{value!r} is not allowed: use A-Z, 0-9, _ starting with a letter, not AWS_* (reserved)")
    return value


def _endpoint_template(value: str) -> str:
    if "{bucket}" not in value or "{region}" not in value or not re.fullmatch(r"[a-z0-9.{}-]+", value):
        raise ValueError(f"{value!r} must be a host name containing {{bucket}} and {{region}}")
    return value


EnvName = Annotated[str, AfterValidator(_env_name)]
ObjectName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")]
TargetName = Literal["single_file_corruption", "bucket_deletion", "regional_outage", "complete_data_loss"]


class RecoveryTest(_Model):
    sample_size: Annotated[int, Field(ge=1, le=10_000)] = 5
    versions_lookback_days: Annotated[int, Field(ge=1, le=365)] = 30
    scratch_bucket_prefix: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{2,40}$")] = "dp-recovery-test"
    scratch_schema_prefix: Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]{0,40}$")] = "dp_recovery_test"
    archive_restore_tier: Literal["Standard", "Bulk"] = "Standard"
    archive_restore_wait_minutes: Annotated[int, Field(ge=1, le=2880)] = 720
    # which of plan.targets each scenario's measured duration is held against
    scenario_targets: dict[
        Literal["snapshot_sample", "point_in_time", "archive_object", "table_export"], TargetName
    ] = Field(default_factory=lambda: {"snapshot_sample": "bucket_deletion", "point_in_time": "single_file_corruption",
                                       "archive_object": "complete_data_loss", "table_export": "bucket_deletion"})


class Failover(_Model):
    hosted_zone: DnsName  # looked up by name: zone ids differ per account
    record_name: DnsName
    record_type: Literal["CNAME"] = "CNAME"
    ttl: Annotated[int, Field(ge=0, le=86_400)] = 60
    endpoint_bucket: BucketName  # a source bucket with a replica: the record points at it or its replica
    endpoint_template: Annotated[str, AfterValidator(_endpoint_template)] = "{bucket}.s3.{region}.amazonaws.com"
    function_name: FunctionName
    function_region: Region | None = None  # default: the primary region
    bucket_variables: dict[EnvName, BucketName] = Field(min_length=1)  # env variable -> plan source bucket
    region_variable: EnvName = "STORAGE_REGION"
    canary_name: ObjectName = "_dataprotection/failover-canary.txt"  # under each bucket's first replicated prefix
    wait_seconds: Annotated[int, Field(ge=1, le=3600)] = 300  # for Route 53 INSYNC and the function update


class Drill(_Model):
    record_name: DnsName
    function_name: FunctionName
    canaries: Annotated[int, Field(ge=1, le=1000)] = 3
    canary_prefix: ObjectName = "_dataprotection/drill"
    replication_wait_seconds: Annotated[int, Field(ge=0, le=3600)] = 900


class Plan(_Model):
    version: Literal[1]
    connections: Connections = Field(default_factory=Connections)
    regions: Regions
    excludes: list[str] = Field(default_factory=list)
    source_buckets: list[SourceBucket] = Field(min_length=1)
    backup: Backup
    archive: Archive
    compliance_bucket: BucketName
    export_bucket: BucketName
    retention: list[RetentionRule] = Field(default_factory=list)
    targets: dict[
        Literal["single_file_corruption", "bucket_deletion", "regional_outage", "complete_data_loss"], Target
    ] = Field(default_factory=dict)
    database: Database
    gdpr: Gdpr = Field(default_factory=Gdpr)
    alerts: Alerts = Field(default_factory=Alerts)
    protection: Protection = Field(default_factory=Protection)
    monitoring: Monitoring = Field(default_factory=Monitoring)
    recovery_test: RecoveryTest = Field(default_factory=RecoveryTest)
    failover: Failover | None = None
    drill: Drill | None = None

    @model_validator(mode="after")
    def _cross_checks(self) -> Plan:
        names = [b.name for b in self.source_buckets]
        replicas = [b.replica for b in self.source_buckets if b.replica]
        service = [self.backup.bucket, self.archive.bucket, self.compliance_bucket, self.export_bucket]
        try:
            _no_duplicates(names + replicas + service, "bucket")
        except ValueError as exc:
            raise _FieldError("buckets", str(exc)) from None
        known = set(names)
        for i, rule in enumerate(self.retention):
            if rule.bucket is not None and rule.bucket not in known:
                raise _FieldError(f"retention[{i}].bucket", f"{rule.bucket!r} is not a source bucket", known)
        for i, up in enumerate(self.gdpr.user_prefixes):
            if up.bucket not in known:
                raise _FieldError(f"gdpr.user_prefixes[{i}].bucket", f"{up.bucket!r} is not a source bucket", known)
        return self

    @model_validator(mode="after")
    def _failover_checks(self) -> Plan:
        with_replica = {b.name for b in self.source_buckets if b.replica}
        fo = self.failover
        for field, target in self.recovery_test.scenario_targets.items():
            if target not in self.targets:
                raise _FieldError(f"recovery_test.scenario_targets.{field}", f"{target!r} is not in targets",
                                  set(self.targets))
        if fo is not None:
            if fo.endpoint_bucket not in with_replica:
                raise _FieldError("failover.endpoint_bucket",
                                  f"{fo.endpoint_bucket!r} is not a source bucket with a replica", with_replica)
            for var, bucket in fo.bucket_variables.items():
                if bucket not in with_replica:
                    raise _FieldError(f"failover.bucket_variables.{var}",
                                      f"{bucket!r} is not a source bucket with a replica", with_replica)
            if fo.region_variable in fo.bucket_variables:
                raise _FieldError("failover.region_variable", f"{fo.region_variable!r} is also a bucket variable")
            if not (fo.record_name == fo.hosted_zone or fo.record_name.endswith("." + fo.hosted_zone)):
                raise _FieldError("failover.record_name", f"{fo.record_name!r} is not in zone {fo.hosted_zone!r}")
        if self.drill is not None:
            if fo is None:
                raise _FieldError("drill", "a drill needs the failover section")
            if self.drill.record_name == fo.record_name:
                raise _FieldError("drill.record_name", "must differ from failover.record_name (the production record)")
            if self.drill.function_name == fo.function_name:
                raise _FieldError("drill.function_name",
                                  "must differ from failover.function_name (the production function)")
            if not self.drill.record_name.endswith("." + fo.hosted_zone):
                raise _FieldError("drill.record_name", f"{self.drill.record_name!r} is not in zone {fo.hosted_zone!r}")
        return self

    # Lookups used by DAGs and core code.
    def bucket(self, name: str) -> SourceBucket:
        for b in self.source_buckets:
            if b.name == name:
                return b
        raise KeyError(f"{name!r} is not a source bucket of the plan (known: {', '.join(self.bucket_names)})")

    @property
    def bucket_names(self) -> list[str]:
        return [b.name for b in self.source_buckets]

    @cached_property  # read once per manifest entry when an erasure scans the snapshots
    def reserved_user_ids(self) -> frozenset[str]:
        """Folder names of dataprotection's own objects in source buckets (the failover and drill canaries,
        e.g. `user-uploads/_dataprotection/...`): never a user's folder, so no GDPR request touches them."""
        names = [self.failover.canary_name] if self.failover else []
        names += [self.drill.canary_prefix] if self.drill else []
        return frozenset(name.split("/", 1)[0] for name in names)

    @property
    def archived_buckets(self) -> list[SourceBucket]:
        return [b for b in self.source_buckets if b.archive]

    def table(self, name: str) -> Table:
        for t in self.database.tables:
            if t.name == name:
                return t
        raise KeyError(f"{name!r} is not a table of the plan")


class _FieldError(ValueError):
    def __init__(self, field: str, problem: str, allowed: set[str] | None = None) -> None:
        self.field = field
        suffix = f" (allowed: {', '.join(sorted(allowed))})" if allowed else ""
        super().__init__(f"{problem}{suffix}")


def _no_duplicates(values: list[str], what: str) -> None:
    seen: set[str] = set()
    for v in values:
        if v in seen:
            raise ValueError(f"duplicate {what} {v!r}: each {what} may appear only once")
        seen.add(v)


def _loc(parts: tuple[int | str, ...]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def _describe(err: dict) -> str:
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required field is missing"
    if kind == "string_pattern_mismatch":
        return f"{err.get('input')!r} does not match {err['ctx']['pattern']}"
    if kind == "literal_error":
        return f"{err.get('input')!r} is not allowed; expected {err['ctx']['expected']}"
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    return f"{msg} (got {err.get('input')!r})"


def parse_plan(data: object, source: str = "<plan>") -> Plan:
    """Validate an already-parsed plan document; raise PlanError with a one-line message."""
    try:
        return Plan.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = err["loc"]
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, _FieldError):
            raise PlanError(f"{source}: {cause.field}: {cause}") from None
        raise PlanError(f"{source}: {_loc(loc)}: {_describe(err)}") from None


def plan_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_PLAN_PATH)


@lru_cache(maxsize=8)
def _load_cached(path: str, mtime_ns: int) -> Plan:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PlanError(f"{path}: cannot read the protection plan: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "?"
        raise PlanError(f"{path}: not valid YAML at {where}: {getattr(exc, 'problem', exc)}") from None
    return parse_plan(data, source=path)


def load_plan(path: str | os.PathLike[str] | None = None) -> Plan:
    """Load and validate the protection plan (cached per file and modification time)."""
    p = Path(path) if path is not None else plan_path()
    try:
        mtime = p.stat().st_mtime_ns
    except OSError:
        raise PlanError(f"{p}: protection plan not found (set {CONFIG_ENV} to its path)") from None
    return _load_cached(str(p), mtime)
