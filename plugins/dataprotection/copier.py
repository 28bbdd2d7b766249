"""Server-side copies with bounded concurrency, results delivered in submission order.

Objects up to the multipart threshold are copied with one CopyObject (S3 computes a SHA-256 of the
copy: `ChecksumAlgorithm=SHA256`); larger ones with UploadPartCopy ranges (required above 5 GiB),
the upload aborted on failure. Bytes never pass through this process. Retries of throttling, 5xx
and dropped connections are botocore's (adaptive mode, see s3client).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

MiB = 1024 * 1024
MAX_SINGLE_COPY = 5 * 1024 * MiB  # CopyObject limit
MAX_PARTS = 10_000

T = TypeVar("T")


@dataclass(frozen=True)
class CopySpec:
    src_bucket: str
    src_key: str
    src_version_id: str | None
    size: int
    dst_bucket: str
    dst_key: str
    storage_class: str | None = None


@dataclass(frozen=True)
class CopyTuning:
    multipart_threshold: int = 64 * MiB
    multipart_chunk: int = 64 * MiB

    def use_multipart(self, size: int) -> bool:
        return size > min(self.multipart_threshold, MAX_SINGLE_COPY)

    def chunk_for(self, size: int) -> int:
        chunk = max(self.multipart_chunk, 5 * MiB)
        while size / chunk > MAX_PARTS:
            chunk *= 2
        return chunk


def copy_object(client, spec: CopySpec, tuning: CopyTuning) -> str:
    """Copy one object server-side; return its checksum string for the manifest."""
    if tuning.use_multipart(spec.size):
        return "mpu-etag:" + _multipart_copy(client, spec, tuning.chunk_for(spec.size))
    source = {"Bucket": spec.src_bucket, "Key": spec.src_key}
    if spec.src_version_id and spec.src_version_id != "null":
        source["VersionId"] = spec.src_version_id
    kwargs = {"StorageClass": spec.storage_class} if spec.storage_class else {}
    result = client.copy_object(
        Bucket=spec.dst_bucket,
        Key=spec.dst_key,
        CopySource=source,
        MetadataDirective="COPY",
        ChecksumAlgorithm="SHA256",
        **kwargs,
    )["CopyObjectResult"]
    if result.get("ChecksumSHA256"):
        return "sha256:" + result["ChecksumSHA256"]
    return "etag:" + result["ETag"].strip('"')


def _multipart_copy(client, spec: CopySpec, chunk: int) -> str:
    source = {"Bucket": spec.src_bucket, "Key": spec.src_key}
    head_kwargs = {}
    if spec.src_version_id and spec.src_version_id != "null":
        source["VersionId"] = spec.src_version_id
        head_kwargs["VersionId"] = spec.src_version_id
    head = client.head_object(Bucket=spec.src_bucket, Key=spec.src_key, **head_kwargs)
    create = {"ContentType": head.get("ContentType", "binary/octet-stream"), "Metadata": head.get("Metadata", {})}
    if spec.storage_class:
        create["StorageClass"] = spec.storage_class
    upload_id = client.create_multipart_upload(Bucket=spec.dst_bucket, Key=spec.dst_key, **create)["UploadId"]
    try:
        parts = []
        for number, start in enumerate(range(0, spec.size, chunk), start=1):
            end = min(start + chunk, spec.size) - 1
            result = client.upload_part_copy(
                Bucket=spec.dst_bucket,
                Key=spec.dst_key,
                UploadId=upload_id,
                PartNumber=number,
                CopySource=source,
                CopySourceRange=f"bytes={start}-{end}",
            )["CopyPartResult"]
            parts.append({"PartNumber": number, "ETag": result["ETag"]})
        done = client.complete_multipart_upload(
            Bucket=spec.dst_bucket, Key=spec.dst_key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
        return done["ETag"].strip('"')
    except BaseException:
        client.abort_multipart_upload(Bucket=spec.dst_bucket, Key=spec.dst_key, UploadId=upload_id)
        raise


class OrderedPool(Generic[T]):
    """Run `fn(item)` on a thread pool with at most `window` items in flight; yield
    (item, result) in the order items were submitted. Memory is bounded by `window`.

    `fn` may be None for an item that needs no work: it passes through in order.
    The first exception stops submission and is raised after in-flight work settles.
    """

    def __init__(self, workers: int, window: int | None = None) -> None:
        self.workers = workers
        self.window = window or workers * 4

    def run(self, items: Iterable[tuple[T, Callable[[], object] | None]]) -> Iterator[tuple[T, object]]:
        pending: deque[tuple[T, Future | None, object]] = deque()
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="dp-copy") as pool:
            try:
                for item, fn in items:
                    future = pool.submit(fn) if fn is not None else None
                    pending.append((item, future, None))
                    while pending and (len(pending) > self.window or _ready(pending[0][1])):
                        yield _settle(pending.popleft())
                while pending:
                    yield _settle(pending.popleft())
            except BaseException:
                for _, future, _ in pending:
                    if future is not None:
                        future.cancel()
                raise


def _ready(future: Future | None) -> bool:
    return future is None or future.done()


def _settle(slot: tuple) -> tuple:
    item, future, _ = slot
    return item, (future.result() if future is not None else None)
