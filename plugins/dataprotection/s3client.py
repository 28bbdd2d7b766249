"""boto3 S3 clients configured for bulk work: adaptive retries, a connection pool sized for the
copy engine's concurrency, and S3-computed checksums only where required."""

from __future__ import annotations

import boto3
from botocore.config import Config

# Retries: botocore's "adaptive" mode retries throttling (503 SlowDown), 5xx and dropped
# connections with exponential backoff and a client-side rate limiter.
RETRY_ATTEMPTS = 10


def client_config(
    max_pool: int = 64, connect_timeout: float = 10, read_timeout: float = 120, path_style: bool = False
) -> Config:
    return Config(
        retries={"max_attempts": RETRY_ATTEMPTS, "mode": "adaptive"},
        max_pool_connections=max_pool,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        s3={"addressing_style": "path" if path_style else "auto"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        tcp_keepalive=True,
    )


def make_client(
    region: str,
    *,
    endpoint_url: str | None = None,
    session: boto3.session.Session | None = None,
    max_pool: int = 64,
    config: Config | None = None,
):
    """An S3 client for `region`. `endpoint_url` targets a local S3 (moto) in dev and tests."""
    session = session or boto3.session.Session()
    kwargs = {}
    if endpoint_url and not (session.get_credentials()):
        kwargs = {"aws_access_key_id": "dataprotection-dev", "aws_secret_access_key": "dataprotection-dev"}
    return session.client(
        "s3",
        region_name=region,
        endpoint_url=endpoint_url,
        config=config or client_config(max_pool=max_pool, path_style=bool(endpoint_url)),
        **kwargs,
    )
