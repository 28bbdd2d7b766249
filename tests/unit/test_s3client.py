"""S3 client tuning: the fast timestamp path agrees with botocore's parser; clients share service models."""

import boto3
import pytest
from botocore.utils import parse_timestamp

from dataprotection.s3client import fast_timestamp, make_client, share_service_models


@pytest.mark.parametrize("value", [
    "2026-12-03T02:00:00.000Z", "2026-12-03T02:00:00Z", "2026-12-03T23:59:59.999999Z",
    "Thu, 03 Dec 2026 02:00:00 GMT", "2026-12-03T02:00:00+01:00", "1764727200",
])
def test_fast_timestamp_equals_botocore(value):
    ours, theirs = fast_timestamp(value), parse_timestamp(value)
    assert ours == theirs and ours.utcoffset() == theirs.utcoffset()


def test_clients_of_different_sessions_share_one_loader_and_parse_listings(s3_endpoint):
    a = share_service_models(boto3.session.Session())
    b = share_service_models(boto3.session.Session())
    assert a._session.get_component("data_loader") is b._session.get_component("data_loader")
    client = make_client("eu-central-1", endpoint_url=s3_endpoint, session=a)
    client.create_bucket(Bucket="ts-bucket", CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    client.put_object(Bucket="ts-bucket", Key="k", Body=b"x")
    listed = client.list_objects_v2(Bucket="ts-bucket")["Contents"][0]["LastModified"]
    head = client.head_object(Bucket="ts-bucket", Key="k")["LastModified"]  # an RFC 1123 header
    assert listed == head and listed.utcoffset().total_seconds() == 0
