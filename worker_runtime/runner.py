"""Poll -> execute -> report, per task type, with concurrency slots; and the TaskHandler running them all.

Each task type has one poll thread and a pool of `thread_count` slots. The poll thread asks the
server for at most as many tasks as there are free slots (batch poll, server-side long poll), so a
busy worker never holds tasks it cannot start. A slot stays taken until the task's result is
accepted by the server: results are retried with backoff and never silently dropped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from worker_runtime import config as worker_config
from worker_runtime import context, results
from worker_runtime.backoff import Backoff
from worker_runtime.client import ConductorClient, ConductorError
from worker_runtime.metrics import HealthServer, WorkerMetrics
from worker_runtime.model import Task, TaskResult, TaskStatus
from worker_runtime.worker import WorkerSpec

log = logging.getLogger(__name__)

STUCK_AFTER_SECONDS = 120.0
BUSY_POLL_TIMEOUT_MS = 20  # while tasks flow: take what is queued, do not wait for a full batch


class _AsyncLoop:
    """One event loop thread shared by all `async def` workers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="async-workers", daemon=True)
        self.thread.start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)


class TaskRunner:
    def __init__(
        self,
        spec: WorkerSpec,
        settings: worker_config.WorkerSettings,
        client: ConductorClient,
        metrics: WorkerMetrics,
        async_loop: _AsyncLoop | None = None,
        update_retry_seconds: float = 900.0,
    ) -> None:
        self.spec = spec
        self.settings = settings
        self.client = client
        self.metrics = metrics
        self.async_loop = async_loop
        self.update_retry_seconds = update_retry_seconds
        self.paused = settings.paused
        self.name = settings.task_name
        self._free = settings.thread_count
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._abort = threading.Event()  # grace period over: stop retrying, report leftovers as failed
        self._in_flight: dict[str, Task] = {}
        self._pool = ThreadPoolExecutor(settings.thread_count, thread_name_prefix=f"task-{self.name}")
        self._thread = threading.Thread(target=self._poll_loop, name=f"poll-{self.name}", daemon=True)
        self.heartbeat = time.monotonic()
        self.server_ok: bool | None = None  # last contact with the server (poll or update) worked
        self.polls_after_stop = 0
        self._labels = {"taskType": self.name}
        metrics.capacity.labels(**self._labels).set(settings.thread_count)
        metrics.busy_slots.labels(**self._labels).set(0)
        metrics.paused.labels(**self._labels).set(1 if self.paused else 0)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        log.info(
            "polling %s (slots=%d, batch=%d, domain=%s, worker_id=%s)",
            self.name,
            self.settings.thread_count,
            self.settings.batch_size,
            self.settings.domain,
            self.settings.worker_id,
        )
        self._thread.start()

    def request_stop(self) -> None:
        """Stop polling now; in-flight tasks keep running."""
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()

    def wait_drained(self, deadline: float) -> bool:
        """Wait until every in-flight task is reported or the monotonic deadline passes."""
        self._thread.join(max(0.0, deadline - time.monotonic()))
        with self._cond:
            while self._free < self.settings.thread_count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.5))
        return True

    def abort(self) -> list[str]:
        """Grace period over: report tasks still running as FAILED so the server retries them now."""
        self._abort.set()
        with self._cond:
            leftovers = list(self._in_flight.values())
        for task in leftovers:
            result = TaskResult(
                status=TaskStatus.FAILED,
                reason_for_incompletion="worker shut down before the task finished (drain timeout)",
                task_id=task.task_id,
                workflow_instance_id=task.workflow_instance_id,
                worker_id=self.settings.worker_id,
            )
            try:
                self.client.update_task(result.to_json())
            except ConductorError as exc:
                log.error(
                    "could not report unfinished task %s at shutdown: %s; the server will time it out",
                    task.task_id,
                    exc,
                )
        self._pool.shutdown(wait=False, cancel_futures=True)
        return [t.task_id for t in leftovers]

    @property
    def busy(self) -> int:
        return self.settings.thread_count - self._free

    def alive(self) -> bool:
        return not self._thread.is_alive() or time.monotonic() - self.heartbeat < STUCK_AFTER_SECONDS

    # -- polling ---------------------------------------------------------------------------------

    def _wait_for_slot(self) -> int:
        with self._cond:
            while self._free <= 0 and not self._stopping.is_set():
                self.heartbeat = time.monotonic()
                self._cond.wait(1.0)
            return min(self._free, self.settings.batch_size)

    def _poll_loop(self) -> None:
        """Two modes, because the server's batch poll waits until it has `count` tasks or the timeout:
        idle, ask for one task with the long-poll timeout (answered as soon as one arrives, one
        request per timeout while nothing comes); busy, ask for every free slot with a short wait
        (what is queued comes at once). A quick empty answer (no server-side wait) backs off."""
        s = self.settings
        interval = s.poll_interval_ms / 1000
        busy_timeout_ms = min(s.poll_timeout_ms, BUSY_POLL_TIMEOUT_MS)
        empty_backoff = Backoff(base=max(interval, 0.01), cap=max(interval, 1.0), factor=2.0)
        error_backoff = Backoff(base=0.5, cap=10.0)
        idle = True
        while not self._stopping.is_set():
            self.heartbeat = time.monotonic()
            if self.paused:
                self._stopping.wait(max(interval, 0.5))
                continue
            free = self._wait_for_slot()
            if self._stopping.is_set():
                break
            count, timeout_ms = (1, s.poll_timeout_ms) if idle else (free, busy_timeout_ms)
            started = time.perf_counter()
            self.metrics.poll.labels(**self._labels).inc()
            try:
                tasks = self.client.poll_batch(self.name, s.worker_id, count, timeout_ms, s.domain)
            except ConductorError as exc:
                self.server_ok = False
                self.metrics.poll_error.labels(taskType=self.name, exception=exc.kind).inc()
                delay = error_backoff.next_delay()
                log.warning("poll %s failed (%s); retrying in %.1fs", self.name, exc, delay)
                self._stopping.wait(delay)
                continue
            took = time.perf_counter() - started
            self.metrics.poll_time.labels(**self._labels).observe(took)
            self.server_ok = True
            error_backoff.reset()
            if not tasks:
                self.metrics.poll_empty.labels(**self._labels).inc()
                if idle and took * 1000 < timeout_ms / 2:
                    self._stopping.wait(empty_backoff.next_delay())  # the server did not hold the poll
                idle = True
                continue
            empty_backoff.reset()
            idle = False
            self.metrics.polled.labels(**self._labels).inc(len(tasks))
            for raw in tasks:
                self._dispatch(raw)

    def _dispatch(self, raw: Any) -> None:
        if not isinstance(raw, dict) or not raw.get("taskId"):
            log.error("ignoring malformed task from server: %.200r", raw)
            return
        task = Task(raw)
        with self._cond:
            self._free -= 1
            self._in_flight[task.task_id] = task
        self.metrics.busy_slots.labels(**self._labels).inc()
        self._pool.submit(self._handle, task)

    # -- execution and reporting ------------------------------------------------------------------

    def _handle(self, task: Task) -> None:
        try:
            result = self.execute(task)
            self._report(task, result)
        except Exception:  # a bug here must not leak the slot
            log.exception("unexpected error handling task %s", task.task_id)
        finally:
            self.metrics.busy_slots.labels(**self._labels).dec()
            with self._cond:
                self._free += 1
                self._in_flight.pop(task.task_id, None)
                self._cond.notify_all()

    def execute(self, task: Task) -> TaskResult:
        """Run the function on the task's input; never raises (exceptions become FAILED results)."""
        ctx = context.TaskContext(task=task, worker_id=self.settings.worker_id)
        token = context.activate(ctx)
        started = time.perf_counter()
        try:
            args, kwargs = self.spec.binder.bind(task)
            if self.spec.is_async:
                if self.async_loop is None:
                    raise RuntimeError("async worker without an event loop")
                value = self.async_loop.run(_with_context(ctx, self.spec.func(*args, **kwargs)))
            else:
                value = self.spec.func(*args, **kwargs)
            result = results.from_return(value, task, self.settings.worker_id, ctx.logs)
        except Exception as exc:
            self.metrics.execute_error.labels(taskType=self.name, exception=type(exc).__name__).inc()
            log.warning("task %s (%s) failed: %s: %s", task.task_id, self.name, type(exc).__name__, exc)
            result = results.from_exception(exc, task, self.settings.worker_id, ctx.logs, self.spec.non_retryable)
        finally:
            context.deactivate(token)
            self.metrics.execute_time.labels(**self._labels).observe(time.perf_counter() - started)
        self.metrics.execute.labels(taskType=self.name, status=str(result.status)).inc()
        return result

    def _report(self, task: Task, result: TaskResult) -> None:
        """Send the result until the server accepts it; a refusal that retrying cannot fix is
        turned into a terminal failure with the server's reason, so the workflow does not hang."""
        body = result.to_json()
        size = len(json.dumps(body["outputData"]))
        self.metrics.result_size.labels(**self._labels).observe(size)
        backoff = Backoff(base=0.2, cap=10.0)
        deadline = time.monotonic() + self.update_retry_seconds
        while True:
            try:
                self.client.update_task(body)
                self.server_ok = True
                return
            except ConductorError as exc:
                self.metrics.update_error.labels(taskType=self.name, exception=exc.kind).inc()
                if exc.retryable:
                    self.server_ok = False  # readiness reports the outage even when every slot is busy
                if not exc.retryable:
                    if body["status"] != str(TaskStatus.FAILED_WITH_TERMINAL_ERROR):
                        log.error("server refused result of task %s (%s); reporting it as failed", task.task_id, exc)
                        body = TaskResult(
                            status=TaskStatus.FAILED_WITH_TERMINAL_ERROR,
                            reason_for_incompletion=f"server refused the result: {exc}"[:1000],
                            task_id=task.task_id,
                            workflow_instance_id=task.workflow_instance_id,
                            worker_id=self.settings.worker_id,
                        ).to_json()
                        continue
                    self._give_up(task, body, exc)
                    return
                if time.monotonic() > deadline or self._abort.is_set():
                    self._give_up(task, body, exc)
                    return
                delay = backoff.next_delay()
                log.warning("update of task %s failed (%s); retrying in %.1fs", task.task_id, exc, delay)
                self._abort.wait(delay)

    def _give_up(self, task: Task, body: dict[str, Any], exc: Exception) -> None:
        self.metrics.result_dropped.labels(**self._labels).inc()
        log.error(
            "RESULT NOT DELIVERED for task %s of workflow %s after retries (%s); result follows: %s",
            task.task_id,
            task.workflow_instance_id,
            exc,
            json.dumps(body)[:20000],
        )


async def _with_context(ctx: context.TaskContext, coro: Any) -> Any:
    token = context.activate(ctx)
    try:
        return await coro
    finally:
        context.deactivate(token)


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
    ) -> None:
        specs = list(workers.values()) if isinstance(workers, Mapping) else list(workers)
        if not specs:
            raise ValueError("no workers to run: decorate functions with @worker_task and import their modules")
        self.settings = [worker_config.resolve(s, env, overrides) for s in specs]
        pool = sum(s.thread_count for s in self.settings) + len(specs) + 4
        self.client = client or ConductorClient(pool_size=pool)
        self.metrics = WorkerMetrics()
        self.async_loop = _AsyncLoop() if any(s.is_async for s in specs) else None
        self.runners = [
            TaskRunner(spec, st, self.client, self.metrics, self.async_loop, update_retry_seconds)
            for spec, st in zip(specs, self.settings, strict=True)
        ]
        self.drain_timeout = drain_timeout
        self._stopped = threading.Event()
        self._draining = False
        self.drained: bool | None = None  # after stop(): False if tasks were still running at the deadline
        self.health = (
            HealthServer(self.metrics, self._alive, self._ready, metrics_host, metrics_port)
            if metrics_port is not None
            else None
        )

    def _alive(self) -> tuple[bool, dict]:
        stuck = [r.name for r in self.runners if not r.alive()]
        return (not stuck, {"stuck": stuck})

    def _ready(self) -> tuple[bool, dict]:
        failing = [r.name for r in self.runners if r.server_ok is False]
        waiting = [r.name for r in self.runners if r.server_ok is None and not r.paused]
        ok = not self._draining and not failing and not waiting
        return ok, {"draining": self._draining, "unreachable": failing, "starting": waiting}

    def start(self) -> TaskHandler:
        if self.health:
            self.health.start()
        for runner in self.runners:
            runner.start()
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
