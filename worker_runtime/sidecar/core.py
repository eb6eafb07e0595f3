"""What the sidecar does with each request, and with the tasks the pod holds (no HTTP server here).

`Sidecar.handle` takes a request as the worker sent it and returns the reply to give back. Polls get the
task type's domain and a count cut to the pod's free slots; updates settle the ledger; everything else
goes to the server untouched. `tick` (once a second) hands back the tasks of a dead worker and extends
the lease of long ones; `drain` waits until the pod holds nothing.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter

from worker_runtime.backoff import Backoff
from worker_runtime.client import ConductorClient, Response, encode_json
from worker_runtime.delivery import UpdateRetries, give_back
from worker_runtime.errors import ConductorError
from worker_runtime.metrics import WorkerMetrics
from worker_runtime.sidecar import routes
from worker_runtime.sidecar.http1 import Upstream
from worker_runtime.sidecar.ledger import Held, Ledger
from worker_runtime.sidecar.processes import ProcessWatch

log = logging.getLogger(__name__)

# Headers that belong to one connection (RFC 9110 7.6.1), and those the sidecar sets itself.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
NOT_FORWARDED = HOP_BY_HOP | {"host", "content-length", "accept-encoding"}
INLINE_ATTEMPTS = 3  # tries of a result update before the sidecar keeps it and answers the worker
LEASE_SHARE = 0.5  # extend a task's lease once it is held for this share of its response timeout
PROBE_IDLE_SECONDS = 10.0
API_PREFIX = "/api"  # the worker is given http://127.0.0.1:<port>/api; the server's own base path may differ


@dataclass(frozen=True)
class TaskSettings:
    """What the ConductorWorker says about one task type."""

    name: str
    domain: str | None = None
    concurrency: int | None = None

    @classmethod
    def parse_list(cls, items: Any) -> dict[str, TaskSettings]:
        """spec.tasks[] as JSON: [{name, domain?, concurrency?}]; anything else is a ValueError."""
        if not isinstance(items, list):
            raise ValueError("tasks must be a JSON list of {name, domain, concurrency}")
        out: dict[str, TaskSettings] = {}
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
                raise ValueError(f"a task needs a name: {item!r}")
            concurrency = item.get("concurrency")
            if concurrency is not None and (not isinstance(concurrency, int) or concurrency < 1):
                raise ValueError(f"task {item['name']}: concurrency must be a positive integer")
            out[item["name"]] = cls(item["name"], item.get("domain") or None, concurrency)
        return out


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


def _forwarded(headers: Mapping[str, str] | list[tuple[str, str]]) -> dict[str, str]:
    items = headers.items() if isinstance(headers, Mapping) else headers
    return {k: v for k, v in items if k.lower() not in NOT_FORWARDED}


def _reply(resp: Response) -> Reply:
    headers = [(k, v) for k, v in resp.headers.items() if k.lower() not in HOP_BY_HOP | {"content-length"}]
    return Reply(resp.status_code, headers, resp.content)


def _json_body(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


JSON_HEADERS = [("Content-Type", "application/json")]


class Sidecar:
    def __init__(
        self,
        client: ConductorClient,
        tasks: Mapping[str, TaskSettings],
        worker_id: str,
        metrics: WorkerMetrics | None = None,
        processes: ProcessWatch | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        upstream: Upstream | None = None,
    ) -> None:
        """`upstream`: the fast keep-alive path for forwarded requests (None: all through `client`)."""
        self.client = client
        self.upstream = upstream
        self.tasks = dict(tasks)
        self.worker_id = worker_id
        self.metrics = metrics or WorkerMetrics()
        self.processes = processes or ProcessWatch()
        self.clock = clock
        self.sleep = sleep
        self.ledger = Ledger({t.name: t.concurrency for t in self.tasks.values() if t.concurrency}, clock)
        self.update_backoff = Backoff(base=0.5, cap=4.0)  # a template: each update's retries copy it
        self.draining = threading.Event()
        self.unparsed = Counter(
            "sidecar_unparsed_updates",
            "Task updates whose body was no TaskResult (forwarded untouched)",
            registry=self.metrics.registry,
        )
        self._outbox: list[tuple[str, bytes, dict[str, str], Held | None]] = []
        self._outbox_lock = threading.Lock()
        self._last_ok = clock()
        self._last_error: str | None = None
        for task in self.tasks.values():
            series = self.metrics.for_task(task.name)
            series.capacity.set(task.concurrency or 0)
            series.set_busy(0)
            series.active_workers.set(0)

    # -- requests ---------------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes) -> Reply:
        """A request from the worker: `path` as sent (e.g. /api/tasks/poll/x), `query` without '?'. Paths
        outside /api go to the server's origin as they are."""
        under_api = path == API_PREFIX or path.startswith(API_PREFIX + "/")
        rest = path[len(API_PREFIX) :] if under_api else path
        route = routes.classify(method, rest) if under_api else routes.Route(routes.OTHER)
        if route.kind in (routes.POLL, routes.BATCH_POLL):
            return self._poll(route, rest, query, headers)
        if route.kind in (routes.UPDATE, routes.UPDATE_V2, routes.UPDATE_BY_REF):
            return self._update(route, method, rest, query, headers, body)
        target = rest + (f"?{query}" if query else "")
        return self._forward(method, target, body, headers, origin=not under_api)

    def _forward(
        self, method: str, target: str, body: bytes, headers: Mapping[str, str], origin: bool = False
    ) -> Reply:
        try:
            resp = self._send(method, target, body or None, _forwarded(headers), origin=origin)
        except ConductorError as exc:
            self._failed(str(exc))
            return Reply(502, JSON_HEADERS, encode_json({"message": "the sidecar cannot reach the Conductor server"}))
        self._answered(resp)
        return _reply(resp)

    def _send(
        self,
        method: str,
        target: str,
        body: bytes | None,
        headers: Mapping[str, str],
        timeout: float | None = None,
        *,
        origin: bool = False,
    ) -> Response:
        """One request to the server with the pod's token (ConductorClient.exchange), through the keep-alive
        upstream where there is one; a network failure is a ConductorError."""
        transport = None if self.upstream is None or origin else self.upstream.exchange
        label = target.split("?", 1)[0]
        return self.client.exchange(
            method, target, body, dict(headers), timeout, label=label, origin=origin, transport=transport
        )

    def _answered(self, resp: Response) -> None:
        if resp.status_code >= 500:
            self._failed(f"HTTP {resp.status_code}")
        else:
            self._last_ok, self._last_error = self.clock(), None

    def _failed(self, reason: str) -> None:
        self._last_error = reason

    # -- polls ------------------------------------------------------------------------------------

    def _poll(self, route: routes.Route, rest: str, query: str, headers: Mapping[str, str]) -> Reply:
        batch = route.kind == routes.BATCH_POLL
        params = routes.PollQuery.parse(query)
        wanted = params.count(batch)
        series = self.metrics.for_task(route.task_type)
        settings = self.tasks.get(route.task_type)
        granted = self.ledger.reserve(route.task_type, wanted, params.wait_ms(batch) / 1000, stop=self.draining.is_set)
        if granted == 0:  # no free slot (or draining): an empty reply after the server's own wait
            series.poll_total.inc()
            series.poll_empty.inc()
            return Reply(200, JSON_HEADERS, b"[]") if batch else Reply(204)
        taken: list[Held] = []
        try:
            new_query = params.rewritten(query, settings.domain if settings else None, granted if batch else None)
            target = rest + (f"?{new_query}" if new_query else "")
            started = time.perf_counter()
            series.poll_total.inc()
            series.poll.inc()
            try:
                resp = self._send("GET", target, None, _forwarded(headers), timeout=params.wait_ms(batch) / 1000 + 30)
            except ConductorError as exc:
                self._failed(str(exc))
                series.poll_error(type(exc).__name__).inc()
                return Reply(
                    502, JSON_HEADERS, encode_json({"message": "the sidecar cannot reach the Conductor server"})
                )
            series.poll_time("SUCCESS" if resp.ok else "FAILURE").observe(time.perf_counter() - started)
            self._answered(resp)
            found = _json_body(resp.content) if resp.ok else None
            raw_tasks = found if isinstance(found, list) else [found] if isinstance(found, dict) else []
            owners = self.processes.alive() if raw_tasks else frozenset()
            taken = self.ledger.settle(route.task_type, granted, raw_tasks, owners)
            granted = 0
        finally:
            if granted:
                self.ledger.settle(route.task_type, granted, [], frozenset())
        if taken:
            series.polled.inc(len(taken))
            series.execution_started.inc(len(taken))
        else:
            series.poll_empty.inc()
        self._show_busy(route.task_type)
        return _reply(resp)

    def _show_busy(self, task_type: str) -> None:
        busy = self.ledger.busy().get(task_type, 0)
        series = self.metrics.for_task(task_type)
        series.set_busy(busy)
        series.active_workers.set(busy)

    # -- updates ----------------------------------------------------------------------------------

    def _update(
        self, route: routes.Route, method: str, rest: str, query: str, headers: Mapping[str, str], body: bytes
    ) -> Reply:
        target = rest + (f"?{query}" if query else "")
        result = _json_body(body) if route.kind != routes.UPDATE_BY_REF else None
        if route.kind == routes.UPDATE_BY_REF:
            held, status, extend = (
                self.ledger.find(workflow_id=route.workflow_id, ref_name=route.ref_name),
                route.status,
                False,
            )
        elif isinstance(result, dict):
            held = self.ledger.find(str(result.get("taskId") or "")) if result.get("taskId") else None
            status, extend = str(result.get("status") or "").upper(), bool(result.get("extendLease"))
        else:  # not a TaskResult: forwarded untouched, counted
            self.unparsed.inc()
            return self._forward(method, target, body, headers)
        forwarded = _forwarded(headers)
        drained_v2 = route.kind == routes.UPDATE_V2 and self.draining.is_set()
        if drained_v2:  # a draining pod takes no next task: report with POST /tasks, answer "none" (204)
            target = "/tasks" + (f"?{query}" if query else "")
        if held is not None:
            self.ledger.reporting(held, +1)
        started = time.perf_counter()
        try:
            resp, kept = self._deliver(method, target, body, forwarded, held, keep=status in routes.TERMINAL)
        finally:
            if held is not None:
                self.ledger.reporting(held, -1)
        if held is not None:
            self.metrics.for_task(held.task_type).update_time("SUCCESS" if resp.ok else "FAILURE").observe(
                time.perf_counter() - started
            )
        if kept:  # the outbox settles it once the server has it
            return _reply(resp)
        if resp.ok and held is not None:
            if extend:
                self.ledger.leased(held.task_id)
            else:  # a final status, or IN_PROGRESS (the server requeues it): the pod no longer holds it
                self._settled(held, status)
        elif held is not None and status in routes.TERMINAL and resp.status_code in (400, 404, 409):
            # The server refused the result for good: keeping the slot would block the pod for ever.
            self.metrics.for_task(held.task_type).update_error(f"HTTP{resp.status_code}").inc()
            self._settled(held, status)
        if resp.ok and drained_v2:
            return Reply(204)
        if resp.ok and route.kind == routes.UPDATE_V2:
            return self._handed_over(resp)
        return _reply(resp)

    def _settled(self, held: Held, status: str) -> None:
        if self.ledger.release(held.task_id) is None:
            return
        series = self.metrics.for_task(held.task_type)
        series.execute(status or "UNKNOWN").inc()
        series.execute_time(status or "UNKNOWN").observe(self.clock() - held.since)
        self._show_busy(held.task_type)

    def _handed_over(self, resp: Response) -> Reply:
        """update-v2's reply may be the next task for this worker: the pod holds it now (a draining pod
        gives it straight back and tells the worker there is none)."""
        task = _json_body(resp.content)
        if not isinstance(task, dict) or not task.get("taskId"):
            return _reply(resp)
        if self.draining.is_set():
            self._give_back(task, "the pod is draining")
            return Reply(204)
        held = self.ledger.hold(task, self.processes.alive())
        if held is not None:
            series = self.metrics.for_task(held.task_type)
            series.handed.inc()
            series.execution_started.inc()
            self._show_busy(held.task_type)
        return _reply(resp)

    def _deliver(
        self, method: str, target: str, body: bytes, headers: dict[str, str], held: Held | None, keep: bool
    ) -> tuple[Response, bool]:
        """Send an update; a 5xx or a network failure is tried again, and a final result that still fails is
        kept and retried in the background (the worker is told it was taken: it is never dropped)."""
        retries: UpdateRetries | None = None  # made on the first failure only: the hot path stays lean
        while True:
            last: Response | None = None
            try:
                resp = self._send(method, target, body or None, headers)
            except ConductorError as exc:
                error = exc
                self._failed(str(exc))
            else:
                self._answered(resp)
                if resp.status_code < 500:
                    return resp, False
                last, error = resp, ConductorError(f"HTTP {resp.status_code}", resp.status_code)
            retries = retries or UpdateRetries(self.update_backoff, attempts=INLINE_ATTEMPTS, clock=self.clock)
            delay = retries.next_delay(error)
            if delay is None:
                break
            self.sleep(delay)
        failure = str(error)
        if not keep:
            if last is not None:  # the server's own 5xx reply, as it was
                return last, False
            message = {"message": f"the Conductor server did not take the update: {failure}"}
            return Response(502, encode_json(message), {"Content-Type": "application/json"}), False
        log.warning("update to %s failed (%s); the sidecar keeps the result and retries it", target, failure)
        if held is not None:
            self.ledger.reporting(held, +1)  # until the outbox delivers it: not handed back, still busy
        with self._outbox_lock:
            self._outbox.append((target, body, headers, held))
        return Response(200, b"", {"Content-Type": "text/plain"}), True

    def flush_outbox(self) -> int:
        """Retry kept results once each; returns how many are still kept."""
        with self._outbox_lock:
            pending, self._outbox = self._outbox, []
        still = []
        for target, body, headers, held in pending:
            try:
                resp = self._send("POST", target, body, headers)
                delivered = resp.status_code < 500
            except ConductorError:
                delivered = False
            if not delivered:
                still.append((target, body, headers, held))
                continue
            if held is not None:
                self.ledger.reporting(held, -1)
                result = _json_body(body)
                self._settled(held, str(result.get("status") if isinstance(result, dict) else "").upper())
        with self._outbox_lock:
            self._outbox[:0] = still
            return len(self._outbox)

    # -- the pod ----------------------------------------------------------------------------------

    def _give_back(self, task: Mapping[str, Any], why: str) -> bool:
        return give_back(self.client, task, self.worker_id, why, attempts=3, sleep=self.sleep)

    def _hand_back(self, held: Held, why: str) -> None:
        task = {"taskId": held.task_id, "workflowInstanceId": held.workflow_id}
        self._give_back(task, why)
        series = self.metrics.for_task(held.task_type)
        series.released.inc()
        self._show_busy(held.task_type)

    def recover(self) -> int:
        """Hand back the tasks of worker processes that are gone; returns how many."""
        lost = self.ledger.orphaned(self.processes.alive())
        for held in lost:
            self._hand_back(held, "its worker process exited")
        return len(lost)

    def extend_leases(self) -> int:
        """Tell the server that long tasks are still worked on (extendLease refreshes only the task's
        update time: it is not requeued), so a slow worker is not timed out while it is alive."""
        count = 0
        for held in self.ledger.due_for_lease(LEASE_SHARE):
            body = {
                "taskId": held.task_id,
                "workflowInstanceId": held.workflow_id,
                "workerId": self.worker_id,
                "status": "IN_PROGRESS",
                "extendLease": True,
            }
            try:
                resp = self._send("POST", "/tasks", encode_json(body), {"Content-Type": "application/json"})
            except ConductorError as exc:
                log.warning("could not extend the lease of task %s: %s", held.task_id, exc)
                continue
            if resp.ok:
                self.ledger.leased(held.task_id)
                count += 1
        return count

    def probe(self) -> None:
        """An idle sidecar checks now and then that the server answers (its /readyz says so)."""
        if self.clock() - self._last_ok < PROBE_IDLE_SECONDS and self._last_error is None:
            return
        name = next(iter(self.tasks), "")
        try:
            resp = self._send("GET", f"/tasks/queue/sizes?taskType={name}", None, {"Accept": "application/json"})
        except ConductorError as exc:
            self._failed(str(exc))
            return
        self._answered(resp)

    def tick(self) -> None:
        self.recover()
        self.flush_outbox()
        self.extend_leases()
        self.probe()

    def drain(self, timeout: float) -> tuple[bool, int]:
        """Stop handing out tasks and wait until the pod holds none; (drained, tasks still held)."""
        if not self.draining.is_set():
            log.info("draining: %d task(s) held", len(self.ledger.held()))
        self.draining.set()
        self.ledger.wake()
        drained = self.ledger.wait_empty(self.clock() + timeout)
        return drained, len(self.ledger.held())

    def release_all(self, why: str) -> int:
        """The sidecar stops (after the worker): whatever is still held goes back to the server now."""
        self.flush_outbox()
        left = [h for h in self.ledger.held() if h.reporting == 0]
        for held in left:
            if self.ledger.release(held.task_id) is not None:
                self._hand_back(held, why)
        return len(left)

    def ready(self) -> tuple[bool, dict]:
        detail: dict[str, Any] = {"held": len(self.ledger.held()), "draining": self.draining.is_set()}
        if self._last_error:
            detail["server"] = self._last_error
        return self._last_error is None and not self.draining.is_set(), detail
