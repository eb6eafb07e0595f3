"""Map what a worker function returned or raised to a TaskResult (pure)."""

from __future__ import annotations

import dataclasses
import json
import math
import traceback
from typing import Any

from worker_runtime.binding import InputBindingError
from worker_runtime.model import NonRetryableError, Task, TaskInProgress, TaskResult, TaskStatus

MAX_REASON = 1000
MAX_RESULT_BYTES = 20_000_000  # Conductor's JSON parser refuses a string longer than this (HTTP 500)


class UnsendableResult(ValueError):
    """A result the server could never take: not JSON, or larger than the configured limit."""


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
            callback_after_seconds=_callback_seconds(value.callback_after_seconds),
        )
        return _stamp(result, task, worker_id, logs)
    return _stamp(TaskResult(output_data=_to_output(value)), task, worker_id, logs)


def _callback_seconds(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UnsendableResult(f"TaskInProgress.callback_after_seconds is {value!r}, not a finite number")
    return max(0, int(value))


def terminal_failure(reason: str, task: Task, worker_id: str) -> TaskResult:
    """A failure the server must not retry (the same input would fail the same way)."""
    result = TaskResult(status=TaskStatus.FAILED_WITH_TERMINAL_ERROR, reason_for_incompletion=reason[:MAX_REASON])
    return _stamp(result, task, worker_id, [])


def find_unencodable(value: Any, path: str = "result", _seen: set[int] | None = None) -> str | None:
    """Where and why JSON cannot hold a value (NaN, Infinity, an object, a cycle), or None if it can."""
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{path} is {_float_name(value)}"
    if value is None or isinstance(value, (str, int)):
        return None
    if not isinstance(value, (dict, list, tuple)):
        return f"{path} is a {type(value).__name__}, which JSON cannot hold"
    seen = set() if _seen is None else _seen
    if id(value) in seen:
        return f"{path} refers to itself"
    seen.add(id(value))
    if isinstance(value, dict):
        for key, item in value.items():
            if key is not None and not isinstance(key, (str, int, float)):
                return f"{path} has a key of type {type(key).__name__}"
            if isinstance(key, float) and not math.isfinite(key):
                return f"{path} has the key {_float_name(key)}"
            found = find_unencodable(item, f"{path}.{key}", seen)
            if found:
                return found
    else:
        for index, item in enumerate(value):
            found = find_unencodable(item, f"{path}[{index}]", seen)
            if found:
                return found
    seen.discard(id(value))
    return None


def _float_name(value: float) -> str:
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def encode(body: dict[str, Any], max_bytes: int) -> bytes:
    """The update's JSON body; raises UnsendableResult with a reason naming the problem."""
    try:
        data = json.dumps(body, allow_nan=False, separators=(",", ":")).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        where = find_unencodable(body.get("outputData"), "output") or find_unencodable(body, "result") or str(exc)
        raise UnsendableResult(f"the worker's result cannot be encoded as JSON: {where}") from exc
    if len(data) > max_bytes:
        raise UnsendableResult(
            f"result payload size {len(data):,} bytes exceeds the worker's limit of {max_bytes:,} bytes "
            "(CONDUCTOR_WORKER_MAX_RESULT_BYTES); store large data elsewhere and return a reference"
        )
    return data


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
