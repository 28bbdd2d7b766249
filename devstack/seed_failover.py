"""Failover targets for the dev stack and tests: the plan's Route 53 zone with the production and drill
records, the production and drill functions (Lambda, configuration only — never invoked), an IAM role
for them, and the failover canary in every replicated source bucket. Idempotent.

Everything starts in the "primary" state: records point at the primary endpoint, the functions'
environment names the source buckets and the primary region (plus one variable the plan does not
manage, which a failover must keep).
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

import boto3
from botocore.exceptions import ClientError

from dataprotection import failover as fo
from dataprotection.config import Plan

ROLE_NAME = "dataprotection-dev-function-role"
UNMANAGED_VARIABLES = {"LOG_LEVEL": "info"}
_TRUST = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}


def _client(service: str, region: str, endpoint_url: str | None):
    session = boto3.session.Session()
    kwargs = {}
    if endpoint_url and not session.get_credentials():
        kwargs = {"aws_access_key_id": "dataprotection-dev", "aws_secret_access_key": "dataprotection-dev"}
    return session.client(service, region_name=region, endpoint_url=endpoint_url, **kwargs)


def _code() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("index.py", "def handler(event, context):\n    return None\n")
    return buf.getvalue()


def put_canaries(plan: Plan, primary) -> int:
    """The failover canary in each replicated source bucket (with its SHA-256 as metadata)."""
    n = 0
    for b in plan.source_buckets:
        if not b.replica:
            continue
        key = fo.canary_key(plan, b.name)
        try:
            primary.head_object(Bucket=b.name, Key=key)
            continue
        except ClientError:
            pass
        body = fo.canary_body(b.name)
        primary.put_object(Bucket=b.name, Key=key, Body=body, ContentType="text/plain",
                           Metadata={fo.CANARY_SHA256_META: hashlib.sha256(body).hexdigest()})
        n += 1
    return n


def seed_failover(plan: Plan, primary, endpoint_url: str | None = None) -> dict:
    """Create what the failover and the drill act on, in the primary state; return what was created."""
    if plan.failover is None:
        return {}
    endpoint_url = endpoint_url or primary.meta.endpoint_url
    created = {"canaries": put_canaries(plan, primary), "records": 0, "functions": 0}
    route53 = _client("route53", "us-east-1", endpoint_url)
    zone_name = plan.failover.hosted_zone
    try:
        zone = fo.zone_id(route53, zone_name)
    except fo.FailoverError:
        zone = route53.create_hosted_zone(Name=zone_name, CallerReference=f"dataprotection-{zone_name}")[
            "HostedZone"]["Id"].rsplit("/", 1)[-1]
    scopes = [fo.scope(plan, "production")] + ([fo.scope(plan, "drill")] if plan.drill else [])
    value = fo.desired_value(plan, "failback")
    for sc in scopes:
        if fo.read_record(route53, zone, sc.record_name, plan.failover.record_type) is None:
            route53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [{
                "Action": "UPSERT", "ResourceRecordSet": {
                    "Name": sc.record_name, "Type": plan.failover.record_type, "TTL": plan.failover.ttl,
                    "ResourceRecords": [{"Value": value}]}}]})
            created["records"] += 1
    iam = _client("iam", "us-east-1", endpoint_url)
    try:
        role = iam.get_role(RoleName=ROLE_NAME)["Role"]["Arn"]
    except ClientError:
        role = iam.create_role(RoleName=ROLE_NAME, AssumeRolePolicyDocument=json.dumps(_TRUST))["Role"]["Arn"]
    lam = _client("lambda", fo.function_region(plan), endpoint_url)
    env = {**UNMANAGED_VARIABLES, **fo.desired_variables(plan, "failback")}
    for sc in scopes:
        try:
            lam.get_function_configuration(FunctionName=sc.function_name)
        except ClientError:
            lam.create_function(FunctionName=sc.function_name, Runtime="python3.11", Role=role,
                                Handler="index.handler", Code={"ZipFile": _code()},
                                Environment={"Variables": env}, Publish=False)
            created["functions"] += 1
    return created
