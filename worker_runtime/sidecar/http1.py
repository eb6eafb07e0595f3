"""The few HTTP/1.1 the proxy speaks: requests in from its worker and whole replies back (Server), and
keep-alive requests out to the Conductor server (Upstream).

Why not http.server: it parses every request's headers with the email package and writes a reply in
several system calls; on the path of every poll and update that was most of the sidecar's CPU
(bench/README.md). A worker on the pod's loopback sends plain requests, so this reads the request
line, the header lines and a Content-Length or chunked body, and nothing else; anything malformed is
answered 400 and the connection closed.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import socketserver
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import BinaryIO
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

MAX_LINE = 65536
MAX_HEADERS = 200
MAX_BODY = 64 * 2**20  # a task result larger than this is refused by Conductor anyway


class BadRequest(ValueError):
    pass


@dataclass
class Request:
    method: str
    target: str
    version: str
    headers: dict[str, str]
    body: bytes
    client: str = ""

    def header(self, name: str) -> str:
        name = name.lower()
        for key, value in self.headers.items():
            if key.lower() == name:
                return value
        return ""

    @property
    def keep_alive(self) -> bool:
        connection = self.header("Connection").lower()
        return "close" not in connection if self.version == "HTTP/1.1" else "keep-alive" in connection


def _line(rfile: BinaryIO) -> bytes:
    line = rfile.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise BadRequest("line too long")
    return line


def _chunked(rfile: BinaryIO) -> bytes:
    chunks, total = [], 0
    while True:
        try:
            size = int(_line(rfile).split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise BadRequest("bad chunk size") from None
        if size == 0:
            while _line(rfile) not in (b"\r\n", b"\n", b""):  # trailers
                pass
            return b"".join(chunks)
        total += size
        if total > MAX_BODY:
            raise BadRequest("body too large")
        chunks.append(rfile.read(size))
        _line(rfile)


def read_request(rfile: BinaryIO) -> Request | None:
    """The next request on the connection; None when the client closed it."""
    first = _line(rfile)
    while first in (b"\r\n", b"\n"):  # tolerated between requests (RFC 9112 2.2)
        first = _line(rfile)
    if not first:
        return None
    try:
        method, target, version = first.decode("latin-1").split()
    except ValueError:
        raise BadRequest("bad request line") from None
    if not version.startswith("HTTP/1."):
        raise BadRequest("not HTTP/1.x")
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADERS + 1):
        line = _line(rfile)
        if line in (b"\r\n", b"\n", b""):
            break
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequest("bad header line")
        headers[name] = value.strip()
    else:
        raise BadRequest("too many headers")
    req = Request(method, target, version, headers, b"")
    if "chunked" in req.header("Transfer-Encoding").lower():
        req.body = _chunked(rfile)
    else:
        length = req.header("Content-Length")
        if length:
            if not length.isdigit() or int(length) > MAX_BODY:
                raise BadRequest("bad Content-Length")
            req.body = rfile.read(int(length))
    return req


def response_bytes(status: int, headers: list[tuple[str, str]], body: bytes, head_only: bool, close: bool) -> bytes:
    """A whole reply in one buffer, so it leaves in one write."""
    reason = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
    lines = [f"HTTP/1.1 {status} {reason}", *(f"{k}: {v}" for k, v in headers)]
    has_body = status not in (204, 304) and not 100 <= status < 200
    if has_body:
        lines.append(f"Content-Length: {len(body)}")
    if close:
        lines.append("Connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + body if has_body and not head_only else head


Handler = Callable[[Request], tuple[int, list[tuple[str, str]], bytes]]


class Server(socketserver.ThreadingTCPServer):
    """A thread per connection (an SDK keeps a few open), each serving its requests in turn."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: Handler) -> None:
        self.handle = handler
        super().__init__(address, _Connection)


class _Connection(socketserver.StreamRequestHandler):
    disable_nagle_algorithm = True  # a small reply must not wait for the client's delayed ACK
    server: Server

    def handle(self) -> None:
        while True:
            try:
                req = read_request(self.rfile)
            except BadRequest as exc:
                body = f"{exc}\n".encode()
                self.wfile.write(response_bytes(400, [("Content-Type", "text/plain")], body, False, True))
                return
            except OSError:
                return
            if req is None:
                return
            req.client = self.client_address[0]
            try:
                status, headers, body = self.server.handle(req)
            except Exception:  # never leave a request without a reply
                log.exception("sidecar failed on %s %s", req.method, req.target)
                status, headers, body = 500, [("Content-Type", "text/plain")], b"sidecar error\n"
            close = not req.keep_alive
            self.wfile.write(response_bytes(status, headers, body, req.method == "HEAD", close))
            if close:
                return


# -- to the server ------------------------------------------------------------------------------------


class _Conn:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.rfile = sock.makefile("rb")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.rfile.close()
            self.sock.close()


class Upstream:
    """Keep-alive HTTP/1.1 to one server (http or https), for the proxy's hot path.

    Why not urllib3 here: building its response object and parsing headers with the email package was
    half the sidecar's CPU per forwarded request. The ConductorClient (urllib3) still serves everything
    else, and every request when an HTTP proxy is configured for the server."""

    def __init__(self, base_url: str, connect_timeout: float = 5.0) -> None:
        parts = urlsplit(base_url)
        self.tls = parts.scheme == "https"
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (443 if self.tls else 80)
        self.prefix = parts.path.rstrip("/")
        self.host_header = parts.netloc
        self.connect_timeout = connect_timeout
        self._tls_context = ssl.create_default_context() if self.tls else None
        self._idle: list[_Conn] = []
        self._lock = threading.Lock()

    def _connect(self) -> _Conn:
        sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._tls_context is not None:
            sock = self._tls_context.wrap_socket(sock, server_hostname=self.host)
        return _Conn(sock)

    def exchange(
        self, method: str, target: str, body: bytes | None, headers: dict[str, str], timeout: float
    ) -> tuple[int, dict[str, str], bytes]:
        """`target` is under the base URL's path. A kept connection the server closed meanwhile is
        replaced once; any other failure raises OSError."""
        lines = [f"{method} {self.prefix}{target} HTTP/1.1", f"Host: {self.host_header}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if body is not None or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body or b'')}")
        raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")
        for fresh in (False, True):
            conn = None
            if not fresh:
                with self._lock:
                    conn = self._idle.pop() if self._idle else None
            reused = conn is not None
            conn = conn or self._connect()
            try:
                conn.sock.settimeout(timeout)
                conn.sock.sendall(raw)
                status, reply_headers, reply, keep = _read_response(conn.rfile, method)
            except (OSError, BadRequest) as exc:
                conn.close()
                if reused and not fresh:
                    continue  # the server closed a kept connection: once more on a new one
                raise OSError(f"{method} {target}: {exc}") from exc
            if keep:
                with self._lock:
                    self._idle.append(conn)
            else:
                conn.close()
            return status, reply_headers, reply
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def _read_response(rfile: BinaryIO, method: str) -> tuple[int, dict[str, str], bytes, bool]:
    first = _line(rfile)
    if not first:
        raise BadRequest("connection closed")
    try:
        version, code = first.decode("latin-1").split(None, 2)[:2]
        status = int(code)
    except ValueError:
        raise BadRequest("bad status line") from None
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADERS + 1):
        line = _line(rfile)
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name] = value.strip()
    lower = {k.lower(): v for k, v in headers.items()}
    keep = version == "HTTP/1.1" and "close" not in lower.get("connection", "").lower()
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return status, headers, b"", keep
    if "chunked" in lower.get("transfer-encoding", "").lower():
        return status, headers, _chunked(rfile), keep
    length = lower.get("content-length")
    if length is not None and length.isdigit():
        return status, headers, rfile.read(int(length)), keep
    return status, headers, rfile.read(), False  # delimited by the connection's end
