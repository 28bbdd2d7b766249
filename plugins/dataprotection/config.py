"""The protection plan: typed models, loading and validation with one-line errors.

`load_plan()` reads `include/config/protection.yaml` (or the file named by the environment
variable DATAPROTECTION_CONFIG) and returns a validated `Plan`. Any mistake raises `PlanError`
whose message is a single line: the file, the field path and what is allowed.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
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

    # Lookups used by DAGs and core code.
    def bucket(self, name: str) -> SourceBucket:
        for b in self.source_buckets:
            if b.name == name:
                return b
        raise KeyError(f"{name!r} is not a source bucket of the plan (known: {', '.join(self.bucket_names)})")

    @property
    def bucket_names(self) -> list[str]:
        return [b.name for b in self.source_buckets]

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
