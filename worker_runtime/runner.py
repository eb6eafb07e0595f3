"""One task type's slots: the tasks it holds from the poll to the server's acceptance of their result.

Each task type has `thread_count` slots and one poll thread (poller.py), which asks the server for at
most as many tasks as there are free slots, so a busy worker never holds tasks it cannot start. A sync
function runs on a pooled thread (a hung one keeps it), an async one as a task on the shared event loop
(async_loop.py); executor.py turns what it returned or raised into a result. A slot stays taken until
the server accepted the task's result: results are retried (delivery.py, shared with the sidecar) and
never silently dropped. What a held task is and its states: held.py. The process around the runners
(signals, watchdog, health, drain): handler.py.

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

import concurrent.futures
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from worker_runtime import config as worker_config
from worker_runtime import results
from worker_runtime.async_loop import STUCK_AFTER_SECONDS, AsyncLoop
from worker_runtime.backoff import Backoff
from worker_runtime.client import ConductorClient, ConductorError
from worker_runtime.delivery import UpdateRetries, give_back
from worker_runtime.executor import Executor
from worker_runtime.held import Held, HeldState
from worker_runtime.metrics import WorkerMetrics
from worker_runtime.model import Task, TaskResult, TaskStatus
from worker_runtime.poller import Poller
from worker_runtime.results import MAX_RESULT_BYTES
from worker_runtime.thread_pool import GrowingThreadPool
from worker_runtime.worker import WorkerSpec

log = logging.getLogger(__name__)

SHUTDOWN_REASON = "worker shut down before the task finished (drain timeout)"

QUEUED, RUNNING, READY, SENDING, TAKEN, DONE = (
    HeldState.QUEUED,
    HeldState.RUNNING,
    HeldState.READY,
    HeldState.SENDING,
    HeldState.TAKEN,
    HeldState.DONE,
)


class TaskRunner:
    def __init__(
        self,
        spec: WorkerSpec,
        settings: worker_config.WorkerSettings,
        client: ConductorClient,
        metrics: WorkerMetrics,
        async_loop: AsyncLoop | None = None,
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
        self.clock = clock
        self.update_backoff = Backoff(base=0.2, cap=10.0)  # a template: each result gets a fresh copy
        self.paused = settings.paused
        self.name = settings.task_name
        self._free = settings.thread_count
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._abort = threading.Event()  # grace period over: stop retrying, report leftovers
        self._held: dict[str, Held] = {}
        self._waiting: deque[Held] = deque()  # QUEUED tasks, started as slots free up
        self._hung = 0
        self._threads = GrowingThreadPool(f"task-{self.name}")  # sync functions; hung ones keep theirs
        self._report_pool: concurrent.futures.ThreadPoolExecutor | None = None  # async results' updates
        self.server_ok: bool | None = None  # last contact with the server (poll or update) worked
        self.series = metrics.for_task(self.name)  # this task type's metric series, bound once
        self.executor = Executor(spec, settings.worker_id, self.series, metrics, max_result_bytes)
        self.poller = Poller(
            client,
            settings,
            self.series,
            metrics,
            free_slots=self._free_slots,
            accept=self._accept,
            reached=self._reached,
            paused=lambda: self.paused,
            stopping=self._stopping,
            clock=clock,
        )
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
        self.poller.start()

    def request_stop(self) -> None:
        """Stop polling now; tasks held keep running."""
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()

    def wait_drained(self, deadline: float) -> bool:
        """Wait until every task held is reported or the monotonic deadline passes."""
        self.poller.thread.join(max(0.0, deadline - time.monotonic()))
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
    def max_result_bytes(self) -> int:
        """The largest encoded result sent (the executor's limit; the drain's and watchdog's results too)."""
        return self.executor.max_result_bytes

    @max_result_bytes.setter
    def max_result_bytes(self, value: int) -> None:
        self.executor.max_result_bytes = value

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
        poller = self.poller
        if not poller.thread.is_alive():
            return f"poll loop died: {poller.error}" if poller.error else "poll loop not running"
        if self.clock() - poller.heartbeat >= STUCK_AFTER_SECONDS:
            return f"poll loop stuck for {self.clock() - poller.heartbeat:.0f}s"
        if self._hung >= self.settings.thread_count:
            return f"{self._hung} function(s) hung past their timeout"
        return None

    # -- slots -----------------------------------------------------------------------------------

    def _free_slots(self, timeout: float) -> int:
        """For the poller: how many tasks to ask for, after waiting up to `timeout` for a free slot."""
        with self._cond:
            if self._free <= 0 and not self._stopping.is_set():
                self._cond.wait(timeout)
            return min(max(self._free, 0), self.settings.batch_size)

    def _reached(self, ok: bool) -> None:
        self.server_ok = ok

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

    def _hold(self, raw: Any) -> Held | None:
        if not isinstance(raw, dict) or not raw.get("taskId"):
            log.error("ignoring malformed task from server: %.200r", raw)
            return None
        task = Task(raw)
        deadline, limit = self._deadline(task)
        return Held(task, deadline, limit)

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

    def _begin(self, held: Held) -> bool:
        """QUEUED -> RUNNING; False if the watchdog or the drain took the task first."""
        with self._cond:
            if held.state != QUEUED:
                return False
            held.state = RUNNING
        self.series.execution_started.inc()
        self.series.active_workers.inc()
        return True

    def _start(self, held: Held) -> None:
        if not self._begin(held):
            return
        if self.spec.is_async:
            if self.async_loop is None:
                raise RuntimeError("async worker without an event loop")
            future = self.async_loop.submit(self._run_async(held))
            held.cancel = future.cancel
        else:
            self._threads.submit(self._run_sync, held)

    def _run_sync(self, held: Held) -> None:
        """Run the task, report it, and run on this thread the next one the server handed over."""
        following: Held | None = held
        while following is not None:
            following = self._finish(following, self.executor.run(following.task))
            if following is not None and not self._begin(following):
                return

    async def _run_async(self, held: Held) -> None:
        result = await self.executor.run_async(held.task)
        if self._report_pool is None:
            self._report_pool = concurrent.futures.ThreadPoolExecutor(
                self.settings.thread_count, thread_name_prefix=f"report-{self.name}"
            )
        # Updates are blocking HTTP calls: they run on a small pool, never on the event loop.
        self._report_pool.submit(self._finish_and_start, held, result)

    def _finish_and_start(self, held: Held, result: TaskResult) -> None:
        following = self._finish(held, result)
        if following is not None:
            self._start(following)

    def _finish(self, held: Held, result: TaskResult) -> Held | None:
        """The function returned: report its result, unless the watchdog or the drain already did.
        Returns the task the server handed over in the slot, for the caller to start."""
        body, status = self.executor.encode(held.task, result)
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

    def _report(self, held: Held) -> None:
        following = self._deliver(held)
        if following is not None:
            self._start(following)

    def _chains(self, held: Held) -> bool:
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

    def _deliver(self, held: Held) -> Held | None:
        """Send the result until the server accepts it. A 4xx refusal is replaced by a terminal failure
        with the server's reason, so the workflow does not hang; anything else is retried. Returns the
        task update-v2 handed over in this slot (QUEUED, for the caller to start), or None."""
        retries = UpdateRetries(self.update_backoff, self.update_retry_seconds)
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
            delay = None if self._abort.is_set() else retries.next_delay(error)
            if delay is None:
                with self._cond:
                    mine = held.state == READY
                    held.state = DONE if mine else held.state
                if mine:
                    self._give_up(held, error)
                    self._release(held)
                return None
            log.warning("update of task %s failed (%s); retrying in %.1fs", held.task.task_id, error, delay)
            self._abort.wait(delay)

    def _replace_refused(self, held: Held, exc: ConductorError) -> bool:
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

    def _hand_over(self, held: Held, raw: Any) -> Held | None:
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
        give_back(self.client, task.raw, self.settings.worker_id, f"{self.name} cannot start it now", attempts=2)

    def _release(self, held: Held) -> None:
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

    def _give_up(self, held: Held, exc: Exception) -> None:
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
