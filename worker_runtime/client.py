"""Conductor HTTP client: one urllib3 keep-alive pool, timeouts, optional Orkes auth, typed errors.

urllib3 directly rather than requests: requests' session machinery (hooks, cookies, redirect and
proxy resolution, header merging, response wrapping) was most of the worker's CPU per task."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, urlencode, urlsplit
from urllib.request import getproxies, proxy_bypass

import urllib3
from urllib3.exceptions import HTTPError as _Urllib3Error
from urllib3.exceptions import LocationValueError

from worker_runtime import env_names
from worker_runtime.auth import TokenAuth
from worker_runtime.errors import ConductorError

__all__ = ["ConductorClient", "ConductorError", "InvalidJSONError", "Response"]

log = logging.getLogger(__name__)

_JSON = {"Content-Type": "application/json", "Accept": "application/json"}
_ACCEPT = {"Accept": "application/json"}
_NO_RETRIES = urllib3.Retry(0, read=False, redirect=False)


class InvalidJSONError(ValueError):
    """A request body JSON cannot hold (NaN, Infinity, an object): the client's own error."""


class Response:
    """A finished HTTP exchange, read in full (its connection is back in the pool)."""

    __slots__ = ("content", "headers", "status_code")

    def __init__(self, status_code: int, content: bytes, headers: Any = None) -> None:
        self.status_code = status_code
        self.content = content
        self.headers = headers or {}

    @property
    def ok(self) -> bool:
        return self.status_code < 400

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


def proxy_for(url: str) -> str | None:
    """The proxy the environment names for this URL (read once, not per request), or None."""
    parts = urlsplit(url)
    if parts.hostname and proxy_bypass(parts.hostname):
        return None
    return getproxies().get(parts.scheme)


# (method, target, body, headers, read timeout) -> (status, headers, body); raises OSError on the network.
Transport = Callable[[str, str, bytes | None, dict[str, str], float], tuple[int, Any, bytes]]


def encode_json(value: Any) -> bytes:
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":")).encode()
    except (ValueError, TypeError) as exc:
        raise InvalidJSONError(str(exc)) from exc


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
        url = server_url or os.environ.get(env_names.SERVER_URL) or "http://localhost:8080/api"
        self.base_url = url.rstrip("/")
        proxy = proxy_for(self.base_url)
        # One pool for the one server (no per-request pool lookup), or a ProxyManager taking full
        # URLs. block=False: more threads than pool slots open extra connections instead of waiting.
        self.pool: Any
        if proxy:
            self.pool = urllib3.ProxyManager(proxy, maxsize=pool_size, block=False, retries=_NO_RETRIES)
            self._prefix = self.base_url
            parts = urlsplit(self.base_url)
            self._origin = f"{parts.scheme}://{parts.netloc}"
        else:
            self.pool = urllib3.connection_from_url(self.base_url, maxsize=pool_size, block=False, retries=_NO_RETRIES)
            self._prefix = urlsplit(self.base_url).path
            self._origin = ""
        self.timeout = (connect_timeout, read_timeout)
        self._timeouts: dict[float, urllib3.Timeout] = {}
        key_id = key_id if key_id is not None else os.environ.get(env_names.AUTH_KEY)
        key_secret = key_secret if key_secret is not None else os.environ.get(env_names.AUTH_SECRET)
        self.auth = TokenAuth(self.base_url, key_id, key_secret, self._token_request) if key_id and key_secret else None
        # Each is called after every request with (method, uri template, status or "error", seconds).
        self.observers: list[Callable[[str, str, str, float], None]] = []
        self.update_v2 = True  # False once the server showed it has no /tasks/update-v2

    def __repr__(self) -> str:  # never show credentials
        return f"ConductorClient({self.base_url!r}, auth={'on' if self.auth else 'off'})"

    def close(self) -> None:
        if isinstance(self.pool, urllib3.PoolManager):
            self.pool.clear()
        else:
            self.pool.close()

    # -- transport -------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        timeout: float | None = None,
        template: str | None = None,
        params: dict[str, Any] | None = None,
        json: Any = None,
        data: bytes | str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """One API call; `template` (e.g. `/tasks/{taskId}`) labels its timing for the observers."""
        started = time.perf_counter()
        status = "error"
        try:
            if json is not None:
                data, headers = encode_json(json), {**_JSON, **(headers or {})}
            elif isinstance(data, str):
                data = data.encode()
            target = f"{path}?{urlencode(params, doseq=True)}" if params else path
            resp = self._send(method, path, target, data, headers or _ACCEPT, timeout)
            status = str(resp.status_code)
            return resp
        except ConductorError as exc:
            status = str(exc.status) if exc.status else "error"
            raise
        except Exception as exc:  # the client's own failure (e.g. a body JSON cannot hold): not the network
            raise ConductorError(
                f"{method} {path}: {type(exc).__name__}: {exc}", client_error=type(exc).__name__
            ) from exc
        finally:
            for observe in self.observers:
                observe(method, template or path, status, time.perf_counter() - started)

    def _timeout(self, read: float) -> urllib3.Timeout:
        found = self._timeouts.get(read)
        if found is None:
            found = self._timeouts[read] = urllib3.Timeout(connect=self.timeout[0], read=read)
        return found

    def _send(
        self, method: str, path: str, target: str, body: bytes | None, headers: dict[str, str], timeout: float | None
    ) -> Response:
        resp = self.exchange(method, target, body, headers, timeout, label=path)
        if resp.status_code >= 400:
            raise ConductorError(
                f"{method} {path}: HTTP {resp.status_code}: {resp.text[:300]}",
                resp.status_code,
                resp.text,
                summary=f"{method} {path}: HTTP {resp.status_code}",
            )
        return resp

    def exchange(
        self,
        method: str,
        target: str,
        body: bytes | None,
        headers: Mapping[str, str],
        timeout: float | None = None,
        *,
        label: str | None = None,
        origin: bool = False,
        transport: Transport | None = None,
    ) -> Response:
        """One request, its reply whatever the status (the sidecar forwards it as it came). `target` is a
        path with its query, under the API base (or under the server's origin with `origin`). The token is
        added unless the caller sent its own, and renewed once on a 401/403; a network failure raises.
        `transport` sends instead of the urllib3 pool (the sidecar's keep-alive client)."""
        send = transport or (lambda *args: self._pool_send(*args, origin=origin))
        read_timeout = timeout if timeout is not None else self.timeout[1]
        own_token = any(k.lower() == "x-authorization" for k in headers)
        for attempt in (1, 2):
            sent = {**headers, **self.auth.headers()} if self.auth and not own_token else dict(headers)
            try:
                status, reply_headers, content = send(method, target, body, sent, read_timeout)
            except LocationValueError as exc:  # a URL that cannot be sent: the client's own error
                raise ConductorError(f"{method} {label or target}: {exc}", client_error=type(exc).__name__) from exc
            except (_Urllib3Error, OSError) as exc:
                raise ConductorError(f"{method} {label or target}: {type(exc).__name__}: {exc}") from exc
            if status in (401, 403) and self.auth and not own_token and attempt == 1:
                self.auth.invalidate()  # expired or revoked token: get a new one, try once more
                continue
            return Response(status, content, reply_headers)
        raise AssertionError("unreachable")

    def _pool_send(
        self, method: str, target: str, body: bytes | None, headers: dict[str, str], timeout: float, *, origin: bool
    ) -> tuple[int, Any, bytes]:
        url = (self._origin if origin else self._prefix) + target
        raw = self.pool.urlopen(
            method,
            url,
            body=body,
            headers=headers,
            timeout=self._timeout(timeout),
            redirect=False,
            assert_same_host=False,
        )
        return raw.status, raw.headers, raw.data

    def _token_request(self, body: dict[str, Any]) -> Response:
        """POST /token, without auth headers or observers; a network failure is a ConductorError."""
        try:
            raw = self.pool.urlopen(
                "POST",
                f"{self._prefix}/token",
                body=encode_json(body),
                headers=_JSON,
                timeout=self._timeout(10.0),
                redirect=False,
                assert_same_host=False,
            )
        except (_Urllib3Error, OSError) as exc:
            raise ConductorError(f"POST /token: {type(exc).__name__}: {exc}") from exc
        return Response(raw.status, raw.data, raw.headers)

    def _json(self, resp: Response) -> Any:
        if resp.status_code == 204 or not resp.content:
            return None
        try:
            return json.loads(resp.content)
        except ValueError as exc:
            raise ConductorError(
                f"malformed JSON from server: {resp.text[:200]!r}",
                resp.status_code,
                summary=f"malformed JSON from server (HTTP {resp.status_code})",
            ) from exc

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
            f"/tasks/poll/batch/{quote(task_type, safe='')}",
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
            return self.request("POST", "/tasks", data=result, headers=_JSON).text
        return self.request("POST", "/tasks", json=result).text

    def update_task_v2(self, result: dict[str, Any] | bytes) -> dict[str, Any] | None:
        """Report a result with `POST /tasks/update-v2`; returns the next task the server handed to
        this worker (same task type and domain, the result's workerId), or None.

        The server marks a task it returns IN_PROGRESS and takes it off the queue: the caller owns it
        from then on and must run it or release it. A server without update-v2 (404 or 405 that plain
        `POST /tasks` does not repeat) turns `update_v2` off and gets the result through `POST /tasks`."""
        body = result if isinstance(result, bytes) else None
        try:
            resp = self.request("POST", "/tasks/update-v2", data=body, json=None if body else result, headers=_JSON)
        except ConductorError as exc:
            if exc.status not in (404, 405):
                raise
            self.update_task(result)  # raises again if the task itself is unknown: update-v2 exists
            if self.update_v2:
                log.warning(
                    "%s has no /tasks/update-v2 (HTTP %s); reporting with POST /tasks", self.base_url, exc.status
                )
            self.update_v2 = False
            return None
        if resp.status_code == 204 or not resp.content:
            return None
        try:
            task = json.loads(resp.content)
        except ValueError:
            task = None
        if not isinstance(task, dict):  # the result was accepted; a task in a reply we cannot read is lost
            log.error("update-v2 accepted the result but its reply is not a task: %.200r", resp.content)
            return None
        return task

    def release_task(self, task: dict[str, Any], worker_id: str) -> None:
        """Give a task handed to this worker back to the queue at once (IN_PROGRESS, callback 0 s:
        the server requeues it for the next poll) instead of leaving it to its response timeout."""
        result = {
            "taskId": task.get("taskId"),
            "workflowInstanceId": task.get("workflowInstanceId"),
            "workerId": worker_id,
            "status": "IN_PROGRESS",
            "callbackAfterSeconds": 0,
            "logs": [],
            "outputData": {},
        }
        self.request("POST", "/tasks", data=encode_json(result), headers=_JSON)

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

    def running_workflow_ids(self, name: str, version: int | None = None) -> list[str]:
        """Ids of the workflows of `name` still RUNNING (or PAUSED), in one request."""
        params = {"version": version} if version is not None else None
        return (
            self._json(
                self.request("GET", f"/workflow/running/{name}", template="/workflow/running/{name}", params=params)
            )
            or []
        )

    def get_workflow(self, workflow_id: str, include_tasks: bool = True) -> dict[str, Any]:
        params = {"includeTasks": str(include_tasks).lower()}
        return self._json(
            self.request("GET", f"/workflow/{workflow_id}", template="/workflow/{workflowId}", params=params)
        )
