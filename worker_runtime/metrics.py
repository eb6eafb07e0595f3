"""Prometheus metrics (Conductor SDK names) and the /metrics, /healthz, /readyz HTTP endpoint."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily

log = logging.getLogger(__name__)

# The *_created series double the scrape size and the autoscaler has no use for them.
disable_created_metrics()

_TIME_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
_SIZE_BUCKETS = (64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304)


class BusyTime:
    """Slot-seconds spent busy: the integral of the busy-slot count over time.

    Why: a gauge read every few seconds is a point sample, and with Poisson arrivals it swings by a slot
    or two between reads; the autoscaler then proposes a pod too many that the scale-down window holds.
    The difference of this counter between two scrapes, over the time between them, is the mean number
    of busy slots in that interval (Little's law), whatever happened between the reads."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._busy = 0.0
        self._total = 0.0
        self._since = clock()

    def set(self, busy: float) -> None:
        self._move(lambda _: busy)

    def add(self, delta: float) -> None:
        self._move(lambda busy: busy + delta)

    def _move(self, to: Callable[[float], float]) -> None:
        """Account the time at the old count, then change it (never below zero), under one lock."""
        with self._lock:
            now = self.clock()
            self._total += self._busy * (now - self._since)
            self._busy, self._since = max(0.0, to(self._busy)), now

    def seconds(self) -> float:
        with self._lock:
            return self._total + self._busy * (self.clock() - self._since)


class _BusyTimeCollector:
    """Exposes each task type's BusyTime as `worker_busy_slot_seconds_total` (read at scrape time)."""

    def __init__(self, per_task: Mapping[str, BusyTime]) -> None:
        self.per_task = per_task

    def collect(self) -> Any:
        family = CounterMetricFamily(
            "worker_busy_slot_seconds",
            "Slot-seconds spent busy (executing or reporting a task); its rate is the mean busy slots",
            labels=["taskType"],
        )
        for task_type, busy in list(self.per_task.items()):
            family.add_metric([task_type], busy.seconds())
        yield family


def _bound(cache: dict[Any, Any], key: Any, metric: Any, values: tuple[str, ...]) -> Any:
    """`metric.labels(*values)` (in the metric's label order), kept in `cache` under `key` (a race only calls
    labels() twice: same child)."""
    child = cache.get(key)
    if child is None:
        child = cache[key] = metric.labels(*values)
    return child


class WorkerMetrics:
    """One registry per runtime, so several runtimes in one process (tests) do not collide.

    Two name sets share it: the seed's (`task_poll_counter_total`, `worker_busy_slots`, ... which the
    operator's scraper reads) and the set the Conductor SDKs converge on (`task_poll_total`,
    `task_execution_started_total`, `task_update_time_seconds`, `active_workers`,
    `http_api_client_request_seconds`, ...), with the SDKs' labels (`status` is SUCCESS or FAILURE
    on the time histograms), so dashboards built for either work unchanged.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        t = ["taskType"]
        ts = [*t, "status"]
        # -- the seed's names ------------------------------------------------------------------------
        self.poll = Counter("task_poll_counter", "Polls sent to the server", t, registry=r)
        self.poll_empty = Counter("task_poll_empty", "Polls that returned no task", t, registry=r)
        self.polled = Counter("task_polled", "Tasks received from polls", t, registry=r)
        self.execute = Counter("task_execute_counter", "Tasks executed, by result status", ts, registry=r)
        self.result_dropped = Counter(
            "task_result_dropped",
            "Results given up on after the retry deadline (logged in full)",
            t,
            registry=r,
        )
        self.handed = Counter("task_handed_over", "Tasks the server handed over with an update-v2 reply", t, registry=r)
        self.released = Counter(
            "task_released",
            "Tasks handed over by update-v2 that could not start at once and were given back to the queue",
            t,
            registry=r,
        )
        self.busy_slots = Gauge("worker_busy_slots", "Slots executing or reporting a task now", t, registry=r)
        self.capacity = Gauge("worker_slot_capacity", "Concurrency slots configured", t, registry=r)
        self.paused = Gauge("task_paused", "1 when polling for the task type is paused", t, registry=r)
        # -- names shared by the seed and the SDKs ---------------------------------------------------
        self.poll_error = Counter("task_poll_error", "Polls that failed", [*t, "exception"], registry=r)
        self.execute_error = Counter("task_execute_error", "Task executions that raised", [*t, "exception"], registry=r)
        self.update_error = Counter(
            "task_update_error", "Result updates that failed (each attempt)", [*t, "exception"], registry=r
        )
        self.poll_time = Histogram(
            "task_poll_time_seconds", "Latency of task poll requests", ts, buckets=_TIME_BUCKETS, registry=r
        )
        self.execute_time = Histogram(
            "task_execute_time_seconds", "Duration of worker task execution", ts, buckets=_TIME_BUCKETS, registry=r
        )
        self.result_size = Histogram(
            "task_result_size_bytes", "Serialized size of the task result", t, buckets=_SIZE_BUCKETS, registry=r
        )
        # -- the SDKs' names -------------------------------------------------------------------------
        self.poll_total = Counter("task_poll", "Incremented each time polling is done", t, registry=r)
        self.execution_started = Counter(
            "task_execution_started", "Polled tasks dispatched to the worker function", t, registry=r
        )
        self.update_time = Histogram(
            "task_update_time_seconds", "Latency of task result updates", ts, buckets=_TIME_BUCKETS, registry=r
        )
        self.active_workers = Gauge("active_workers", "Worker functions executing a task now", t, registry=r)
        self.uncaught = Counter(
            "thread_uncaught_exceptions",
            "Exceptions that escaped a worker function or a poll loop's own handling",
            ["exception"],
            registry=r,
        )
        self.api_request_time = Histogram(
            "http_api_client_request_seconds",
            "Latency of HTTP API client requests",
            ["method", "uri", "status"],
            buckets=_TIME_BUCKETS,
            registry=r,
        )
        # -- timeouts ----------------------------------------------------------------------------------
        self.execution_timeout = Counter(
            "task_execution_timeout",
            "Tasks reported FAILED because they ran past responseTimeoutSeconds or execution_timeout",
            t,
            registry=r,
        )
        self.hung = Gauge(
            "worker_hung_tasks",
            "Sync worker functions still running after their task was failed for timeout",
            t,
            registry=r,
        )

        self._api_children: dict[tuple[str, str, str], Any] = {}
        self._per_task: dict[str, TaskTypeMetrics] = {}
        self.busy_time: dict[str, BusyTime] = {}
        r.register(_BusyTimeCollector(self.busy_time))

    def observe_api_request(self, method: str, uri: str, status: str, seconds: float) -> None:
        key = (method, uri, status)  # the histogram's label order
        _bound(self._api_children, key, self.api_request_time, key).observe(seconds)

    def for_task(self, task_type: str) -> TaskTypeMetrics:
        """One task type's bound series, made once (binding is a lock and a key per series)."""
        found = self._per_task.get(task_type)
        if found is None:
            found = self._per_task.setdefault(task_type, TaskTypeMetrics(self, task_type))
        return found


class TaskTypeMetrics:
    """One task type's series, bound once. prometheus_client's `labels()` takes a lock and builds a key
    on each call; unbound, the path of one task would make about ten such calls."""

    def __init__(self, metrics: WorkerMetrics, task_type: str) -> None:
        self.task_type = task_type
        one = {"taskType": task_type}
        self.poll = metrics.poll.labels(**one)
        self.poll_total = metrics.poll_total.labels(**one)
        self.poll_empty = metrics.poll_empty.labels(**one)
        self.polled = metrics.polled.labels(**one)
        self.handed = metrics.handed.labels(**one)
        self.released = metrics.released.labels(**one)
        self.result_dropped = metrics.result_dropped.labels(**one)
        self.busy_slots = metrics.busy_slots.labels(**one)
        self.capacity = metrics.capacity.labels(**one)
        self.paused = metrics.paused.labels(**one)
        self.active_workers = metrics.active_workers.labels(**one)
        self.hung = metrics.hung.labels(**one)
        self.execution_started = metrics.execution_started.labels(**one)
        self.execution_timeout = metrics.execution_timeout.labels(**one)
        self.result_size = metrics.result_size.labels(**one)
        self.busy_time = metrics.busy_time.setdefault(task_type, BusyTime())
        self._metrics = metrics
        self._children: dict[tuple[Any, str], Any] = {}

    def set_busy(self, busy: int) -> None:
        """The busy-slot gauge and the slot-seconds counter together (they must never disagree)."""
        self.busy_slots.set(busy)
        self.busy_time.set(busy)

    def add_busy(self, delta: int) -> None:
        self.busy_slots.inc(delta)
        self.busy_time.add(delta)

    def _child(self, metric: Any, value: str) -> Any:
        """The child for `value` of the metric's one label after taskType (status or exception)."""
        return _bound(self._children, (metric, value), metric, (self.task_type, value))

    def poll_time(self, status: str) -> Any:
        return self._child(self._metrics.poll_time, status)

    def execute_time(self, status: str) -> Any:
        return self._child(self._metrics.execute_time, status)

    def update_time(self, status: str) -> Any:
        return self._child(self._metrics.update_time, status)

    def execute(self, status: str) -> Any:
        return self._child(self._metrics.execute, status)

    def poll_error(self, exception: str) -> Any:
        return self._child(self._metrics.poll_error, exception)

    def execute_error(self, exception: str) -> Any:
        return self._child(self._metrics.execute_error, exception)

    def update_error(self, exception: str) -> Any:
        return self._child(self._metrics.update_error, exception)


class HealthServer:
    """Serves metrics and probes; `alive` and `ready` are callables returning (ok, detail)."""

    def __init__(
        self,
        metrics: WorkerMetrics,
        alive: Callable[[], tuple[bool, dict]],
        ready: Callable[[], tuple[bool, dict]],
        host: str = "0.0.0.0",
        port: int = 8000,
        routes: Mapping[str, Callable[[str], tuple[int, dict]]] | None = None,
    ) -> None:
        """`routes`: more GET paths, each called with the client's address (the sidecar's /drain)."""
        registry = metrics.registry
        extra = dict(routes or {})

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
                elif path in ("/healthz", "/livez"):
                    self._probe(alive)
                elif path == "/readyz":
                    self._probe(ready)
                elif path in extra:
                    code, detail = extra[path](self.client_address[0])
                    self._send(code, json.dumps(detail).encode(), "application/json")
                else:
                    self._send(404, b"not found\n", "text/plain")

            def _probe(self, check: Callable[[], tuple[bool, dict]]) -> None:
                ok, detail = check()
                body = json.dumps({"ok": ok, **detail}).encode()
                self._send(200 if ok else 503, body, "application/json")

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # probes are too chatty to log
                return

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="metrics-http", daemon=True)

    def start(self) -> None:
        self._thread.start()
        log.info("metrics and health endpoint on port %d", self.port)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
