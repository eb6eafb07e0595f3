"""Map what a worker function returned or raised to a TaskResult (pure)."""

from __future__ import annotations

import dataclasses
import json
import traceback
from typing import Any

from worker_runtime.binding import InputBindingError
from worker_runtime.model import NonRetryableError, Task, TaskInProgress, TaskResult, TaskStatus

MAX_REASON = 1000


def _stamp(result: TaskResult, task: Task, worker_id: str, logs: list[str]) -> TaskResult:
    result.task_id = task.task_id
    result.workflow_instance_id = task.workflow_instance_id
    result.worker_id = worker_id
    result.logs = [*logs, *result.logs]
    return result


def _to_output(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, dict):
        return value
    return {"result": value}


def from_return(value: Any, task: Task, worker_id: str, logs: list[str]) -> TaskResult:
    """A dict or dataclass becomes outputData, other values {"result": v}; results pass through."""
    if isinstance(value, TaskResult):
        return _stamp(value, task, worker_id, logs)
    if isinstance(value, TaskInProgress):
        result = TaskResult(
            status=TaskStatus.IN_PROGRESS,
            output_data=_to_output(value.output),
            callback_after_seconds=max(0, int(value.callback_after_seconds)),
        )
        return _stamp(result, task, worker_id, logs)
    output = _to_output(value)
    try:
        json.dumps(output)
    except (TypeError, ValueError) as exc:
        return _stamp(
            TaskResult(
                status=TaskStatus.FAILED_WITH_TERMINAL_ERROR,
                reason_for_incompletion=f"worker returned output that is not JSON serializable: {exc}",
            ),
            task,
            worker_id,
            logs,
        )
    return _stamp(TaskResult(output_data=output), task, worker_id, logs)


def from_exception(
    exc: BaseException,
    task: Task,
    worker_id: str,
    logs: list[str],
    non_retryable: tuple[type[BaseException], ...] = (),
) -> TaskResult:
    """An exception fails the task with its reason, the traceback in the task log."""
    terminal = isinstance(exc, (NonRetryableError, InputBindingError, *non_retryable))
    reason = f"{type(exc).__name__}: {exc}"[:MAX_REASON]
    trace = "".join(traceback.format_exception(exc))[-8000:]
    result = TaskResult(
        status=TaskStatus.FAILED_WITH_TERMINAL_ERROR if terminal else TaskStatus.FAILED,
        reason_for_incompletion=reason,
        logs=[trace],
    )
    return _stamp(result, task, worker_id, logs)
