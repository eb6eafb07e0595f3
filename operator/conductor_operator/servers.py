"""One Conductor client per server and credentials, for the operator's readers of Conductor.

Why shared by server: many ConductorWorkers name the same Conductor; one client keeps one connection
pool and one Orkes token for all of them. Credentials are part of the key only as a hash.
"""

from __future__ import annotations

import hashlib
import threading

from worker_runtime.client import ConductorClient

ServerKey = tuple[str, str]  # (API base without a trailing slash, hash of the credentials or "")


class ServerClients:
    """Clients created on first use, each with a lock its callers can hold to share one request."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._lock = threading.Lock()
        self._clients: dict[ServerKey, ConductorClient] = {}
        self._server_locks: dict[ServerKey, threading.Lock] = {}

    def get(self, url: str, key_id: str | None, key_secret: str | None) -> tuple[ServerKey, ConductorClient]:
        ident = hashlib.sha256(f"{key_id}\0{key_secret}".encode()).hexdigest()[:12] if key_id else ""
        key = (url.rstrip("/"), ident)
        with self._lock:
            if key not in self._clients:
                self._clients[key] = ConductorClient(
                    url, key_id or "", key_secret or "", connect_timeout=self.timeout, read_timeout=self.timeout
                )
                self._server_locks[key] = threading.Lock()
            return key, self._clients[key]

    def lock(self, key: ServerKey) -> threading.Lock:
        return self._server_locks[key]

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()
            self._server_locks.clear()
