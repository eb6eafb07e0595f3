"""Conductor HTTP client: pooled session, timeouts, optional Orkes auth, typed errors."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from worker_runtime.auth import TokenAuth

# Failures of the network or the server's connection: trying again can help.
_TRANSPORT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)


class ConductorError(Exception):
    """A request failed. `retryable` says whether trying again can help; `kind` names the failure
    for metrics: `ConnectionError` (network), `HTTP<status>`, `MalformedReply`, or, for an error
    of the client itself (a body it cannot encode, a bad URL), the exception's class name."""

    def __init__(
        self, message: str, status: int | None = None, body: str = "", client_error: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = body
        self.client_error = client_error

    @property
    def retryable(self) -> bool:
        """By status only: Conductor 3.21 answers `retryable: false` on HTTP 500 for any error that is
        not its own TransientException (a Redis outage included), so the body's verdict is not trusted.
        A 5xx, 408, 429, a network failure or a malformed reply is retried; a 4xx refusal or an error
        of the client itself is not."""
        if self.client_error:
            return False
        if self.status is None or self.status < 400:
            return True
        return self.status >= 500 or self.status in (408, 429)

    @property
    def kind(self) -> str:
        if self.client_error:
            return self.client_error
        if self.status is None:
            return "ConnectionError"
        return f"HTTP{self.status}" if self.status >= 400 else "MalformedReply"


class ConductorClient:
    def __init__(
        self,
        server_url: str | None = None,
        key_id: str | None = None,
        key_secret: str | None = None,
        pool_size: int = 32,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
    ) -> None:
        url = server_url or os.environ.get("CONDUCTOR_SERVER_URL") or "http://localhost:8080/api"
        self.base_url = url.rstrip("/")
        self.session = requests.Session()
        # Proxy settings from the environment are read once here, not on every request (with
        # trust_env requests also stats ~/.netrc per call: ~6 % of a worker's CPU in the benchmark).
        self.session.proxies.update(requests.utils.get_environ_proxies(self.base_url))
        self.session.trust_env = False
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.timeout = (connect_timeout, read_timeout)
        key_id = key_id if key_id is not None else os.environ.get("CONDUCTOR_AUTH_KEY")
        key_secret = key_secret if key_secret is not None else os.environ.get("CONDUCTOR_AUTH_SECRET")
        self.auth = TokenAuth(self.base_url, key_id, key_secret, self.session) if key_id and key_secret else None
        # Each is called after every request with (method, uri template, status or "error", seconds).
        self.observers: list[Callable[[str, str, str, float], None]] = []

    def __repr__(self) -> str:  # never show credentials
        return f"ConductorClient({self.base_url!r}, auth={'on' if self.auth else 'off'})"

    def close(self) -> None:
        self.session.close()

    # -- transport -------------------------------------------------------------------------------

    def request(
        self, method: str, path: str, *, timeout: float | None = None, template: str | None = None, **kwargs: Any
    ) -> requests.Response:
        """One API call; `template` (e.g. `/tasks/{taskId}`) labels its timing for the observers."""
        started = time.perf_counter()
        status = "error"
        try:
            resp = self._send(method, path, timeout, kwargs)
            status = str(resp.status_code)
            return resp
        except ConductorError as exc:
            status = str(exc.status) if exc.status else "error"
            raise
        finally:
            for observe in self.observers:
                observe(method, template or path, status, time.perf_counter() - started)

    def _send(self, method: str, path: str, timeout: float | None, kwargs: dict[str, Any]) -> requests.Response:
        url = f"{self.base_url}{path}"
        read_timeout = timeout if timeout is not None else self.timeout[1]
        given_headers = kwargs.pop("headers", None) or {}
        for attempt in (1, 2):
            headers = dict(given_headers)
            try:
                if self.auth:
                    headers.update(self.auth.headers())
                resp = self.session.request(
                    method, url, headers=headers, timeout=(self.timeout[0], read_timeout), **kwargs
                )
            except _TRANSPORT_ERRORS as exc:
                raise ConductorError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
            except requests.HTTPError as exc:  # the auth token request answered an error status
                status = exc.response.status_code if exc.response is not None else None
                raise ConductorError(f"{method} {path}: {exc}", status) from exc
            except Exception as exc:  # the client's own failure (e.g. a body JSON cannot hold): not the network
                raise ConductorError(
                    f"{method} {path}: {type(exc).__name__}: {exc}", client_error=type(exc).__name__
                ) from exc
            if resp.status_code in (401, 403) and self.auth and attempt == 1:
                self.auth.invalidate()  # expired or revoked token: get a new one, try once more
                continue
            if resp.status_code >= 400:
                raise ConductorError(
                    f"{method} {path}: HTTP {resp.status_code}: {resp.text[:300]}",
                    resp.status_code,
                    resp.text,
                )
            return resp
        raise AssertionError("unreachable")

    def _json(self, resp: requests.Response) -> Any:
        if resp.status_code == 204 or not resp.content:
            return None
        try:
            return resp.json()
        except ValueError as exc:
            raise ConductorError(f"malformed JSON from server: {resp.text[:200]!r}", resp.status_code) from exc

    # -- tasks -----------------------------------------------------------------------------------

    def poll_batch(
        self, task_type: str, worker_id: str, count: int, timeout_ms: int, domain: str | None = None
    ) -> list[dict[str, Any]]:
        """Long-poll up to `count` tasks; the server waits at most timeout_ms for them."""
        params: dict[str, Any] = {"workerid": worker_id, "count": count, "timeout": timeout_ms}
        if domain:
            params["domain"] = domain
        resp = self.request(
            "GET",
            f"/tasks/poll/batch/{task_type}",
            template="/tasks/poll/batch/{taskType}",
            params=params,
            timeout=timeout_ms / 1000 + self.timeout[1],
        )
        tasks = self._json(resp) or []
        if not isinstance(tasks, list):
            raise ConductorError(f"poll returned {type(tasks).__name__}, expected a list", resp.status_code)
        return tasks

    def update_task(self, result: dict[str, Any] | bytes) -> str:
        """Report a result: a dict, or a body already encoded as JSON (the runner encodes once)."""
        if isinstance(result, bytes):
            return self.request("POST", "/tasks", data=result, headers={"Content-Type": "application/json"}).text
        return self.request("POST", "/tasks", json=result).text

    def get_task(self, task_id: str) -> dict[str, Any]:
        return self._json(self.request("GET", f"/tasks/{task_id}", template="/tasks/{taskId}"))

    def update_task_by_ref_name(
        self,
        workflow_id: str,
        ref_name: str,
        status: str,
        output: dict[str, Any],
        worker_id: str | None = None,
    ) -> str:
        params = {"workerid": worker_id} if worker_id else None
        path = f"/tasks/{workflow_id}/{ref_name}/{status}"
        template = "/tasks/{workflowId}/{taskRefName}/{status}"
        return self.request("POST", path, template=template, params=params, json=output).text

    def add_task_log(self, task_id: str, message: str) -> None:
        self.request(
            "POST",
            f"/tasks/{task_id}/log",
            template="/tasks/{taskId}/log",
            data=message,
            headers={"Content-Type": "application/json"},
        )

    def queue_sizes(self) -> dict[str, int]:
        """Every queue's size in one request ({"domain:taskType" or "taskType": size})."""
        return self._json(self.request("GET", "/tasks/queue/all")) or {}

    def queue_size(self, task_type: str, domain: str | None = None) -> int:
        params = {"taskType": task_type, **({"domain": domain} if domain else {})}
        return int(self._json(self.request("GET", "/tasks/queue/size", params=params)) or 0)

    # -- metadata and workflows (tests, demos, benchmarks) --------------------------------------

    def register_task_defs(self, defs: list[dict[str, Any]]) -> None:
        self.request("POST", "/metadata/taskdefs", json=defs)

    def register_workflow(self, definition: dict[str, Any]) -> None:
        self.request("PUT", "/metadata/workflow", json=[definition])

    def start_workflow(
        self,
        name: str,
        inputs: dict[str, Any],
        version: int | None = None,
        task_to_domain: dict[str, str] | None = None,
    ) -> str:
        body: dict[str, Any] = {"name": name, "input": inputs}
        if version is not None:
            body["version"] = version
        if task_to_domain:
            body["taskToDomain"] = task_to_domain
        return self.request("POST", "/workflow", json=body).text

    def get_workflow(self, workflow_id: str, include_tasks: bool = True) -> dict[str, Any]:
        params = {"includeTasks": str(include_tasks).lower()}
        return self._json(
            self.request("GET", f"/workflow/{workflow_id}", template="/workflow/{workflowId}", params=params)
        )
