"""A loopback HTTP proxy of the tests' own that injects faults between a client and the Conductor server.

Faults, chosen per request by probability and path: added latency, a 5xx answer (the request never
reaches the server), a connection reset before forwarding, a reset after forwarding (the server acted
but the client never hears it), a truncated response body, and a black hole (the request hangs).
The rules can be changed while traffic flows; every injected fault is counted.
"""

from __future__ import annotations

import random
import re
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

FAULTS = ("error5xx", "reset_before", "reset_after", "truncate", "blackhole")


@dataclass
class Rule:
    """Faults for requests whose path matches `path` (a regex); probabilities are per request."""

    path: str = ".*"
    methods: tuple[str, ...] = ("GET", "POST", "PUT", "DELETE")
    latency_ms: int = 0
    error5xx: float = 0.0
    reset_before: float = 0.0
    reset_after: float = 0.0
    truncate: float = 0.0
    blackhole: float = 0.0

    def pick(self, rng: random.Random) -> str | None:
        roll = rng.random()
        for fault in FAULTS:
            p = getattr(self, fault)
            if roll < p:
                return fault
            roll -= p
        return None


@dataclass
class FaultProxy:
    upstream: str  # e.g. http://127.0.0.1:18080
    host: str = "127.0.0.1"
    port: int = 0
    seed: int = 1
    rules: list[Rule] = field(default_factory=list)
    injected: Counter = field(default_factory=Counter)
    forwarded: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()
        self._session = requests.Session()
        self._release = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                proxy._handle(self)

            do_POST = do_PUT = do_DELETE = do_GET

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="faultproxy")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    def set_rules(self, *rules: Rule) -> None:
        with self._lock:
            self.rules = list(rules)
        if not any(r.blackhole for r in rules):
            self._release.set()
            self._release = threading.Event()

    def _decide(self, method: str, path: str) -> tuple[int, str | None]:
        with self._lock:
            for rule in self.rules:
                if method in rule.methods and re.search(rule.path, path):
                    fault = rule.pick(self._rng)
                    if fault:
                        self.injected[fault] += 1
                    return rule.latency_ms, fault
        return 0, None

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        latency_ms, fault = self._decide(h.command, h.path)
        if latency_ms:
            time.sleep(latency_ms / 1000)
        if fault == "blackhole":
            self._release.wait(600)
            _reset(h)
            return
        if fault == "reset_before":
            _reset(h)
            return
        if fault == "error5xx":
            _answer(h, 503, b'{"message":"injected by faultproxy"}', "application/json")
            return
        headers = {k: v for k, v in h.headers.items() if k.lower() not in ("host", "content-length", "connection")}
        try:
            resp = self._session.request(h.command, self.upstream + h.path, data=body, headers=headers, timeout=60)
        except requests.RequestException:
            _answer(h, 502, b'{"message":"upstream unreachable"}', "application/json")
            return
        with self._lock:
            self.forwarded += 1
        if fault == "reset_after":
            _reset(h)
            return
        content = resp.content
        if fault == "truncate" and len(content) > 1:
            h.send_response(resp.status_code)
            h.send_header("Content-Type", resp.headers.get("Content-Type", "application/octet-stream"))
            h.send_header("Content-Length", str(len(content)))
            h.end_headers()
            h.wfile.write(content[: len(content) // 2])
            h.wfile.flush()
            _reset(h)
            return
        _answer(h, resp.status_code, content, resp.headers.get("Content-Type", "application/octet-stream"))


def _answer(h: BaseHTTPRequestHandler, status: int, body: bytes, ctype: str) -> None:
    h.send_response(status)
    h.send_header("Content-Type", ctype)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)


def _reset(h: BaseHTTPRequestHandler) -> None:
    """Close with SO_LINGER 0: the peer sees ECONNRESET, not a clean end of stream."""
    h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    h.close_connection = True
    h.connection.close()
