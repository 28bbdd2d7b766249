"""S3 clients for the core, built from an Airflow AWS connection (credentials, endpoint_url)."""

from __future__ import annotations

from functools import cached_property

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

from dataprotection.s3client import make_client


class DataProtectionS3Hook(AwsBaseHook):
    """One S3 client per region, sharing the connection's credentials and endpoint.

    The core needs clients in two regions (primary and backup) and a connection pool as large as
    the copy concurrency; `client(region)` gives exactly that.
    """

    def __init__(self, aws_conn_id: str = "aws_default", max_pool: int = 64, **kwargs) -> None:
        kwargs.setdefault("client_type", "s3")
        super().__init__(aws_conn_id=aws_conn_id, **kwargs)
        self.max_pool = max_pool
        self._clients: dict[str, object] = {}

    @cached_property
    def endpoint_url(self) -> str | None:
        return self.conn_config.endpoint_url

    @cached_property
    def session(self):
        """One boto3 session (credentials) shared by the clients of every region (each costs ~0.5 s)."""
        return self.get_session()

    def client(self, region: str):
        if region not in self._clients:
            self._clients[region] = make_client(
                region, endpoint_url=self.endpoint_url, session=self.session, max_pool=self.max_pool
            )
        return self._clients[region]
