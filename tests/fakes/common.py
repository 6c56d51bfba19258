"""What the three fake servers (``neptune2``, ``neptune3``, ``pluto``) have in common.

Each fake speaks a different wire protocol, but they are served, stopped, faulted and authenticated the
same way; that part lives here so a fix to it (a connection left open by ``stop()``, a fault rule that
fires once too often) is made once:

- ``FakeHTTPServer`` / ``FakeRequestHandler`` / ``ServedFake``: a ``ThreadingHTTPServer`` on a daemon
  thread with keep-alive, TCP_NODELAY and silent logs, whose ``stop()`` also cuts the keep-alive connections
  the clients' pools still hold (so no handler thread outlives the fake).
- ``FaultRule`` / ``FaultRules``: the thread-safe, first-match-wins list of injected faults with
  ``times``/``hits`` accounting. The kinds of fault and the answers they produce stay with each fake.
- Neptune API tokens and HS256 JWTs (both Neptune fakes issue and check them the same way).
- Epoch-millisecond helpers and ``apply_env`` / ``restore_env``.

Standard library only: the neptune3 fake also runs under interpreters with another neptune-query.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import socket
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Generic, Self, TypeVar

# --------------------------------------------------------------------------------------------- time


def now_ms() -> int:
    """Wall-clock epoch milliseconds."""
    return int(time.time() * 1000)


def to_ms(value: datetime | int | float) -> int:
    """Epoch milliseconds from a datetime (naive = UTC) or a number already in milliseconds."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return int(round(value.timestamp() * 1000))
    return int(value)


# --------------------------------------------------------------------------------------- environment


def apply_env(env: Mapping[str, str]) -> dict[str, str | None]:
    """Set ``env`` in ``os.environ``; returns the previous values for ``restore_env``."""
    previous = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    return previous


def restore_env(previous: Mapping[str, str | None]) -> None:
    """Put back values saved as ``{name: value or None}``; None means the variable was not set."""
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


# -------------------------------------------------------------------------------------------- tokens


def make_api_token(base_url: str, api_key: str) -> str:
    """A Neptune API token: standard base64 of JSON ``{"api_address", "api_url", "api_key"}``.

    The clients take their base URL from ``api_url`` (falling back to ``api_address``), so both carry it.
    """
    payload = {"api_address": base_url, "api_url": base_url, "api_key": api_key}
    return base64.b64encode(json.dumps(payload).encode("utf-8")).decode("ascii")


def decode_api_token(token: str) -> dict[str, Any] | None:
    """The JSON object inside a Neptune API token, or None when it is not one."""
    try:
        data = json.loads(base64.b64decode(token.strip().encode("ascii")).decode("utf-8"))
    except Exception:
        return None
    return data if isinstance(data, dict) else None


def b64url(data: bytes) -> str:
    """Unpadded URL-safe base64, as JWT segments are written."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hs256_jwt(key: bytes, claims: Mapping[str, Any]) -> str:
    """A JWT with ``claims``, signed with HMAC-SHA256 so the fake can tell its own tokens from garbage."""
    header = {"alg": "HS256", "typ": "JWT"}
    signing_input = b64url(_compact_json(header)) + "." + b64url(_compact_json(claims))
    signature = hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + b64url(signature)


def hs256_claims(key: bytes, token: str) -> Any:
    """The claims of a JWT made by ``hs256_jwt`` with ``key``.

    Raises ``ValueError("malformed token")`` or ``ValueError("bad signature")``; expiry is the caller's call.
    """
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("malformed token")
    expected = hmac.new(key, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
    try:
        signature = b64url_decode(parts[2])
    except ValueError as e:
        raise ValueError("malformed token") from e
    if not hmac.compare_digest(expected, signature):
        raise ValueError("bad signature")
    try:
        return json.loads(b64url_decode(parts[1]))
    except ValueError as e:
        raise ValueError("malformed token") from e


def _compact_json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


# -------------------------------------------------------------------------------------------- faults


def check_fault_kind(kind: str, kinds: Iterable[str]) -> None:
    if kind not in kinds:
        raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(kinds)}")


def method_matches(wanted: str | None, method: str) -> bool:
    """A rule without a method (None or "") matches every method; otherwise case-insensitively."""
    return not wanted or wanted.upper() == method.upper()


class FaultRule:
    """Base of each fake's ``Fault`` dataclass, which declares ``times`` (None = forever) and ``hits``
    and defines ``matches(method, path, ...)`` with the arguments its fake passes to ``FaultRules.take``."""

    times: int | None
    hits: int

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times


RuleT = TypeVar("RuleT", bound=FaultRule)


class FaultRules(Generic[RuleT]):
    """Thread-safe list of fault rules consulted once per request: the first live matching rule fires.

    Subclasses validate the kinds they know and build their rules in ``add``, then ``_register`` them.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[RuleT] = []

    def _register(self, rule: RuleT) -> RuleT:
        with self._lock:
            self._rules.append(rule)
        return rule

    def take(self, method: str, path: str, *more: str) -> RuleT | None:
        """Consume one hit of the first live rule that matches the request, if any."""
        with self._lock:
            for rule in self._rules:
                if not rule.exhausted and rule.matches(method, path, *more):  # type: ignore[attr-defined]
                    rule.hits += 1
                    return rule
        return None

    def remove(self, rule: RuleT) -> None:
        with self._lock:
            if rule in self._rules:
                self._rules.remove(rule)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    @property
    def rules(self) -> list[RuleT]:
        """A snapshot of the rules, exhausted ones included, in the order they were added."""
        with self._lock:
            return list(self._rules)


# ---------------------------------------------------------------------------------------------- HTTP


class FakeHTTPServer(ThreadingHTTPServer):
    """Daemon handler threads; tracks open connections so ``stop()`` can cut idle keep-alive sockets."""

    daemon_threads = True
    allow_reuse_address = True
    fake: Any  # the fake that owns this server; handlers reach it as ``self.server.fake``

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        with self.sockets_lock:
            self.open_sockets.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.sockets_lock:
                self.open_sockets.discard(request)

    def close_open_sockets(self) -> None:
        with self.sockets_lock:
            sockets = list(self.open_sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class FakeRequestHandler(BaseHTTPRequestHandler):
    """Keep-alive (HTTP/1.1) like the real servers, quiet, and with TCP_NODELAY.

    Without TCP_NODELAY a small answer written as headers and body waits ~40 ms for the client's delayed
    ACK, which makes the fake, not the code under test, the bottleneck.
    """

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: FakeHTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Silence the per-request stderr line (tests assert on the fakes' state, not on logs)."""

    def read_body(self) -> bytes:
        """The request body, by ``Content-Length`` or ``Transfer-Encoding: chunked``."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts = []
            while True:
                size_line = self.rfile.readline()
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send_answer(
        self, status: int, body: bytes, headers: Mapping[str, str], content_type: str | None = None
    ) -> None:
        """Status, ``Content-Type`` (if given), ``Content-Length``, ``headers``, then the body (not for HEAD)."""
        self.send_response(status)
        if content_type is not None:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def drop_connection(self) -> None:
        """Close the connection without an answer (the client sees a disconnect)."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


ServerT = TypeVar("ServerT", bound=FakeHTTPServer)


class ServedFake:
    """Lifecycle of a fake served by a ``FakeHTTPServer`` from a daemon thread.

    A fake's ``start()`` calls ``_bind`` (after which ``port`` and ``base_url`` are known), prepares what
    needs the address, then ``_serve``. ``stop()`` is shared; the fake is also a context manager.
    """

    host: str
    _httpd: FakeHTTPServer | None = None
    _thread: threading.Thread | None = None

    def start(self) -> Self:
        raise NotImplementedError

    def _bind(
        self, server_class: type[ServerT], handler_class: type[FakeRequestHandler], port: int = 0
    ) -> ServerT:
        httpd = server_class((self.host, port), handler_class)
        httpd.fake = self
        self._httpd = httpd
        return httpd

    def _serve(self, name: str, poll_interval: float = 0.5) -> None:
        assert self._httpd is not None, "_bind first"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": poll_interval}, name=name, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and cut kept-alive client connections, so no handler thread outlives the server."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        httpd.close_open_sockets()  # ends handler threads parked on idle keep-alive connections
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the fake is not started")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"
