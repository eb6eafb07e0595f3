"""One task type's poll loop: asks the server for at most the free slots and passes on what comes.

Two modes, because the server's batch poll waits until it has `count` tasks or the timeout: idle, ask for
one task with the long-poll timeout (answered as soon as one arrives, one request per timeout while
nothing comes); busy, ask for every free slot with a short wait (what is queued comes at once). A quick
empty answer (no server-side wait) backs off; a failed poll backs off more. The slots, and what a task
does once polled, belong to the runner (runner.py): this module only asks.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from worker_runtime.backoff import Backoff
from worker_runtime.client import ConductorClient, ConductorError
from worker_runtime.config import WorkerSettings
from worker_runtime.metrics import TaskTypeMetrics, WorkerMetrics

log = logging.getLogger(__name__)

BUSY_POLL_TIMEOUT_MS = 20  # while tasks flow: take what is queued, do not wait for a full batch
SLOT_WAIT_SECONDS = 1.0  # the loop beats at least this often while every slot is taken


class Poller:
    """The thread that polls. `free_slots(timeout)` waits up to `timeout` for a free slot and returns how
    many tasks to ask for (0: none yet); `accept(raw)` takes each polled task; `reached(ok)` hears whether
    the server answered; `paused()` stops asking while true. `heartbeat` and `error` tell /healthz
    whether the loop is alive."""

    def __init__(
        self,
        client: ConductorClient,
        settings: WorkerSettings,
        series: TaskTypeMetrics,
        metrics: WorkerMetrics,
        free_slots: Callable[[float], int],
        accept: Callable[[Any], None],
        reached: Callable[[bool], None],
        paused: Callable[[], bool],
        stopping: threading.Event,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.settings = settings
        self.series = series
        self.metrics = metrics
        self.free_slots = free_slots
        self.accept = accept
        self.reached = reached
        self.paused = paused
        self.stopping = stopping
        self.clock = clock
        self.name = settings.task_name
        self.heartbeat = clock()
        self.error: str | None = None  # why the loop died
        self.thread = threading.Thread(target=self._run, name=f"poll-{self.name}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        try:
            self._poll_until_stopped()
        except BaseException as exc:  # the loop is gone: /healthz reports it so the pod restarts
            self.error = f"{type(exc).__name__}: {exc}"
            self.metrics.uncaught.labels(exception=type(exc).__name__).inc()
            log.critical("poll loop of %s died", self.name, exc_info=True)

    def _poll_until_stopped(self) -> None:
        s = self.settings
        interval = s.poll_interval_ms / 1000
        busy_timeout_ms = min(s.poll_timeout_ms, BUSY_POLL_TIMEOUT_MS)
        empty_backoff = Backoff(base=max(interval, 0.01), cap=max(interval, 1.0), factor=2.0)
        error_backoff = Backoff(base=0.5, cap=10.0)
        idle = True
        while not self.stopping.is_set():
            self.heartbeat = self.clock()
            if self.paused():
                self.stopping.wait(max(interval, 0.5))
                continue
            free = self.free_slots(SLOT_WAIT_SECONDS)
            if self.stopping.is_set():
                break
            if free <= 0:
                continue  # every slot still taken: beat and wait again
            count, timeout_ms = (1, s.poll_timeout_ms) if idle else (free, busy_timeout_ms)
            started = time.perf_counter()
            self.series.poll.inc()
            self.series.poll_total.inc()
            try:
                tasks = self.client.poll_batch(self.name, s.worker_id, count, timeout_ms, s.domain)
                if not isinstance(tasks, list):
                    raise ConductorError(f"poll returned {type(tasks).__name__}, expected a list", 200)
            except Exception as exc:
                kind = exc.kind if isinstance(exc, ConductorError) else type(exc).__name__
                self.series.poll_time("FAILURE").observe(time.perf_counter() - started)
                self.series.poll_error(kind).inc()
                if isinstance(exc, ConductorError):
                    self.reached(False)
                delay = error_backoff.next_delay()
                log.warning("poll %s failed (%s); retrying in %.1fs", self.name, exc, delay)
                self.stopping.wait(delay)
                continue
            took = time.perf_counter() - started
            self.series.poll_time("SUCCESS").observe(took)
            self.reached(True)
            error_backoff.reset()
            if not tasks:
                self.series.poll_empty.inc()
                if idle and took * 1000 < timeout_ms / 2:
                    self.stopping.wait(empty_backoff.next_delay())  # the server did not hold the poll
                idle = True
                continue
            empty_backoff.reset()
            idle = False
            self.series.polled.inc(len(tasks))
            if len(tasks) > count:
                log.warning("asked %s for %d task(s), got %d; the extra wait for a slot", self.name, count, len(tasks))
            for raw in tasks:
                self.accept(raw)
