"""A task the runtime holds, from the poll until the server accepts its result, and its states.

Every held task has one state, and the state decides who reports it, so no task is reported twice: the
thread that computed the result, the watchdog when the task overran its timeout, or the drain at the
deadline. Transitions happen under the runner's lock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from worker_runtime.model import Task


class HeldState(StrEnum):
    QUEUED = "queued"  # the server sent more tasks than asked: waits for a slot
    RUNNING = "running"  # the function is executing
    READY = "ready"  # the result is encoded and waits to be sent (first time or between retries)
    SENDING = "sending"  # an update request is in flight
    TAKEN = "taken"  # the watchdog or the drain reports it; the function's late result is discarded
    DONE = "done"


@dataclass(eq=False)
class Held:
    """One task this worker holds."""

    task: Task
    deadline: float | None  # monotonic; None: no timeout
    limit: str = ""  # which timeout the deadline comes from, for the reason
    state: HeldState = HeldState.QUEUED
    body: bytes | None = None
    status: str = ""  # the status in `body`
    timed_out: bool = False
    has_slot: bool = False  # a QUEUED task waits without one
    cancel: Callable[[], Any] | None = None  # cancels an async execution
