"""Run a worker function on one task and turn what it returned or raised into an encoded TaskResult.

Why apart from the runner: what a function's outcome means and how it is timed and counted is one job;
slots, polls and reports (runner.py) are another. Nothing here holds a slot or talks to the server.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from worker_runtime import context, results
from worker_runtime.metrics import TaskTypeMetrics, WorkerMetrics
from worker_runtime.model import Task, TaskResult
from worker_runtime.worker import WorkerSpec

log = logging.getLogger(__name__)


class Executor:
    """Calls one task type's function; never raises (an exception becomes a FAILED result)."""

    def __init__(
        self,
        spec: WorkerSpec,
        worker_id: str,
        series: TaskTypeMetrics,
        metrics: WorkerMetrics,
        max_result_bytes: int = results.MAX_RESULT_BYTES,
    ) -> None:
        self.spec = spec
        self.worker_id = worker_id
        self.series = series
        self.metrics = metrics
        self.max_result_bytes = max_result_bytes

    def run(self, task: Task) -> TaskResult:
        """Run a sync function on the task's input."""
        ctx = context.TaskContext(task=task, worker_id=self.worker_id)
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

    async def run_async(self, task: Task) -> TaskResult:
        """Run an async function as a task on the event loop."""
        ctx = context.TaskContext(task=task, worker_id=self.worker_id)
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
            return results.from_return(value, task, self.worker_id, ctx.logs)
        except results.UnsendableResult as exc:
            return results.terminal_failure(str(exc), task, self.worker_id)

    def _raised(self, task: Task, ctx: context.TaskContext, exc: BaseException, started: float) -> TaskResult:
        self.series.execute_time("FAILURE").observe(time.perf_counter() - started)
        self.series.execute_error(type(exc).__name__).inc()
        if not isinstance(exc, Exception) and not isinstance(exc, asyncio.CancelledError):
            self.metrics.uncaught.labels(exception=type(exc).__name__).inc()
        log.warning(
            "task %s (%s) failed: %s: %s", task.task_id, self.spec.task_definition_name, type(exc).__name__, exc
        )
        return results.from_exception(exc, task, self.worker_id, ctx.logs, self.spec.non_retryable)

    def encode(self, task: Task, result: TaskResult) -> tuple[bytes, str]:
        """The update's body and status; a result the server could never take (not JSON, too large)
        becomes a terminal failure naming why, at once: it is never sent, retried or left holding a slot."""
        try:
            return results.encode(result.to_json(), self.max_result_bytes), str(result.status)
        except results.UnsendableResult as exc:
            log.error("task %s (%s): %s", task.task_id, self.spec.task_definition_name, exc)
            failed = results.terminal_failure(str(exc), task, self.worker_id)
            return results.encode(failed.to_json(), self.max_result_bytes), str(failed.status)
