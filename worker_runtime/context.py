"""The task context a worker function can read while it runs (task id, workflow id, counts, logs)."""

from __future__ import annotations

import contextvars
import time
from dataclasses import dataclass, field

from worker_runtime.model import Task

_current: contextvars.ContextVar[TaskContext | None] = contextvars.ContextVar("task_context", default=None)


@dataclass
class TaskContext:
    task: Task
    worker_id: str
    logs: list[str] = field(default_factory=list)

    @property
    def task_id(self) -> str:
        return self.task.task_id

    @property
    def workflow_instance_id(self) -> str:
        return self.task.workflow_instance_id

    @property
    def poll_count(self) -> int:
        return self.task.poll_count

    @property
    def retry_count(self) -> int:
        return self.task.retry_count

    def add_log(self, message: str) -> None:
        """Append a line to the task's execution log, sent with the result."""
        self.logs.append(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {message}")


def get_task_context() -> TaskContext:
    """The context of the task being executed; raises outside a worker call."""
    ctx = _current.get()
    if ctx is None:
        raise RuntimeError("get_task_context() called outside a worker task")
    return ctx


def activate(ctx: TaskContext) -> contextvars.Token:
    return _current.set(ctx)


def deactivate(token: contextvars.Token) -> None:
    _current.reset(token)
