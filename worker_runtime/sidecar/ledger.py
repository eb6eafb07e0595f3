"""The tasks a pod holds: from the poll (or update-v2 reply) that handed them out to their last update.

Why a ledger: the server does not say which tasks a worker holds, and an SDK worker may not say either
(no metrics, no drain). The sidecar sees every poll reply and every update, so it can count the pod's
busy slots exactly, cap what the pod takes at its concurrency, wait for the pod to hold nothing before
the worker gets SIGTERM, and hand back what a dead worker held.

Slots are reserved before a poll goes out and settled when its reply arrives, so two concurrent polls
of one worker can never take more than the free slots between them. Pure bookkeeping under one lock;
the clock is injected.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(eq=False)
class Held:
    """One task the pod holds."""

    task_id: str
    task_type: str
    workflow_id: str
    ref_name: str
    response_timeout: float  # seconds; 0 when the task has none
    since: float  # monotonic time the pod took it
    owners: frozenset[int] = frozenset()  # the worker processes alive when it was taken
    leased: float = 0.0  # monotonic time of the last poll or lease extension
    reporting: int = 0  # updates of it in flight (a dead worker's task is not handed back while > 0)

    @classmethod
    def from_task(cls, raw: Mapping[str, Any], now: float, owners: frozenset[int]) -> Held | None:
        task_id = raw.get("taskId")
        if not isinstance(task_id, str) or not task_id:
            return None
        timeout = raw.get("responseTimeoutSeconds")
        return cls(
            task_id=task_id,
            task_type=str(raw.get("taskType") or raw.get("taskDefName") or ""),
            workflow_id=str(raw.get("workflowInstanceId") or ""),
            ref_name=str(raw.get("referenceTaskName") or ""),
            response_timeout=float(timeout) if isinstance(timeout, (int, float)) and timeout > 0 else 0.0,
            since=now,
            owners=owners,
            leased=now,
        )


@dataclass
class _Type:
    held: dict[str, Held] = field(default_factory=dict)
    reserved: int = 0


class Ledger:
    """Held tasks per task type, with slot reservations for polls in flight."""

    def __init__(self, capacity: Mapping[str, int], clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = dict(capacity)  # task type -> slots; a type not listed is not capped
        self.clock = clock
        self._types: dict[str, _Type] = {}
        self._by_id: dict[str, Held] = {}
        self._cond = threading.Condition()

    def _type(self, task_type: str) -> _Type:
        found = self._types.get(task_type)
        if found is None:
            found = self._types[task_type] = _Type()
        return found

    # -- polls ------------------------------------------------------------------------------------

    def free(self, task_type: str) -> int | None:
        """Slots neither held nor reserved; None when the type has no cap."""
        cap = self.capacity.get(task_type)
        if cap is None:
            return None
        with self._cond:
            t = self._type(task_type)
            return max(0, cap - len(t.held) - t.reserved)

    def reserve(self, task_type: str, wanted: int, wait: float = 0.0, stop: Callable[[], bool] | None = None) -> int:
        """Reserve up to `wanted` slots, waiting at most `wait` seconds for one to free; 0 when none did
        (or `stop()` turned true: a draining pod takes nothing). An uncapped type gets `wanted`."""
        deadline = self.clock() + wait
        with self._cond:
            t = self._type(task_type)
            while True:
                if stop is not None and stop():
                    return 0
                cap = self.capacity.get(task_type)
                free = wanted if cap is None else max(0, cap - len(t.held) - t.reserved)
                granted = min(wanted, free)
                if granted > 0:
                    t.reserved += granted
                    return granted
                left = deadline - self.clock()
                if left <= 0:
                    return 0
                self._cond.wait(left)

    def settle(
        self, task_type: str, reserved: int, tasks: Iterable[Mapping[str, Any]], owners: frozenset[int]
    ) -> list[Held]:
        """A poll came back: its reservation becomes the tasks it brought; the rest is freed."""
        now = self.clock()
        taken: list[Held] = []
        with self._cond:
            t = self._type(task_type)
            t.reserved = max(0, t.reserved - reserved)
            for raw in tasks:
                held = Held.from_task(raw, now, owners)
                if held is None or held.task_id in self._by_id:
                    continue
                held.task_type = held.task_type or task_type
                self._type(held.task_type).held[held.task_id] = held
                self._by_id[held.task_id] = held
                taken.append(held)
            self._cond.notify_all()
        return taken

    def hold(self, raw: Mapping[str, Any], owners: frozenset[int]) -> Held | None:
        """A task handed over outside a poll (an update-v2 reply): the slot of the task just reported."""
        taken = self.settle(str(raw.get("taskType") or ""), 0, [raw], owners)
        return taken[0] if taken else None

    # -- updates ----------------------------------------------------------------------------------

    def find(self, task_id: str | None = None, workflow_id: str = "", ref_name: str = "") -> Held | None:
        with self._cond:
            if task_id:
                return self._by_id.get(task_id)
            for held in self._by_id.values():
                if held.workflow_id == workflow_id and held.ref_name == ref_name:
                    return held
            return None

    def reporting(self, held: Held, delta: int) -> None:
        with self._cond:
            held.reporting = max(0, held.reporting + delta)

    def leased(self, task_id: str) -> None:
        with self._cond:
            held = self._by_id.get(task_id)
            if held is not None:
                held.leased = self.clock()

    def release(self, task_id: str) -> Held | None:
        """The server took the task back (final status, or IN_PROGRESS: requeued): its slot is free."""
        with self._cond:
            held = self._by_id.pop(task_id, None)
            if held is not None:
                self._type(held.task_type).held.pop(task_id, None)
                self._cond.notify_all()
            return held

    # -- the pod ----------------------------------------------------------------------------------

    def busy(self) -> dict[str, int]:
        with self._cond:
            return {name: len(t.held) for name, t in self._types.items()}

    def held(self) -> list[Held]:
        with self._cond:
            return list(self._by_id.values())

    def orphaned(self, alive: frozenset[int]) -> list[Held]:
        """Tasks whose worker processes all died and that no update is reporting (taken under the lock,
        so a task is handed back once)."""
        with self._cond:
            lost = [h for h in self._by_id.values() if h.owners and not (h.owners & alive) and h.reporting == 0]
            for held in lost:
                self._by_id.pop(held.task_id, None)
                self._type(held.task_type).held.pop(held.task_id, None)
            if lost:
                self._cond.notify_all()
            return lost

    def due_for_lease(self, share: float) -> list[Held]:
        """Tasks held for `share` of their response timeout since they were taken or last extended."""
        now = self.clock()
        with self._cond:
            return [
                h
                for h in self._by_id.values()
                if h.response_timeout and h.reporting == 0 and now - h.leased >= h.response_timeout * share
            ]

    def wait_empty(self, deadline: float) -> bool:
        """Block until the pod holds nothing (True) or the monotonic `deadline` passes (False)."""
        with self._cond:
            while self._by_id:
                left = deadline - self.clock()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 1.0))
            return True

    def wake(self) -> None:
        """Wake reservations that wait (the pod started draining)."""
        with self._cond:
            self._cond.notify_all()
