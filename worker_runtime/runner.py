"""Poll -> execute -> report, per task type, with concurrency slots; and the TaskHandler running them all.

Each task type has one poll thread and `thread_count` slots. The poll thread asks the server for at
most as many tasks as there are free slots (batch poll, server-side long poll), so a busy worker never
holds tasks it cannot start. A sync function runs on a pooled thread (a hung one keeps it), an async
one as a task on the shared event loop. A slot stays taken until the task's result is accepted by the
server: results are retried with backoff and never silently dropped.

Every task held is a `_Held` whose `state` decides who reports it, so no task is reported twice: the
thread that computed the result, the watchdog when the task overran its timeout, or the drain at
the deadline. Transitions happen under the runner's lock.

With `update_v2` on, results go out with `POST /tasks/update-v2`, whose reply is the next task of
the same type for this worker: in steady state one request per task, the poll thread idle while every
slot chains. The server marks a task it hands over IN_PROGRESS and takes it off the queue, so a runner
that cannot start it at once (stopping, paused, tasks already waiting for a slot) gives it back
immediately (IN_PROGRESS, callback 0 s: requeued for the next poll) rather than let it wait for its
response timeout. On by default, as in the Conductor SDKs; turned off (or on a server without
update-v2) results go out with `POST /tasks`. The server must run with its workflow-execution lock
(Conductor's own Redis configuration does): without it, a task completed through update-v2 can race
its workflow's first decide and leave the workflow RUNNING (tests/integration/test_runtime_handoff.py).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from worker_runtime import config as worker_config
from worker_runtime import context, results
from worker_runtime.backoff import Backoff
from worker_runtime.client import ConductorClient, ConductorError
from worker_runtime.metrics import HealthServer, WorkerMetrics
from worker_runtime.model import Task, TaskResult, TaskStatus
from worker_runtime.thread_pool import GrowingThreadPool
from worker_runtime.worker import WorkerSpec

log = logging.getLogger(__name__)

STUCK_AFTER_SECONDS = 120.0
BUSY_POLL_TIMEOUT_MS = 20  # while tasks flow: take what is queued, do not wait for a full batch
WATCHDOG_TICK_SECONDS = 0.5
MAX_RESULT_BYTES = 20_000_000  # Conductor's JSON parser refuses a string longer than this (HTTP 500)
SHUTDOWN_REASON = "worker shut down before the task finished (drain timeout)"

# States of a held task.
QUEUED = "queued"  # the server sent more tasks than asked: waits for a slot
RUNNING = "running"  # the function is executing
READY = "ready"  # the result is encoded and waits to be sent (first time or between retries)
SENDING = "sending"  # an update request is in flight
TAKEN = "taken"  # the watchdog or the drain reports it; the function's late result is discarded
DONE = "done"


@dataclass(eq=False)
class _Held:
    """One task this worker holds, from the poll until the server accepts its result."""

    task: Task
    deadline: float | None  # monotonic; None: no timeout
    limit: str = ""  # which timeout the deadline comes from, for the reason
    state: str = QUEUED
    body: bytes | None = None
    status: str = ""  # the status in `body`
    timed_out: bool = False
    has_slot: bool = False  # a QUEUED task waits without one
    cancel: Callable[[], Any] | None = None  # cancels an async execution


class _AsyncLoop:
    """One event loop thread shared by all `async def` workers; each task runs as a task on it.

    An async function that blocks (a sync sleep, a CPU loop) stalls every other one: the watchdog's
    `beat` stops landing, and /healthz reports the loop blocked."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.last_beat = clock()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="async-workers", daemon=True)
        self.thread.start()

    def beat(self) -> None:
        self.loop.call_soon_threadsafe(self._mark)

    def _mark(self) -> None:
        self.last_beat = self.clock()

    def problem(self) -> str | None:
        if not self.thread.is_alive():
            return "event loop not running"
        stalled = self.clock() - self.last_beat
        return f"event loop blocked for {stalled:.0f}s" if stalled >= STUCK_AFTER_SECONDS else None

    def submit(self, coro: Any) -> concurrent.futures.Future:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

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
        max_result_bytes: int = MAX_RESULT_BYTES,
        clock: Callable[[], float] = time.monotonic,
        update_v2: bool = True,
    ) -> None:
        self.spec = spec
        self.update_v2 = update_v2
        self.settings = settings
        self.client = client
        self.metrics = metrics
        self.async_loop = async_loop
        self.update_retry_seconds = update_retry_seconds
        self.max_result_bytes = max_result_bytes
        self.clock = clock
        self.update_backoff = Backoff(base=0.2, cap=10.0)  # a template: each result gets a fresh copy
        self.paused = settings.paused
        self.name = settings.task_name
        self._free = settings.thread_count
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._abort = threading.Event()  # grace period over: stop retrying, report leftovers
        self._held: dict[str, _Held] = {}
        self._waiting: deque[_Held] = deque()  # QUEUED tasks, started as slots free up
        self._hung = 0
        self._thread = threading.Thread(target=self._poll_loop, name=f"poll-{self.name}", daemon=True)
        self._threads = GrowingThreadPool(f"task-{self.name}")  # sync functions; hung ones keep theirs
        self._report_pool: concurrent.futures.ThreadPoolExecutor | None = None  # async results' updates
        self.heartbeat = clock()
        self.loop_error: str | None = None  # why the poll loop died
        self.server_ok: bool | None = None  # last contact with the server (poll or update) worked
        self.series = metrics.for_task(self.name)  # this task type's metric series, bound once
        self.series.capacity.set(settings.thread_count)
        self.series.set_busy(0)
        self.series.active_workers.set(0)
        self.series.hung.set(0)
        self.series.paused.set(1 if self.paused else 0)

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
        """Stop polling now; tasks held keep running."""
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()

    def wait_drained(self, deadline: float) -> bool:
        """Wait until every task held is reported or the monotonic deadline passes."""
        self._thread.join(max(0.0, deadline - time.monotonic()))
        with self._cond:
            while self._held:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.5))
        return True

    def abort(self) -> list[str]:
        """Grace period over: a task whose result is computed is reported with it, one still running
        (or never started) is reported FAILED so the server retries it now. Returns the FAILED ones."""
        with self._cond:
            self._abort.set()
            taken = [h for h in self._held.values() if h.state in (QUEUED, RUNNING, READY)]
            unfinished = [h for h in taken if h.state != READY]
            running = sum(1 for h in taken if h.state == RUNNING)
            for held in taken:
                held.state = TAKEN
            self._waiting.clear()
        self.series.active_workers.dec(running)
        for held in unfinished:
            if held.cancel:
                held.cancel()
            failed = TaskResult(
                status=TaskStatus.FAILED,
                reason_for_incompletion=SHUTDOWN_REASON,
                task_id=held.task.task_id,
                workflow_instance_id=held.task.workflow_instance_id,
                worker_id=self.settings.worker_id,
            )
            held.body, held.status = results.encode(failed.to_json(), self.max_result_bytes), str(failed.status)
        for held in taken:
            try:
                self.client.update_task(held.body)
            except Exception as exc:
                self._give_up(held, exc)
            self._release(held)
        if self._report_pool is not None:
            self._report_pool.shutdown(wait=False, cancel_futures=True)
        return [h.task.task_id for h in unfinished]

    @property
    def busy(self) -> int:
        return self.settings.thread_count - self._free

    @property
    def hung(self) -> int:
        """Sync functions still running after their task was failed for timeout."""
        return self._hung

    def health(self) -> str | None:
        """Why this task type needs a restart, or None: the poll loop died or is stuck, or as many
        functions hang past their timeout as there are slots."""
        if self._stopping.is_set():
            return None
        if not self._thread.is_alive():
            return f"poll loop died: {self.loop_error}" if self.loop_error else "poll loop not running"
        if self.clock() - self.heartbeat >= STUCK_AFTER_SECONDS:
            return f"poll loop stuck for {self.clock() - self.heartbeat:.0f}s"
        if self._hung >= self.settings.thread_count:
            return f"{self._hung} function(s) hung past their timeout"
        return None

    # -- polling ---------------------------------------------------------------------------------

    def _wait_for_slot(self) -> int:
        with self._cond:
            while self._free <= 0 and not self._stopping.is_set():
                self.heartbeat = self.clock()
                self._cond.wait(1.0)
            return min(self._free, self.settings.batch_size)

    def _poll_loop(self) -> None:
        try:
            self._poll_until_stopped()
        except BaseException as exc:  # the loop is gone: /healthz reports it so the pod restarts
            self.loop_error = f"{type(exc).__name__}: {exc}"
            self.metrics.uncaught.labels(exception=type(exc).__name__).inc()
            log.critical("poll loop of %s died", self.name, exc_info=True)

    def _poll_until_stopped(self) -> None:
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
            self.heartbeat = self.clock()
            if self.paused:
                self._stopping.wait(max(interval, 0.5))
                continue
            free = self._wait_for_slot()
            if self._stopping.is_set():
                break
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
                    self.server_ok = False
                delay = error_backoff.next_delay()
                log.warning("poll %s failed (%s); retrying in %.1fs", self.name, exc, delay)
                self._stopping.wait(delay)
                continue
            took = time.perf_counter() - started
            self.series.poll_time("SUCCESS").observe(took)
            self.server_ok = True
            error_backoff.reset()
            if not tasks:
                self.series.poll_empty.inc()
                if idle and took * 1000 < timeout_ms / 2:
                    self._stopping.wait(empty_backoff.next_delay())  # the server did not hold the poll
                idle = True
                continue
            empty_backoff.reset()
            idle = False
            self.series.polled.inc(len(tasks))
            if len(tasks) > count:
                log.warning("asked %s for %d task(s), got %d; the extra wait for a slot", self.name, count, len(tasks))
            for raw in tasks:
                self._accept(raw)

    def _accept(self, raw: Any) -> None:
        """Hold a polled task: start it if a slot is free, else queue it (the server sent more than asked)."""
        held = self._hold(raw)
        if held is None:
            return
        task = held.task
        with self._cond:
            if task.task_id in self._held:
                log.warning("task %s polled again while held; ignoring the copy", task.task_id)
                return
            self._held[task.task_id] = held
            self._cond.notify_all()
            if self._free <= 0:
                self._waiting.append(held)
                return
            self._free -= 1
            held.has_slot = True
        self.series.add_busy(1)
        self._start(held)

    def _hold(self, raw: Any) -> _Held | None:
        if not isinstance(raw, dict) or not raw.get("taskId"):
            log.error("ignoring malformed task from server: %.200r", raw)
            return None
        task = Task(raw)
        deadline, limit = self._deadline(task)
        return _Held(task, deadline, limit)

    def _deadline(self, task: Task) -> tuple[float | None, str]:
        limits = []
        response_timeout = task.raw.get("responseTimeoutSeconds")
        if isinstance(response_timeout, (int, float)) and response_timeout > 0:
            limits.append((float(response_timeout), f"responseTimeoutSeconds ({response_timeout:g} s)"))
        if self.settings.execution_timeout_s:
            limits.append(
                (self.settings.execution_timeout_s, f"execution_timeout ({self.settings.execution_timeout_s:g} s)")
            )
        if not limits:
            return None, ""
        seconds, limit = min(limits)
        return self.clock() + seconds, limit

    # -- execution -------------------------------------------------------------------------------

    def _begin(self, held: _Held) -> bool:
        """QUEUED -> RUNNING; False if the watchdog or the drain took the task first."""
        with self._cond:
            if held.state != QUEUED:
                return False
            held.state = RUNNING
        self.series.execution_started.inc()
        self.series.active_workers.inc()
        return True

    def _start(self, held: _Held) -> None:
        if not self._begin(held):
            return
        if self.spec.is_async:
            if self.async_loop is None:
                raise RuntimeError("async worker without an event loop")
            future = self.async_loop.submit(self._run_async(held))
            held.cancel = future.cancel
        else:
            self._threads.submit(self._run_sync, held)

    def _run_sync(self, held: _Held) -> None:
        """Run the task, report it, and run on this thread the next one the server handed over."""
        following: _Held | None = held
        while following is not None:
            following = self._finish(following, self.execute(following.task))
            if following is not None and not self._begin(following):
                return

    async def _run_async(self, held: _Held) -> None:
        result = await self.execute_async(held.task)
        if self._report_pool is None:
            self._report_pool = concurrent.futures.ThreadPoolExecutor(
                self.settings.thread_count, thread_name_prefix=f"report-{self.name}"
            )
        # Updates are blocking HTTP calls: they run on a small pool, never on the event loop.
        self._report_pool.submit(self._finish_and_start, held, result)

    def _finish_and_start(self, held: _Held, result: TaskResult) -> None:
        following = self._finish(held, result)
        if following is not None:
            self._start(following)

    def execute(self, task: Task) -> TaskResult:
        """Run a sync function on the task's input; never raises (exceptions become FAILED results)."""
        ctx = context.TaskContext(task=task, worker_id=self.settings.worker_id)
        token = context.activate(ctx)
        started = time.perf_counter()
        try:
            args, kwargs = self.spec.binder.bind(task)
            value = self.spec.func(*args, **kwargs)
            return self._returned(task, ctx, value, started)
        except BaseException as exc:  # SystemExit, KeyboardInterrupt too: reported, not lost
            return self._raised(task, ctx, exc, started)
        finally:
            context.deactivate(token)

    async def execute_async(self, task: Task) -> TaskResult:
        """Run an async function as a task on the event loop; never raises."""
        ctx = context.TaskContext(task=task, worker_id=self.settings.worker_id)
        token = context.activate(ctx)  # the asyncio task has its own context: no other task sees it
        started = time.perf_counter()
        try:
            args, kwargs = self.spec.binder.bind(task)
            value = await self.spec.func(*args, **kwargs)
            return self._returned(task, ctx, value, started)
        except BaseException as exc:  # an escaping SystemExit would stop the shared loop
            return self._raised(task, ctx, exc, started)
        finally:
            context.deactivate(token)

    def _returned(self, task: Task, ctx: context.TaskContext, value: Any, started: float) -> TaskResult:
        self.series.execute_time("SUCCESS").observe(time.perf_counter() - started)
        try:
            return results.from_return(value, task, self.settings.worker_id, ctx.logs)
        except results.UnsendableResult as exc:
            return results.terminal_failure(str(exc), task, self.settings.worker_id)

    def _raised(self, task: Task, ctx: context.TaskContext, exc: BaseException, started: float) -> TaskResult:
        self.series.execute_time("FAILURE").observe(time.perf_counter() - started)
        self.series.execute_error(type(exc).__name__).inc()
        if not isinstance(exc, Exception) and not isinstance(exc, asyncio.CancelledError):
            self.metrics.uncaught.labels(exception=type(exc).__name__).inc()
        log.warning("task %s (%s) failed: %s: %s", task.task_id, self.name, type(exc).__name__, exc)
        return results.from_exception(exc, task, self.settings.worker_id, ctx.logs, self.spec.non_retryable)

    def _encode(self, task: Task, result: TaskResult) -> tuple[bytes, str]:
        """The update's body and status; a result the server could never take (not JSON, too large)
        becomes a terminal failure naming why, at once: it is never sent, retried or left holding a slot."""
        try:
            return results.encode(result.to_json(), self.max_result_bytes), str(result.status)
        except results.UnsendableResult as exc:
            log.error("task %s (%s): %s", task.task_id, self.name, exc)
            failed = results.terminal_failure(str(exc), task, self.settings.worker_id)
            return results.encode(failed.to_json(), self.max_result_bytes), str(failed.status)

    def _finish(self, held: _Held, result: TaskResult) -> _Held | None:
        """The function returned: report its result, unless the watchdog or the drain already did.
        Returns the task the server handed over in the slot, for the caller to start."""
        body, status = self._encode(held.task, result)
        with self._cond:
            late = held.state != RUNNING
            if late and held.timed_out and not self.spec.is_async:
                self._hung -= 1
                self._cond.notify_all()
            if not late:
                held.state, held.body, held.status = READY, body, status
        if late:
            if held.timed_out and not self.spec.is_async:
                self.series.hung.dec()
            log.info("task %s finished after it was reported; its result is discarded", held.task.task_id)
            return None
        self.series.active_workers.dec()
        self.series.execute(status).inc()
        self.series.result_size.observe(len(body))
        return self._deliver(held)

    # -- timeouts --------------------------------------------------------------------------------

    def expire_overdue(self) -> list[str]:
        """Fail every task past its deadline and report it; called by the watchdog. An async task is
        cancelled; a sync function cannot be stopped and is counted as hung; a task still waiting for
        a slot is never started."""
        now = self.clock()
        with self._cond:
            overdue = [
                h for h in self._held.values() if h.state in (QUEUED, RUNNING) and h.deadline and now >= h.deadline
            ]
            running = [h for h in overdue if h.state == RUNNING]
            for held in overdue:
                if held.state == QUEUED:
                    self._waiting.remove(held)
                held.state, held.timed_out = TAKEN, True
            if not self.spec.is_async:
                self._hung += len(running)
        for held in overdue:
            self.series.execution_timeout.inc()
            if held in running:
                self.series.active_workers.dec()
                if not self.spec.is_async:
                    self.series.hung.inc()
                elif held.cancel:
                    held.cancel()
            if held in running:
                reason = f"task ran past its {held.limit} in the worker"
            else:
                reason = f"task waited past its {held.limit} for a free slot (the server sent more than asked)"
            log.error("task %s (%s): %s", held.task.task_id, self.name, reason)
            failed = TaskResult(
                status=TaskStatus.FAILED,
                reason_for_incompletion=reason,
                task_id=held.task.task_id,
                workflow_instance_id=held.task.workflow_instance_id,
                worker_id=self.settings.worker_id,
            )
            self.series.execute(str(TaskStatus.FAILED)).inc()
            with self._cond:
                held.state, held.status = READY, str(failed.status)
                held.body = results.encode(failed.to_json(), self.max_result_bytes)
            threading.Thread(target=self._report, args=(held,), name=f"report-{self.name}", daemon=True).start()
        return [h.task.task_id for h in overdue]

    # -- reporting -------------------------------------------------------------------------------

    def _report(self, held: _Held) -> None:
        following = self._deliver(held)
        if following is not None:
            self._start(following)

    def _chains(self, held: _Held) -> bool:
        """Whether to report with update-v2 (and take the next task in this slot): only when the slot
        could take one now; stopping, paused or with tasks waiting for a slot, plain POST /tasks."""
        return (
            self.update_v2
            and self.client.update_v2
            and held.has_slot
            and not self.paused
            and not self._waiting
            and not self._stopping.is_set()
            and not self._abort.is_set()
        )

    def _deliver(self, held: _Held) -> _Held | None:
        """Send the result until the server accepts it. A 4xx refusal is replaced by a terminal failure
        with the server's reason, so the workflow does not hang; anything else is retried. Returns the
        task update-v2 handed over in this slot (QUEUED, for the caller to start), or None."""
        backoff = dataclasses.replace(self.update_backoff, attempts=0)
        give_up_at = time.monotonic() + self.update_retry_seconds
        while True:
            with self._cond:
                if held.state != READY:  # the drain took it over
                    return None
                held.state = SENDING
            started = time.perf_counter()
            error: Exception | None = None
            handed: Any = None
            try:
                if self._chains(held):
                    handed = self.client.update_task_v2(held.body)
                else:
                    self.client.update_task(held.body)
            except Exception as exc:
                error = exc
            took = time.perf_counter() - started
            status = "FAILURE" if error else "SUCCESS"
            self.series.update_time(status).observe(took)
            with self._cond:
                held.state = READY if error else DONE
            if error is None:
                self.server_ok = True
                return self._hand_over(held, handed)
            if not isinstance(error, ConductorError):  # a bug in a client: retrying cannot help
                error = ConductorError(f"{type(error).__name__}: {error}", client_error=type(error).__name__)
            self.series.update_error(error.kind).inc()
            if error.retryable:
                self.server_ok = False  # readiness reports the outage even when every slot is busy
            elif self._replace_refused(held, error):
                continue
            if not error.retryable or time.monotonic() > give_up_at or self._abort.is_set():
                with self._cond:
                    mine = held.state == READY
                    held.state = DONE if mine else held.state
                if mine:
                    self._give_up(held, error)
                    self._release(held)
                return None
            delay = backoff.next_delay()
            log.warning("update of task %s failed (%s); retrying in %.1fs", held.task.task_id, error, delay)
            self._abort.wait(delay)

    def _replace_refused(self, held: _Held, exc: ConductorError) -> bool:
        """The server refused the result (4xx): report a terminal failure with its reason instead,
        unless that is what it refused. True when there is a new body to send."""
        if exc.status is None or held.status == str(TaskStatus.FAILED_WITH_TERMINAL_ERROR):
            return False
        log.error("server refused the result of task %s (%s); reporting it as failed", held.task.task_id, exc.summary)
        reason = f"server refused the result: {exc}"
        failed = results.terminal_failure(reason, held.task, self.settings.worker_id)
        with self._cond:
            if held.state != READY:
                return False
            held.body, held.status = results.encode(failed.to_json(), self.max_result_bytes), str(failed.status)
        return True

    def _hand_over(self, held: _Held, raw: Any) -> _Held | None:
        """The server accepted `held`'s result and handed over `raw` (or None). The slot passes to the
        new task when it can start now; otherwise the slot is freed and the task given back at once."""
        following = self._hold(raw) if raw is not None else None
        if following is None:
            self._release(held)
            return None
        self.series.handed.inc()
        self.series.polled.inc()
        task_id = following.task.task_id
        with self._cond:
            duplicate = task_id in self._held
            if (
                not duplicate
                and held.has_slot
                and self._held.get(held.task.task_id) is held
                and not self._waiting
                and not self.paused
                and not self._stopping.is_set()
                and not self._abort.is_set()
            ):
                del self._held[held.task.task_id]
                following.has_slot = True
                self._held[task_id] = following  # no notify: no free slot, no fewer tasks held
                return following
        self._release(held)
        if duplicate:  # a copy of a task running here: giving it back would run it twice
            log.warning("task %s handed over again while held; ignoring the copy", task_id)
        else:
            self._give_back(following.task)
        return None

    def _give_back(self, task: Task) -> None:
        """Requeue a task this runner was handed but cannot start, so another poll takes it now."""
        self.series.released.inc()
        for attempt in (1, 2):
            try:
                self.client.release_task(task.raw, self.settings.worker_id)
                log.info("gave task %s (%s) back to the queue", task.task_id, self.name)
                return
            except Exception as exc:
                if attempt == 2:
                    log.error(
                        "could not give task %s back (%s); the server retries it after its response timeout",
                        task.task_id,
                        exc,
                    )

    def _release(self, held: _Held) -> None:
        """The task is reported: free its slot, or hand it to a task that waits for one."""
        with self._cond:
            if self._held.pop(held.task.task_id, None) is None:
                return
            self._cond.notify_all()
            if not held.has_slot:
                return
            following = self._waiting.popleft() if self._waiting and not self._abort.is_set() else None
            if following is None:
                self._free += 1
            else:
                following.has_slot = True
        if following is None:
            self.series.add_busy(-1)
        else:
            self._start(following)

    def _give_up(self, held: _Held, exc: Exception) -> None:
        """The result could not be delivered. Its size and status are logged, never its content (task
        outputs may hold personal or secret data, and logs are read more widely than the server)."""
        self.series.result_dropped.inc()
        summary = exc.summary if isinstance(exc, ConductorError) else f"{type(exc).__name__}"
        log.error(
            "RESULT NOT DELIVERED for task %s of workflow %s (%s): a %s result of %d bytes",
            held.task.task_id,
            held.task.workflow_instance_id,
            summary,
            held.status,
            len(held.body or b""),
        )


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
        self.async_loop = _AsyncLoop(clock) if any(s.is_async for s in specs) else None
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
