"""Regional failover and failback: the DNS record and the function configuration, verified.

`failover` points the plan's record (Route 53, UPSERT) at the backup-region endpoint and sets the
function's bucket variables to the replicas and its region variable to the backup region; `failback`
does the reverse. Variables of the function the plan does not name are kept as they are.

Verification reads everything back: the record's value (ListResourceRecordSets), the function's whole
environment (GetFunctionConfiguration), and the canary object of every bucket the direction points at
(GET, its SHA-256 compared with the checksum it carries) — a bucket that is listed but cannot be read
fails. A dry run computes and reports the changes and changes nothing.

`Scope` says which record and function: production (`failover`) or the drill's (`drill`); both use the
same code. Framework-free: boto3 clients for Route 53, Lambda and S3 come from the caller.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from botocore.exceptions import BotoCoreError, ClientError

from dataprotection.config import Plan, PlanError

log = logging.getLogger(__name__)
DIRECTIONS = ("failover", "failback")
CANARY_SHA256_META = "canary-sha256"


class FailoverError(RuntimeError):
    """The failover could not be planned or applied (zone, record or function not found...)."""


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Scope:
    name: str  # "production" or "drill"
    record_name: str
    function_name: str


def scope(plan: Plan, name: str = "production") -> Scope:
    fo = plan.failover
    if fo is None:
        raise PlanError("protection plan: failover: section required by s3_regional_failover and quarterly_dr_drill")
    if name == "production":
        return Scope("production", fo.record_name, fo.function_name)
    if name == "drill":
        if plan.drill is None:
            raise PlanError("protection plan: drill: section required by quarterly_dr_drill")
        return Scope("drill", plan.drill.record_name, plan.drill.function_name)
    raise ValueError(f"scope: {name!r} is not allowed; expected 'production' or 'drill'")


def check_direction(direction: str) -> str:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction: {direction!r} is not allowed; expected one of {', '.join(DIRECTIONS)}")
    return direction


def function_region(plan: Plan) -> str:
    return plan.failover.function_region or plan.regions.primary


def canary_key(plan: Plan, bucket: str) -> str:
    """The failover canary of a source bucket: under its first replicated prefix (so it is replicated)."""
    return plan.bucket(bucket).replication.prefixes[0] + plan.failover.canary_name


def canary_body(bucket: str) -> bytes:
    return f"dataprotection failover canary of {bucket}\n".encode()


def readable_buckets(plan: Plan, direction: str) -> list[tuple[str, str]]:
    """(bucket, canary key of its source) that must be readable after `direction`: every replica
    (backup region) after a failover, every source bucket (primary region) after a failback."""
    out = []
    for b in plan.source_buckets:
        if b.replica:
            out.append((b.replica if direction == "failover" else b.name, canary_key(plan, b.name)))
    return out


def desired_value(plan: Plan, direction: str) -> str:
    fo = plan.failover
    src = plan.bucket(fo.endpoint_bucket)
    bucket, region = (src.replica, plan.regions.backup) if direction == "failover" else (src.name, plan.regions.primary)
    return fo.endpoint_template.format(bucket=bucket, region=region)


def desired_variables(plan: Plan, direction: str) -> dict[str, str]:
    fo = plan.failover
    out = {}
    for var, bucket in fo.bucket_variables.items():
        out[var] = plan.bucket(bucket).replica if direction == "failover" else bucket
    out[fo.region_variable] = plan.regions.backup if direction == "failover" else plan.regions.primary
    return out


# --------------------------------------------------------------------------- reading the current state
def zone_id(route53, zone_name: str) -> str:
    """The hosted zone's id, looked up by its name (ids are per account)."""
    zones = route53.list_hosted_zones_by_name(DNSName=zone_name, MaxItems="1").get("HostedZones", [])
    if not zones or zones[0]["Name"] != zone_name:
        raise FailoverError(f"Route 53 hosted zone {zone_name!r} not found: create it or fix failover.hosted_zone")
    return zones[0]["Id"].rsplit("/", 1)[-1]


def read_record(route53, zone: str, name: str, rtype: str) -> dict | None:
    sets = route53.list_resource_record_sets(HostedZoneId=zone, StartRecordName=name, StartRecordType=rtype,
                                             MaxItems="1").get("ResourceRecordSets", [])
    if sets and sets[0]["Name"] == name and sets[0]["Type"] == rtype:
        return sets[0]
    return None


def read_environment(lam, function: str) -> dict[str, str]:
    try:
        config = lam.get_function_configuration(FunctionName=function)
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ResourceNotFoundException":
            raise FailoverError(f"function {function!r} not found in Lambda: fix the plan's function name") from None
        raise
    return dict(config.get("Environment", {}).get("Variables", {}))


@dataclass
class Clients:
    route53: object
    lambda_: object
    s3: dict[str, object]  # region -> S3 client


def plan_change(plan: Plan, clients: Clients, sc: Scope, direction: str) -> dict:
    """What `direction` would change: the record and the function's variables, current and desired."""
    check_direction(direction)
    fo = plan.failover
    zone = zone_id(clients.route53, fo.hosted_zone)
    current = read_record(clients.route53, zone, sc.record_name, fo.record_type)
    desired = {"Name": sc.record_name, "Type": fo.record_type, "TTL": fo.ttl,
               "ResourceRecords": [{"Value": desired_value(plan, direction)}]}
    env = read_environment(clients.lambda_, sc.function_name)
    wanted = desired_variables(plan, direction)
    changed = {k: {"from": env.get(k), "to": v} for k, v in wanted.items() if env.get(k) != v}
    return {
        "direction": direction, "scope": sc.name, "zone_id": zone,
        "record": {"name": sc.record_name, "type": fo.record_type, "current": _values(current),
                   "desired": _values(desired), "changes": _values(current) != _values(desired)
                   or (current or {}).get("TTL") != fo.ttl, "desired_set": desired},
        "function": {"name": sc.function_name, "region": function_region(plan), "changed_variables": changed,
                     "desired_environment": {**env, **wanted}},
    }


def _values(record: dict | None) -> list[str]:
    return [r["Value"] for r in (record or {}).get("ResourceRecords", [])]


# --------------------------------------------------------------------------- applying and verifying
def _step(steps: list[dict], name: str, fn: Callable[[], dict]) -> dict:
    started = utc_now()
    detail = fn()
    steps.append({"step": name, "started_at": started, "finished_at": utc_now(), **detail})
    log.info("%s: %s", name, detail)
    return detail


def apply_change(plan: Plan, clients: Clients, change: dict, steps: list[dict]) -> None:
    fo = plan.failover
    rec, fn = change["record"], change["function"]

    def upsert() -> dict:
        info = clients.route53.change_resource_record_sets(
            HostedZoneId=change["zone_id"],
            ChangeBatch={"Comment": f"dataprotection {change['scope']} {change['direction']}",
                         "Changes": [{"Action": "UPSERT", "ResourceRecordSet": rec["desired_set"]}]},
        )["ChangeInfo"]
        clients.route53.get_waiter("resource_record_sets_changed").wait(
            Id=info["Id"], WaiterConfig={"Delay": 2, "MaxAttempts": max(1, fo.wait_seconds // 2)})
        return {"change_id": info["Id"].rsplit("/", 1)[-1], "value": rec["desired"], "status": "INSYNC"}

    def update_function() -> dict:
        clients.lambda_.update_function_configuration(
            FunctionName=fn["name"], Environment={"Variables": fn["desired_environment"]})
        clients.lambda_.get_waiter("function_updated_v2").wait(
            FunctionName=fn["name"], WaiterConfig={"Delay": 1, "MaxAttempts": max(1, fo.wait_seconds)})
        return {"function": fn["name"], "changed_variables": sorted(fn["changed_variables"])}

    _step(steps, "update_dns_record", upsert)
    _step(steps, "update_function_configuration", update_function)


def verify(plan: Plan, clients: Clients, sc: Scope, direction: str, steps: list[dict]) -> list[dict]:
    """Read everything back; return the checks (each with `ok`). Never raises for a failed check."""
    fo = plan.failover
    checks: list[dict] = []

    def record() -> dict:
        zone = zone_id(clients.route53, fo.hosted_zone)
        got = _values(read_record(clients.route53, zone, sc.record_name, fo.record_type))
        want = [desired_value(plan, direction)]
        checks.append({"check": "dns_record", "ok": got == want, "expected": want, "actual": got})
        return {"ok": got == want, "actual": got}

    def function() -> dict:
        env = read_environment(clients.lambda_, sc.function_name)
        want = desired_variables(plan, direction)
        wrong = {k: {"expected": v, "actual": env.get(k)} for k, v in want.items() if env.get(k) != v}
        checks.append({"check": "function_configuration", "ok": not wrong, "wrong": wrong})
        return {"ok": not wrong, "wrong": wrong}

    def buckets() -> dict:
        region = plan.regions.backup if direction == "failover" else plan.regions.primary
        client = clients.s3[region]
        results = [read_canary(client, bucket, key) for bucket, key in readable_buckets(plan, direction)]
        for r in results:
            checks.append({"check": "bucket_readable", **r})
        return {"region": region, "readable": sum(r["ok"] for r in results), "buckets": len(results)}

    _step(steps, "verify_dns_record", record)
    _step(steps, "verify_function_configuration", function)
    _step(steps, "verify_buckets_readable", buckets)
    return checks


def read_canary(client, bucket: str, key: str) -> dict:
    """GET the canary and compare its SHA-256 with the checksum it carries (its metadata)."""
    out = {"bucket": bucket, "key": key}
    try:
        obj = client.get_object(Bucket=bucket, Key=key)
        body = obj["Body"].read()
    except (ClientError, BotoCoreError) as exc:
        code = exc.response["Error"]["Code"] if isinstance(exc, ClientError) else type(exc).__name__
        return {**out, "ok": False, "error": f"cannot read the canary: {code}"}
    actual = hashlib.sha256(body).hexdigest()
    expected = obj.get("Metadata", {}).get(CANARY_SHA256_META)
    ok = expected is not None and expected == actual
    return {**out, "ok": ok, "sha256": actual, **({} if ok else {"error": f"sha256 {actual} != recorded {expected}"})}


def run(plan: Plan, clients: Clients, sc: Scope, direction: str, *, dry_run: bool) -> dict:
    """Plan, apply (unless dry run) and verify one direction; return the report (steps with UTC times)."""
    steps: list[dict] = []
    started = utc_now()
    t0 = time.monotonic()
    change = _step(steps, "plan", lambda: plan_change(plan, clients, sc, direction))
    report = {"format": 1, "direction": direction, "scope": sc.name, "dry_run": dry_run, "started_at": started,
              "record": {k: v for k, v in change["record"].items() if k != "desired_set"},
              "function": {"name": change["function"]["name"], "region": change["function"]["region"],
                           "changed_variables": change["function"]["changed_variables"]},
              "steps": steps}
    steps[0] = {k: v for k, v in steps[0].items() if k not in ("record", "function")}
    if dry_run:
        report.update(finished_at=utc_now(), verified=None, checks=[], seconds=round(time.monotonic() - t0, 3))
        return report
    apply_change(plan, clients, change, steps)
    checks = verify(plan, clients, sc, direction, steps)
    report.update(checks=checks, verified=all(c["ok"] for c in checks), finished_at=utc_now(),
                  seconds=round(time.monotonic() - t0, 3))
    return report


def failed_checks(report: dict) -> list[dict]:
    return [c for c in report.get("checks", []) if not c["ok"]]
