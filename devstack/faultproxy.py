"""Fault-injecting HTTP/1.1 reverse proxy for a local S3 emulator (moto).

Tests and benchmarks put this proxy between boto3 and a ``moto_server`` to
exercise retry and error handling: it can add latency to every request and
answer a configurable fraction of requests with S3 ``503 SlowDown`` or
``500 InternalError`` errors, or drop the connection without any response.

It is an asyncio (stdlib only) server: hundreds of concurrent requests, each
delayed by the configured latency, cost no threads.  Client connections are
kept alive, idle upstream connections are pooled, and HTTP/1.1 messages are
framed by Content-Length, ``Transfer-Encoding: chunked`` (forwarded as-is) or,
for responses only, end of stream.  ``Expect: 100-continue`` is answered by the
proxy itself.

CLI::

    python -m devstack.faultproxy --upstream http://127.0.0.1:5000 \\
        [--host 127.0.0.1] [--port 0] [--port-file PATH]

``--port 0`` picks a free port; the chosen port is written to ``--port-file``
(atomically) once the proxy is listening.

Control API, on the proxy's own port (never forwarded upstream):

* ``PUT /__faultproxy__/config`` with a JSON object, every key optional and
  defaulting to 0 (``seed`` to null): ``{"error_503": 0.1, "error_500": 0.05,
  "drop": 0.05, "latency_ms": 20, "seed": 1}``.  The whole configuration is
  replaced.  Rates are fractions (0..1) of forwarded-eligible requests and
  must sum to at most 1; invalid input is answered with ``400``.
* ``GET /__faultproxy__/config``: the current configuration.
* ``GET /__faultproxy__/stats``: counters ``{"requests", "forwarded",
  "error_503", "error_500", "drop", "upstream_errors"}``.
* ``POST /__faultproxy__/reset-stats``: zero the counters.

Each proxied request first waits ``latency_ms`` (also when a fault follows),
then one draw from a ``random.Random`` (seeded from ``seed`` when given)
decides between ``error_503``, ``error_500``, ``drop`` and forwarding.

From Python (tests)::

    with FaultProxy.start("http://127.0.0.1:5000") as proxy:
        proxy.configure(error_503=0.1, seed=1)
        s3 = boto3.client("s3", endpoint_url=proxy.url, ...)
        ...
        print(proxy.stats())
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass
from http import HTTPStatus
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

CONTROL_PREFIX = "/__faultproxy__/"
RATE_KEYS = ("error_503", "error_500", "drop")
STAT_KEYS = (
    "requests",
    "forwarded",
    "error_503",
    "error_500",
    "drop",
    "upstream_errors",
)

_READ_SIZE = 64 * 1024
_HEAD_LIMIT = 1024 * 1024
_MAX_IDLE_UPSTREAM = 256
_REQUEST_HOP_HEADERS = frozenset({"connection", "keep-alive", "proxy-connection", "te", "upgrade", "expect"})
_RESPONSE_HOP_HEADERS = frozenset({"connection", "keep-alive", "proxy-connection", "upgrade"})
_ERROR_BODIES = {
    503: b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>",
    500: b"<Error><Code>InternalError</Code>"
    b"<Message>We encountered an internal error. Please try again.</Message></Error>",
}
_PACKAGE_ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class FaultConfig:
    """Fault rates (fractions 0..1), latency in milliseconds and optional RNG seed."""

    error_503: float = 0.0
    error_500: float = 0.0
    drop: float = 0.0
    latency_ms: float = 0.0
    seed: int | None = None

    @classmethod
    def from_json(cls, data: object) -> FaultConfig:
        """Validate a decoded JSON object; raise ValueError/TypeError when unacceptable."""
        if not isinstance(data, dict):
            raise TypeError("config must be a JSON object")
        unknown = set(data) - {*RATE_KEYS, "latency_ms", "seed"}
        if unknown:
            raise ValueError(f"unknown config keys: {sorted(unknown)}")
        rates = {key: _number(data, key, upper=1.0) for key in RATE_KEYS}
        if sum(rates.values()) > 1.0 + 1e-9:
            raise ValueError("error_503 + error_500 + drop must be <= 1")
        seed = data.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError("seed must be an integer or null")
        return cls(latency_ms=_number(data, "latency_ms", upper=math.inf), seed=seed, **rates)


def _number(data: dict[str, Any], key: str, upper: float) -> float:
    value = data.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{key} must be a number")
    if not math.isfinite(value) or not 0 <= value <= upper:
        raise ValueError(f"{key} must be between 0 and {upper}")
    return float(value)


def choose_fault(rng: random.Random, config: FaultConfig) -> str | None:
    """Return the fault for one request ("error_503", "error_500", "drop") or None."""
    draw = rng.random()
    threshold = 0.0
    for key in RATE_KEYS:
        threshold += getattr(config, key)
        if draw < threshold:
            return key
    return None


# --------------------------------------------------------------------------- HTTP/1.1 messages


class _ProtocolError(Exception):
    """A malformed HTTP message."""


class _Sink(Protocol):
    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...


class _BytesSink:
    """Collects bytes in memory; quacks like the parts of StreamWriter we use."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.parts.append(data)

    async def drain(self) -> None:
        return None

    def getvalue(self) -> bytes:
        return b"".join(self.parts)


@dataclass
class _Head:
    """Start line and raw header fields of one HTTP message."""

    start: bytes
    headers: list[tuple[bytes, bytes]]

    @classmethod
    def parse(cls, raw: bytes) -> _Head:
        lines = raw.split(b"\r\n")
        headers = []
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip():
                raise _ProtocolError(f"bad header line {line[:80]!r}")
            headers.append((name, value.strip()))
        return cls(lines[0], headers)

    def get(self, name: str) -> str | None:
        values = [v.decode("latin-1") for k, v in self.headers if k.decode("latin-1").lower() == name]
        return ",".join(values) if values else None

    def tokens(self, name: str) -> set[str]:
        return {t.strip().lower() for t in (self.get(name) or "").split(",") if t.strip()}

    def filtered(self, drop: frozenset[str]) -> list[tuple[bytes, bytes]]:
        """Headers without hop-by-hop fields (fixed ones and those named in Connection)."""
        names = drop | self.tokens("connection")
        return [(k, v) for k, v in self.headers if k.decode("latin-1").lower() not in names]


def _serialize(start: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    lines = [start, *(k + b": " + v for k, v in headers)]
    return b"\r\n".join(lines) + b"\r\n\r\n"


async def _read_head(reader: asyncio.StreamReader) -> bytes:
    """Read up to the blank line; skips empty lines before the start line."""
    while True:
        try:
            raw = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError as exc:
            raise _ProtocolError("header section too large") from exc
        raw = raw.lstrip(b"\r\n")
        if raw:
            return raw


def _content_length(value: str) -> int:
    values = {v.strip() for v in value.split(",")}
    if len(values) != 1 or not next(iter(values)).isdigit():
        raise _ProtocolError(f"bad Content-Length {value!r}")
    return int(values.pop())


def _is_chunked(head: _Head) -> bool:
    codings = [c.strip().lower() for c in (head.get("transfer-encoding") or "").split(",")]
    return codings[-1] == "chunked"


async def _copy_exact(reader: asyncio.StreamReader, sink: _Sink, size: int) -> None:
    while size > 0:
        data = await reader.read(min(size, _READ_SIZE))
        if not data:
            raise asyncio.IncompleteReadError(b"", size)
        sink.write(data)
        size -= len(data)
        await sink.drain()


async def _copy_chunked(reader: asyncio.StreamReader, sink: _Sink) -> None:
    """Copy a chunked body byte for byte, parsing only to find its end."""
    while True:
        line = await reader.readuntil(b"\r\n")
        sink.write(line)
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError as exc:
            raise _ProtocolError(f"bad chunk size line {line[:80]!r}") from exc
        if size == 0:
            break
        await _copy_exact(reader, sink, size + 2)
    while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
        sink.write(line)  # trailer fields
    sink.write(line)
    await sink.drain()


async def _copy_to_eof(reader: asyncio.StreamReader, sink: _Sink) -> None:
    while data := await reader.read(_READ_SIZE):
        sink.write(data)
        await sink.drain()


async def _copy_body(reader: asyncio.StreamReader, sink: _Sink, framing: str, length: int) -> None:
    if framing == "length":
        await _copy_exact(reader, sink, length)
    elif framing == "chunked":
        await _copy_chunked(reader, sink)
    elif framing == "eof":
        await _copy_to_eof(reader, sink)


@dataclass
class _Request:
    method: str
    target: str
    version: str
    head: _Head
    framing: str  # "none" | "length" | "chunked"
    length: int

    @classmethod
    def parse(cls, raw: bytes) -> _Request:
        head = _Head.parse(raw)
        parts = head.start.decode("latin-1").split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _ProtocolError(f"bad request line {head.start[:80]!r}")
        framing, length = "none", 0
        if head.get("transfer-encoding") is not None:
            if not _is_chunked(head):
                raise _ProtocolError("unsupported Transfer-Encoding")
            framing = "chunked"
        elif (value := head.get("content-length")) is not None:
            framing, length = "length", _content_length(value)
        return cls(parts[0], parts[1], parts[2], head, framing, length)

    @property
    def keep_alive(self) -> bool:
        connection = self.head.tokens("connection")
        if self.version == "HTTP/1.0":
            return "keep-alive" in connection
        return "close" not in connection

    @property
    def expects_continue(self) -> bool:
        return self.version != "HTTP/1.0" and "100-continue" in self.head.tokens("expect")

    def upstream_head(self, default_host: bytes) -> bytes:
        headers = self.head.filtered(_REQUEST_HOP_HEADERS)
        if self.framing == "chunked":
            headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
        if self.head.get("host") is None:
            headers.insert(0, (b"Host", default_host))
        start = f"{self.method} {self.target} HTTP/1.1".encode("latin-1")
        return _serialize(start, headers)


@dataclass
class _Response:
    head: _Head
    status: int

    @classmethod
    def parse(cls, raw: bytes) -> _Response:
        head = _Head.parse(raw)
        parts = head.start.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise _ProtocolError(f"bad status line {head.start[:80]!r}")
        return cls(head, int(parts[1]))

    def framing(self, method: str) -> tuple[str, int]:
        if method == "HEAD" or self.status < 200 or self.status in (204, 304):
            return "none", 0
        if self.head.get("transfer-encoding") is not None:
            return ("chunked", 0) if _is_chunked(self.head) else ("eof", 0)
        if (value := self.head.get("content-length")) is not None:
            return "length", _content_length(value)
        return "eof", 0

    @property
    def keep_alive(self) -> bool:
        connection = self.head.tokens("connection")
        if self.head.start.startswith(b"HTTP/1.0"):
            return "keep-alive" in connection
        return "close" not in connection

    def client_head(self, close: bool) -> bytes:
        headers = self.head.filtered(_RESPONSE_HOP_HEADERS)
        if close:
            headers.append((b"Connection", b"close"))
        return _serialize(self.head.start, headers)


def _simple_response(status: int, body: bytes, content_type: str, *, close: bool, head_only: bool = False) -> bytes:
    headers = [
        (b"Content-Type", content_type.encode()),
        (b"Content-Length", str(len(body)).encode()),
        (b"Server", b"faultproxy"),
    ]
    if close:
        headers.append((b"Connection", b"close"))
    start = f"HTTP/1.1 {status} {HTTPStatus(status).phrase}".encode()
    return _serialize(start, headers) + (b"" if head_only else body)


# --------------------------------------------------------------------------- upstream pool


@dataclass
class _Upstream:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def close(self) -> None:
        self.writer.close()

    @property
    def usable(self) -> bool:
        return not self.reader.at_eof() and not self.writer.is_closing()


class _UpstreamPool:
    """Idle keep-alive connections to the upstream server (LIFO)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._idle: list[_Upstream] = []

    def _take_idle(self) -> _Upstream | None:
        while self._idle:
            conn = self._idle.pop()
            if conn.usable:
                return conn
            conn.close()
        return None

    def release(self, conn: _Upstream, reusable: bool) -> None:
        if reusable and conn.usable and len(self._idle) < _MAX_IDLE_UPSTREAM:
            self._idle.append(conn)
        else:
            conn.close()

    async def exchange(self, head: bytes, body: bytes) -> tuple[_Upstream, _Response]:
        """Send one request and read the final response head; retry once if a pooled
        connection turns out to be stale."""
        conn = self._take_idle()
        if conn is not None:
            try:
                return conn, await self._roundtrip(conn, head, body)
            except (
                ConnectionResetError,
                BrokenPipeError,
                asyncio.IncompleteReadError,
            ) as exc:
                if isinstance(exc, asyncio.IncompleteReadError) and exc.partial:
                    raise
        reader, writer = await asyncio.open_connection(self.host, self.port, limit=_HEAD_LIMIT)
        conn = _Upstream(reader, writer)
        return conn, await self._roundtrip(conn, head, body)

    @staticmethod
    async def _roundtrip(conn: _Upstream, head: bytes, body: bytes) -> _Response:
        try:
            conn.writer.write(head + body if len(body) < _READ_SIZE else head)
            if len(body) >= _READ_SIZE:
                conn.writer.write(body)
            await conn.writer.drain()
            response = _Response.parse(await _read_head(conn.reader))
            while 100 <= response.status < 200 and response.status != 101:
                response = _Response.parse(await _read_head(conn.reader))  # we sent our own 100
            return response
        except BaseException:
            conn.close()
            raise


# --------------------------------------------------------------------------- the proxy


_UPSTREAM_ERRORS = (
    OSError,
    asyncio.IncompleteReadError,
    asyncio.LimitOverrunError,
    _ProtocolError,
)


class _ClientGone(Exception):
    """The client connection has to be closed (broken mid-response)."""


class ProxyServer:
    """Connection handler for asyncio.start_server; holds config, RNG and stats."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.pool = _UpstreamPool(upstream_host, upstream_port)
        self.upstream_host = f"{upstream_host}:{upstream_port}".encode()
        self.config = FaultConfig()
        self.rng = random.Random()
        self.stats = dict.fromkeys(STAT_KEYS, 0)

    async def handle_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await self._handle_request(reader, writer):
                pass
        except (_ProtocolError, asyncio.LimitOverrunError):
            with contextlib.suppress(OSError):
                writer.write(_simple_response(400, b"bad request\n", "text/plain", close=True))
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError, _ClientGone):
            pass
        except asyncio.CancelledError:
            # Shutdown: this task is the connection's root and nobody awaits it; a
            # cancelled task would make asyncio's stream callback log a traceback.
            pass
        finally:
            writer.close()

    async def _handle_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; return whether the client connection stays open."""
        try:
            request = _Request.parse(await _read_head(reader))
        except asyncio.IncompleteReadError as exc:
            if exc.partial.strip():
                raise _ProtocolError("truncated request head") from exc
            return False  # clean close between requests
        if request.expects_continue and request.framing != "none":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        sink = _BytesSink()
        await _copy_body(reader, sink, request.framing, request.length)
        body = sink.getvalue()
        if request.target.startswith(CONTROL_PREFIX):
            writer.write(self._control(request, body))
            await writer.drain()
            return request.keep_alive
        return await self._proxy(request, body, writer)

    async def _proxy(self, request: _Request, body: bytes, writer: asyncio.StreamWriter) -> bool:
        self.stats["requests"] += 1
        if self.config.latency_ms > 0:
            await asyncio.sleep(self.config.latency_ms / 1000)
        fault = choose_fault(self.rng, self.config)
        if fault is not None:
            self.stats[fault] += 1
        if fault == "drop":
            return False
        if fault is not None:
            status = 503 if fault == "error_503" else 500
            head_only = request.method == "HEAD"
            response = _simple_response(
                status,
                _ERROR_BODIES[status],
                "application/xml",
                close=not request.keep_alive,
                head_only=head_only,
            )
            writer.write(response)
            await writer.drain()
            return request.keep_alive
        return await self._forward(request, body, writer)

    async def _forward(self, request: _Request, body: bytes, writer: asyncio.StreamWriter) -> bool:
        self.stats["forwarded"] += 1
        try:
            conn, response = await self.pool.exchange(request.upstream_head(self.upstream_host), body)
        except _UPSTREAM_ERRORS as exc:
            return await self._bad_gateway(request, writer, exc)
        try:
            framing, length = response.framing(request.method)
        except _ProtocolError as exc:
            conn.close()
            return await self._bad_gateway(request, writer, exc)
        keep_client = request.keep_alive and framing != "eof"
        try:
            writer.write(response.client_head(close=not keep_client))
            await _copy_body(conn.reader, writer, framing, length)
        except Exception as exc:
            conn.close()
            if isinstance(exc, _UPSTREAM_ERRORS) and not writer.is_closing():
                self.stats["upstream_errors"] += 1  # else the client went away
            raise _ClientGone from exc
        except BaseException:
            conn.close()
            raise
        self.pool.release(conn, reusable=response.keep_alive and framing != "eof")
        return keep_client

    async def _bad_gateway(self, request: _Request, writer: asyncio.StreamWriter, exc: BaseException) -> bool:
        self.stats["upstream_errors"] += 1
        message = f"faultproxy: upstream failed: {exc!r}\n".encode()
        writer.write(_simple_response(502, message, "text/plain", close=not request.keep_alive))
        await writer.drain()
        return request.keep_alive

    # ----------------------------------------------------------------------- control API

    def _control(self, request: _Request, body: bytes) -> bytes:
        path = urllib.parse.urlsplit(request.target).path[len(CONTROL_PREFIX) :]
        routes = {
            ("config", "GET"): self._config_json,
            ("config", "PUT"): lambda: self._set_config(body),
            ("stats", "GET"): lambda: dict(self.stats),
            ("reset-stats", "POST"): self._reset_stats,
        }
        handler = routes.get((path, request.method))
        status: int = 200
        if handler is None:
            known = any(p == path for p, _ in routes)
            status, payload = (
                (405 if known else 404),
                {"error": f"{request.method} {request.target}"},
            )
        else:
            try:
                payload = handler()
            except (ValueError, TypeError) as exc:
                status, payload = 400, {"error": str(exc)}
        data = json.dumps(payload).encode() + b"\n"
        return _simple_response(status, data, "application/json", close=not request.keep_alive)

    def _config_json(self) -> dict[str, Any]:
        return asdict(self.config)

    def _set_config(self, body: bytes) -> dict[str, Any]:
        try:
            data = json.loads(body or b"{}")
        except json.JSONDecodeError as exc:
            raise ValueError(f"invalid JSON: {exc}") from exc
        self.config = FaultConfig.from_json(data)
        self.rng = random.Random(self.config.seed) if self.config.seed is not None else random.Random()
        return self._config_json()

    def _reset_stats(self) -> dict[str, int]:
        self.stats = dict.fromkeys(STAT_KEYS, 0)
        return dict(self.stats)


# --------------------------------------------------------------------------- process entry point


def _parse_upstream(url: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"upstream must be an http:// URL, got {url!r}")
    return parts.hostname, parts.port or 80


def _write_port_file(path: str, port: int) -> None:
    tmp = f"{path}.tmp"
    Path(tmp).write_text(f"{port}\n")
    os.replace(tmp, path)


async def serve(upstream: str, host: str = "127.0.0.1", port: int = 0, port_file: str | None = None) -> None:
    """Run the proxy until SIGTERM/SIGINT."""
    proxy = ProxyServer(*_parse_upstream(upstream))
    server = await asyncio.start_server(proxy.handle_client, host, port, limit=_HEAD_LIMIT, backlog=1024)
    bound = server.sockets[0].getsockname()[1]
    if port_file:
        _write_port_file(port_file, bound)
    print(
        f"faultproxy listening on http://{host}:{bound} -> {upstream}",
        file=sys.stderr,
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devstack.faultproxy", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--upstream",
        required=True,
        help="upstream base URL, e.g. http://127.0.0.1:5000",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on; 0 picks a free one")
    parser.add_argument("--port-file", help="write the bound port to this file once listening")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.upstream, args.host, args.port, args.port_file))


# --------------------------------------------------------------------------- Python API for tests


class FaultProxy:
    """A faultproxy subprocess plus a small client for its control API."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, workdir: str) -> None:
        self.process = process
        self.port = port
        self._workdir = workdir
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    @classmethod
    def start(cls, upstream_url: str, *, timeout: float = 10.0) -> FaultProxy:
        """Spawn ``python -m devstack.faultproxy`` and wait (at most ``timeout`` s) until it listens."""
        workdir = tempfile.mkdtemp(prefix="faultproxy-")
        port_file = Path(workdir) / "port"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PACKAGE_ROOT), env.get("PYTHONPATH")) if p)
        command = [
            sys.executable,
            "-m",
            "devstack.faultproxy",
            "--upstream",
            upstream_url,
        ]
        process = subprocess.Popen([*command, "--port", "0", "--port-file", str(port_file)], env=env)
        try:
            port = _wait_for_port(process, port_file, timeout)
        except BaseException:
            _terminate(process)
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        return cls(process, port, workdir)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def configure(self, **config: float | None) -> dict[str, Any]:
        """Replace the fault config (omitted keys reset to 0); HTTPError 400 when invalid."""
        return self._call("PUT", "config", config)

    def config(self) -> dict[str, Any]:
        return self._call("GET", "config")

    def stats(self) -> dict[str, int]:
        return self._call("GET", "stats")

    def reset_stats(self) -> dict[str, int]:
        return self._call("POST", "reset-stats")

    def stop(self) -> None:
        """Terminate the subprocess and wait for it."""
        _terminate(self.process)
        shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _call(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            f"{self.url}{CONTROL_PREFIX}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with self._opener.open(request, timeout=10) as response:
            return json.loads(response.read())


def _wait_for_port(process: subprocess.Popen[bytes], port_file: Path, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"faultproxy exited early with code {process.returncode}")
        with contextlib.suppress(FileNotFoundError):
            text = port_file.read_text().strip()
            if text.isdigit():
                return int(text)
        time.sleep(0.02)
    raise TimeoutError(f"faultproxy did not report its port within {timeout} s")


def _terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


if __name__ == "__main__":
    main()
