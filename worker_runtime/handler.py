"""The process around the runners: one TaskRunner per task type, the watchdog, health, signals and drain."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from worker_runtime import config as worker_config
from worker_runtime.async_loop import AsyncLoop
from worker_runtime.client import ConductorClient
from worker_runtime.metrics import HealthServer, WorkerMetrics
from worker_runtime.results import MAX_RESULT_BYTES
from worker_runtime.runner import TaskRunner
from worker_runtime.worker import WorkerSpec

log = logging.getLogger(__name__)

WATCHDOG_TICK_SECONDS = 0.5


class TaskHandler:
    """Runs every worker in one process; usable from code (start/stop, context manager) and the CLI."""

    def __init__(
        self,
        workers: Iterable[WorkerSpec] | Mapping[str, WorkerSpec],
        client: ConductorClient | None = None,
        overrides: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        metrics_port: int | None = None,
        metrics_host: str = "0.0.0.0",
        drain_timeout: float = 25.0,
        update_retry_seconds: float = 900.0,
        max_result_bytes: int = MAX_RESULT_BYTES,
        clock: Callable[[], float] = time.monotonic,
        update_v2: bool = True,
    ) -> None:
        specs = list(workers.values()) if isinstance(workers, Mapping) else list(workers)
        if not specs:
            raise ValueError("no workers to run: decorate functions with @worker_task and import their modules")
        names = [s.task_definition_name for s in specs]
        self.settings = [worker_config.resolve(s, env, overrides, names) for s in specs]
        pool = sum(s.thread_count for s in self.settings) + len(specs) + 4
        self.client = client or ConductorClient(pool_size=pool)
        self.metrics = WorkerMetrics()
        self.async_loop = AsyncLoop(clock) if any(s.is_async for s in specs) else None
        self.runners = [
            TaskRunner(
                spec,
                st,
                self.client,
                self.metrics,
                self.async_loop,
                update_retry_seconds,
                max_result_bytes,
                clock,
                update_v2,
            )
            for spec, st in zip(specs, self.settings, strict=True)
        ]
        self.drain_timeout = drain_timeout
        self._stopped = threading.Event()
        self._watchdog = threading.Thread(target=self._watch, name="watchdog", daemon=True)
        self._draining = False
        self.drained: bool | None = None  # after stop(): False if tasks were still running at the deadline
        self.health = (
            HealthServer(self.metrics, self._alive, self._ready, metrics_host, metrics_port)
            if metrics_port is not None
            else None
        )

    def _watch(self) -> None:
        """Fail tasks that overran their timeout, twice a second, until stopped."""
        while not self._stopped.wait(WATCHDOG_TICK_SECONDS):
            if self.async_loop:
                self.async_loop.beat()
            for runner in self.runners:
                try:
                    runner.expire_overdue()
                except Exception:  # keep watching the other runners
                    self.metrics.uncaught.labels(exception="watchdog").inc()
                    log.exception("watchdog failed on %s", runner.name)

    def _alive(self) -> tuple[bool, dict]:
        """Unhealthy when a poll loop died or is stuck, or slots stay stuck in hung functions."""
        problems = {r.name: why for r in self.runners if (why := r.health())}
        if self._watchdog.ident is not None and not self._watchdog.is_alive() and not self._stopped.is_set():
            problems["watchdog"] = "not running"
        if self.async_loop and not self._stopped.is_set() and (why := self.async_loop.problem()):
            problems["async-workers"] = why
        hung = {r.name: r.hung for r in self.runners if r.hung}
        return (not problems, {"stuck": sorted(problems), "problems": problems, "hung": hung})

    def _ready(self) -> tuple[bool, dict]:
        failing = [r.name for r in self.runners if r.server_ok is False]
        waiting = [r.name for r in self.runners if r.server_ok is None and not r.paused]
        ok = not self._draining and not failing and not waiting
        return ok, {"draining": self._draining, "unreachable": failing, "starting": waiting}

    def start(self) -> TaskHandler:
        if self.health:
            self.health.start()
        self.client.observers.append(self.metrics.observe_api_request)  # a shared client: removed at stop
        for runner in self.runners:
            runner.start()
        self._watchdog.start()
        return self

    def stop(self, grace: float | None = None) -> bool:
        """Stop polling at once, let in-flight tasks finish within the grace period; True if all did."""
        grace = self.drain_timeout if grace is None else grace
        self._draining = True
        for runner in self.runners:
            runner.request_stop()
        deadline = time.monotonic() + grace
        drained = all([r.wait_drained(deadline) for r in self.runners])
        if not drained:
            for runner in self.runners:
                left = runner.abort()
                if left:
                    log.error(
                        "drain timeout: %d task(s) of %s reported FAILED for retry: %s",
                        len(left),
                        runner.name,
                        left,
                    )
        if self.async_loop:
            self.async_loop.close()
        if self.metrics.observe_api_request in self.client.observers:
            self.client.observers.remove(self.metrics.observe_api_request)
        if self.health:
            self.health.stop()
        self._stopped.set()
        self.drained = drained
        log.info("stopped (%s)", "drained" if drained else "drain timeout")
        return drained

    def __enter__(self) -> TaskHandler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if not self._stopped.is_set():
            self.stop()

    def run_forever(self) -> int:
        """Run until SIGTERM/SIGINT, then drain; returns the process exit code."""
        signalled = threading.Event()

        def on_signal(signum: int, _frame: Any) -> None:
            log.info("received %s: stopping polls, draining in-flight tasks", signal.Signals(signum).name)
            for runner in self.runners:
                runner.request_stop()  # at once, from the signal handler: no poll after this
            signalled.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        self.start()
        while not signalled.wait(1.0):
            pass
        self.stop()
        return 0
