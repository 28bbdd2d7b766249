"""Tests for devstack.faultproxy against a real moto S3 server (subprocess)."""

from __future__ import annotations

import concurrent.futures
import http.client
import io
import json
import os
import socket
import socketserver
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError

from devstack.faultproxy import FaultProxy

REGION = "eu-central-1"
BUCKET = "faultproxy-test"
MIB = 1024 * 1024
# botocore's retries["max_attempts"] counts *retries* (max_attempts=1 means two
# attempts); total_max_attempts=1 is a single attempt, so every fault is visible.
NO_RETRY = {"total_max_attempts": 1, "mode": "standard"}
# A syntactically valid SigV4 header: moto refuses anonymous GETs of objects.
DUMMY_AUTH = "AWS4-HMAC-SHA256 Credential=x/20250101/eu-central-1/s3/aws4_request, SignedHeaders=host, Signature=00"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_http(url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto server exited with {process.returncode}")
        try:
            with _NO_PROXY.open(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def _s3(url: str, **config: Any) -> Any:
    return boto3.session.Session().client(
        "s3",
        endpoint_url=url,
        aws_access_key_id="x",
        aws_secret_access_key="x",
        region_name=REGION,
        config=Config(**config),
    )


@pytest.fixture(scope="module")
def moto_server() -> Iterator[str]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(f"{url}/moto-api/", process, timeout=30)
        yield url
        reset = urllib.request.Request(f"{url}/moto-api/reset", method="POST")
        _NO_PROXY.open(reset, timeout=10).close()
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def proxy(moto_server: str) -> Iterator[FaultProxy]:
    with FaultProxy.start(moto_server) as started:
        s3 = _s3(started.url)
        location = {"LocationConstraint": REGION}
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration=location)
        s3.put_object(Bucket=BUCKET, Key="small", Body=b"small object")
        yield started


@pytest.fixture(autouse=True)
def _clean_proxy(proxy: FaultProxy) -> Iterator[None]:
    proxy.configure()
    proxy.reset_stats()
    yield
    proxy.configure()


# --------------------------------------------------------------------------- pass-through


def test_round_trip_without_faults(proxy: FaultProxy) -> None:
    s3 = _s3(proxy.url, retries=NO_RETRY)
    payload = os.urandom(1000)
    s3.put_object(Bucket=BUCKET, Key="rt/plain", Body=payload)
    assert s3.get_object(Bucket=BUCKET, Key="rt/plain")["Body"].read() == payload
    assert s3.head_object(Bucket=BUCKET, Key="rt/plain")["ContentLength"] == len(payload)

    part1, part2 = os.urandom(5 * MIB), os.urandom(1)
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key="rt/multi")
    parts = []
    for number, data in ((1, part1), (2, part2)):
        # A file-like body makes botocore send "Expect: 100-continue".
        response = s3.upload_part(
            Bucket=BUCKET,
            Key="rt/multi",
            UploadId=upload["UploadId"],
            PartNumber=number,
            Body=io.BytesIO(data),
        )
        parts.append({"PartNumber": number, "ETag": response["ETag"]})
    s3.complete_multipart_upload(
        Bucket=BUCKET,
        Key="rt/multi",
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": parts},
    )
    assert s3.get_object(Bucket=BUCKET, Key="rt/multi")["Body"].read() == part1 + part2

    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="rt/")
    assert [o["Key"] for o in listed["Contents"]] == ["rt/multi", "rt/plain"]
    objects = [{"Key": "rt/multi"}, {"Key": "rt/plain"}]
    deleted = s3.delete_objects(Bucket=BUCKET, Delete={"Objects": objects})
    assert sorted(d["Key"] for d in deleted["Deleted"]) == ["rt/multi", "rt/plain"]
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="rt/")["KeyCount"] == 0

    stats = proxy.stats()
    assert stats["requests"] == stats["forwarded"] == 11
    assert stats["error_503"] == stats["error_500"] == stats["drop"] == 0


def test_chunked_request_and_keep_alive(proxy: FaultProxy) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    body = iter([b"hello ", b"chunked ", b"world"])
    conn.request("PUT", f"/{BUCKET}/chunked", body=body, encode_chunked=True)
    response = conn.getresponse()
    response.read()
    assert response.status == 200
    assert not response.will_close  # upstream closes; the client connection stays
    conn.request("GET", f"/{BUCKET}/chunked", headers={"Authorization": DUMMY_AUTH})
    response = conn.getresponse()
    assert (response.status, response.read()) == (200, b"hello chunked world")
    conn.close()
    assert proxy.stats()["forwarded"] == 2


def test_expect_100_continue(proxy: FaultProxy) -> None:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        head = (
            f"PUT /{BUCKET}/expect HTTP/1.1\r\nHost: 127.0.0.1:{proxy.port}\r\n"
            "Content-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
        )
        sock.sendall(head.encode())
        assert sock.recv(1024).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(b"12345")
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200 ")
    s3 = _s3(proxy.url)
    assert s3.get_object(Bucket=BUCKET, Key="expect")["Body"].read() == b"12345"


class _EofHandler(socketserver.BaseRequestHandler):
    """Answers without Content-Length or chunking: the body ends at EOF."""

    def handle(self) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            data += self.request.recv(4096)
        self.request.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nbody until eof")


def test_eof_framed_response_and_dead_upstream() -> None:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _EofHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with FaultProxy.start(f"http://127.0.0.1:{server.server_address[1]}") as eof_proxy:
            conn = http.client.HTTPConnection("127.0.0.1", eof_proxy.port, timeout=10)
            conn.request("GET", "/anything")
            response = conn.getresponse()
            assert (response.status, response.read()) == (200, b"body until eof")
            assert response.will_close
            conn.close()
        with FaultProxy.start(f"http://127.0.0.1:{_free_port()}") as dead_proxy:
            conn = http.client.HTTPConnection("127.0.0.1", dead_proxy.port, timeout=10)
            conn.request("GET", "/anything")
            assert conn.getresponse().status == 502
            conn.close()
            assert dead_proxy.stats()["upstream_errors"] == 1
    finally:
        server.shutdown()
        server.server_close()


# --------------------------------------------------------------------------- faults


def _outcome(s3: Any) -> str:
    try:
        s3.get_object(Bucket=BUCKET, Key="small")["Body"].read()
    except ClientError as exc:
        return exc.response["Error"]["Code"]
    except ConnectionClosedError:
        return "connection-closed"
    return "ok"


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("error_503", "SlowDown"),
        ("error_500", "InternalError"),
        ("drop", "connection-closed"),
    ],
)
def test_fault_rate(proxy: FaultProxy, fault: str, expected: str) -> None:
    proxy.configure(**{fault: 0.3}, seed=1234)
    s3 = _s3(proxy.url, retries=NO_RETRY)
    # Every request consumes exactly one draw from the seeded RNG, so the number of
    # faults is deterministic even though a few threads share the work.
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(pool.map(lambda _: _outcome(s3), range(400)))

    assert set(outcomes) == {"ok", expected}
    failed = outcomes.count(expected)
    assert 0.23 <= failed / 400 <= 0.37
    stats = proxy.stats()
    assert stats["requests"] == 400
    assert stats[fault] == failed
    assert 0.23 <= stats[fault] / stats["requests"] <= 0.37
    assert stats["forwarded"] == 400 - failed
    others = {"error_503", "error_500", "drop"} - {fault}
    assert all(stats[other] == 0 for other in others)


def test_seed_makes_faults_reproducible(proxy: FaultProxy) -> None:
    s3 = _s3(proxy.url, retries=NO_RETRY)
    runs = []
    for _ in range(2):
        proxy.configure(error_503=0.4, error_500=0.3, seed=7)
        runs.append([_outcome(s3) for _ in range(30)])
    assert runs[0] == runs[1]
    assert {"ok", "SlowDown", "InternalError"} == set(runs[0])


def test_error_on_head_has_no_body(proxy: FaultProxy) -> None:
    proxy.configure(error_503=1)
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    for _ in range(2):  # the connection stays usable after a bodiless reply
        conn.request("HEAD", f"/{BUCKET}/small")
        response = conn.getresponse()
        assert response.status == 503
        assert response.read() == b""
    conn.request("GET", f"/{BUCKET}/small")
    response = conn.getresponse()
    body = response.read()
    conn.close()
    assert response.getheader("Content-Type") == "application/xml"
    assert int(response.getheader("Content-Length")) == len(body)
    assert b"<Code>SlowDown</Code>" in body


# --------------------------------------------------------------------------- latency


def test_latency_sequential(proxy: FaultProxy) -> None:
    s3 = _s3(proxy.url, retries=NO_RETRY)
    s3.head_object(Bucket=BUCKET, Key="small")  # warm up client and connection

    def twenty() -> float:
        started = time.monotonic()
        for _ in range(20):
            s3.head_object(Bucket=BUCKET, Key="small")
        return time.monotonic() - started

    baseline = twenty()  # without latency, on this machine's load right now
    proxy.configure(latency_ms=50)
    elapsed = twenty()
    assert elapsed >= 1.0  # 20 x 50 ms, one after the other
    assert elapsed - baseline < 1.5, (elapsed, baseline)


def test_latency_is_concurrent(proxy: FaultProxy) -> None:
    s3 = _s3(proxy.url, retries=NO_RETRY, max_pool_connections=64)
    s3.head_object(Bucket=BUCKET, Key="small")  # warm up the client

    def burst() -> float:
        with concurrent.futures.ThreadPoolExecutor(max_workers=64) as pool:
            started = time.monotonic()
            futures = [pool.submit(s3.head_object, Bucket=BUCKET, Key="small") for _ in range(64)]
            results = [f.result() for f in futures]
            elapsed = time.monotonic() - started
        assert all(r["ContentLength"] == len(b"small object") for r in results)
        return elapsed

    baseline = burst()  # the same 64 requests without latency, on this machine's load right now
    proxy.configure(latency_ms=200)
    added = burst() - baseline
    # 64 requests one after the other would add 64 x 200 ms = 12.8 s; concurrently, about one latency
    assert added < 1.0, (added, baseline)
    assert proxy.stats()["forwarded"] == 129


# --------------------------------------------------------------------------- control API


@pytest.mark.parametrize(
    "config",
    [
        {"error_503": 0.6, "error_500": 0.3, "drop": 0.2},
        {"drop": -0.1},
        {"error_500": 1.5},
        {"latency_ms": -5},
        {"error_503": "0.1"},
        {"seed": 1.5},
        {"unknown": 1},
    ],
)
def test_bad_config_is_rejected(proxy: FaultProxy, config: dict[str, Any]) -> None:
    proxy.configure(error_503=0.1, seed=3)
    with pytest.raises(urllib.error.HTTPError) as caught:
        proxy.configure(**config)
    assert caught.value.code == 400
    assert "error" in json.loads(caught.value.read())
    assert proxy.config() == {
        "error_503": 0.1,
        "error_500": 0.0,
        "drop": 0.0,
        "latency_ms": 0.0,
        "seed": 3,
    }


def test_invalid_json_and_unknown_route(proxy: FaultProxy) -> None:
    request = urllib.request.Request(f"{proxy.url}/__faultproxy__/config", data=b"{not json", method="PUT")
    with pytest.raises(urllib.error.HTTPError) as caught:
        _NO_PROXY.open(request, timeout=10)
    assert caught.value.code == 400
    with pytest.raises(urllib.error.HTTPError) as caught:
        _NO_PROXY.open(f"{proxy.url}/__faultproxy__/nope", timeout=10)
    assert caught.value.code == 404
    assert proxy.stats()["requests"] == 0  # control calls are never forwarded


def test_configure_round_trip(proxy: FaultProxy) -> None:
    applied = proxy.configure(error_503=0.25, drop=0.5, latency_ms=3, seed=9)
    expected = {"error_503": 0.25, "error_500": 0.0, "drop": 0.5, "latency_ms": 3.0, "seed": 9}
    assert applied == expected
    assert proxy.config() == expected


def test_stats_reset(proxy: FaultProxy) -> None:
    s3 = _s3(proxy.url, retries=NO_RETRY)
    proxy.configure(error_500=0.5, seed=5)
    for _ in range(10):
        _outcome(s3)
    stats = proxy.stats()
    assert stats["requests"] == 10
    assert stats["error_500"] + stats["forwarded"] == 10
    zero = {key: 0 for key in stats}
    assert proxy.reset_stats() == zero
    assert proxy.stats() == zero
