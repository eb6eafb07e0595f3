"""The @worker_task decorator and the registry of decorated functions the runner discovers."""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worker_runtime.binding import Binder


@dataclass
class WorkerSpec:
    """One task type's function and the defaults its decorator declared (config may override them)."""

    task_definition_name: str
    func: Callable[..., Any]
    domain: str | None = None
    poll_interval_millis: int | None = None
    thread_count: int | None = None
    worker_id: str | None = None
    poll_timeout_millis: int | None = None
    batch_size: int | None = None
    non_retryable: tuple[type[BaseException], ...] = ()
    execution_timeout: float | None = None
    binder: Binder = field(init=False, repr=False)
    is_async: bool = field(init=False)

    def __post_init__(self) -> None:
        self.binder = Binder(self.func)
        self.is_async = is_async_callable(self.func)


def is_async_callable(func: Callable[..., Any]) -> bool:
    """An `async def` function, a partial of one, or an object whose `__call__` is `async def`."""
    if inspect.iscoroutinefunction(func):
        return True
    call = getattr(func, "__call__", None)  # noqa: B004 - the method itself is what is inspected
    return not inspect.isfunction(func) and inspect.iscoroutinefunction(call)


_REGISTRY: dict[str, WorkerSpec] = {}


def worker_task(
    task_definition_name: str,
    *,
    domain: str | None = None,
    poll_interval_millis: int | None = None,
    thread_count: int | None = None,
    worker_id: str | None = None,
    poll_timeout_millis: int | None = None,
    batch_size: int | None = None,
    non_retryable: tuple[type[BaseException], ...] = (),
    execution_timeout: float | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a function (sync or async) as the worker of a Conductor task type.

    The function stays callable as before; the runtime finds it when its module is imported.
    Exceptions listed in `non_retryable` end the task FAILED_WITH_TERMINAL_ERROR (no server retry).
    `execution_timeout` (seconds) fails a task that runs longer, like its `responseTimeoutSeconds`.
    """

    def register(func: Callable[..., Any]) -> Callable[..., Any]:
        if task_definition_name in _REGISTRY and _REGISTRY[task_definition_name].func is not func:
            raise ValueError(
                f"task '{task_definition_name}' already has a worker: {_REGISTRY[task_definition_name].func}"
            )
        _REGISTRY[task_definition_name] = WorkerSpec(
            task_definition_name,
            func,
            domain,
            poll_interval_millis,
            thread_count,
            worker_id,
            poll_timeout_millis,
            batch_size,
            tuple(non_retryable),
            execution_timeout,
        )
        return func

    return register


def registered() -> dict[str, WorkerSpec]:
    return dict(_REGISTRY)


def discover(modules: list[str], paths: list[str] | None = None) -> dict[str, WorkerSpec]:
    """Import the modules (with extra sys.path entries, e.g. a mounted directory) and return the workers."""
    for entry in paths or []:
        resolved = str(Path(entry).resolve())
        if resolved not in sys.path:
            sys.path.insert(0, resolved)
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ImportError(f"cannot import worker module '{name}': {exc}") from exc
    return registered()
