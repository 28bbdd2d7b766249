"""Route 53 and Lambda clients from the plan's AWS connection (same credentials and endpoint as S3)."""

from __future__ import annotations

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook


def route53_client(aws_conn_id: str):
    """Route 53 is global: its API lives in us-east-1."""
    return AwsBaseHook(aws_conn_id=aws_conn_id, client_type="route53", region_name="us-east-1").get_client_type()


def lambda_client(aws_conn_id: str, region: str):
    return AwsBaseHook(aws_conn_id=aws_conn_id, client_type="lambda", region_name=region).get_client_type()
