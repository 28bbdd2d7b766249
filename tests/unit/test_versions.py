"""Old versions of exact keys: `a.txt` never means `a.txt.bak`; the current version stays."""

from dataprotection.versions import key_versions, purge_noncurrent

BUCKET = "versions-bucket"


def test_purge_noncurrent_keeps_the_current_version_of_exactly_those_keys(s3):
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    for body in (b"1", b"2", b"3"):
        s3.put_object(Bucket=BUCKET, Key="a.txt", Body=body)
        s3.put_object(Bucket=BUCKET, Key="a.txt.bak", Body=body)
    s3.put_object(Bucket=BUCKET, Key="gone.txt", Body=b"x")
    s3.delete_object(Bucket=BUCKET, Key="gone.txt")  # the delete marker is current
    assert len(key_versions(s3, BUCKET, "a.txt")) == 3
    assert len(key_versions(s3, BUCKET, "a.txt", noncurrent_only=True)) == 2

    assert purge_noncurrent(s3, BUCKET, ["a.txt", "gone.txt"]) == 3  # gone.txt's marker is current: kept
    listing = s3.list_object_versions(Bucket=BUCKET)
    by_key = {}
    for v in listing["Versions"]:
        by_key.setdefault(v["Key"], []).append(v)
    assert len(by_key["a.txt"]) == 1 and by_key["a.txt"][0]["IsLatest"]
    assert s3.get_object(Bucket=BUCKET, Key="a.txt")["Body"].read() == b"3"
    assert len(by_key["a.txt.bak"]) == 3 and "gone.txt" not in by_key
    assert [m["Key"] for m in listing["DeleteMarkers"]] == ["gone.txt"]
