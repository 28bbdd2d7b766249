"""boto3 S3 clients configured for bulk work: adaptive retries, a connection pool sized for the
copy engine's concurrency, and S3-computed checksums only where required."""

from __future__ import annotations

import threading
from datetime import datetime

import boto3
from botocore.config import Config
from botocore.loaders import Loader, create_loader
from botocore.utils import parse_timestamp

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


_LOADER: Loader | None = None
_LOADER_LOCK = threading.Lock()


def share_service_models(session: boto3.session.Session) -> boto3.session.Session:
    """Give `session` the process-wide botocore loader, so the S3 service model (JSON) is parsed once per
    process rather than once per session: a client then costs ~13 ms instead of ~115 ms. Hooks make a
    session each; a task with several hooks, or tests running many tasks in one process, gain most."""
    global _LOADER
    with _LOADER_LOCK:
        if _LOADER is None:
            _LOADER = create_loader()
    core = session._session  # the botocore session behind boto3's
    if core.get_component("data_loader") is not _LOADER:
        core.register_component("data_loader", _LOADER)
        core.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=fast_timestamp)
    return session


def fast_timestamp(value: str) -> datetime:
    """botocore's timestamp parser, with a fast path for S3's ISO-8601 UTC form (`2026-12-03T02:00:00.000Z`).

    botocore parses every timestamp with dateutil (~0.25 ms each): one per listed key, so a million-key
    listing spent minutes of CPU on LastModified alone. Anything but that form goes to botocore's parser."""
    if len(value) >= 20 and value[-1] == "Z" and value[10] == "T":
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
    return parse_timestamp(value)


def make_client(
    region: str,
    *,
    endpoint_url: str | None = None,
    session: boto3.session.Session | None = None,
    max_pool: int = 64,
    config: Config | None = None,
):
    """An S3 client for `region`. `endpoint_url` targets a local S3 (moto) in dev and tests."""
    session = share_service_models(session or boto3.session.Session())
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
