"""Which queued tasks a new pod could start now: Conductor's queue size counts more than that.

What the server counts (Conductor OSS 3.21 source, checked on the stack): `GET /api/tasks/queue/all` and
`/tasks/queue/size` give the number of messages in the task type's queue. A polled task leaves it, but a
postponed message stays and is counted the whole time:

- a task its worker returned IN_PROGRESS with `callbackAfterSeconds` (the server sets it back to
  SCHEDULED and postpones its message by that many seconds);
- a retry waiting out `retryDelaySeconds` (a new SCHEDULED task pushed with that delay);
- a task postponed at poll because its definition's `concurrentExecLimit` or rate limit was reached
  (`queueTaskMessagePostponeSecs`, 60 s by default).

The server offers no count of ready messages, so it is derived from `GET /api/admin/task/{taskType}`, the
type's pending (non-terminal) tasks in every domain, each with its status, domain, `callbackAfterSeconds`,
`scheduledTime` and `updateTime`. Rule: a SCHEDULED task is due at max(scheduledTime, updateTime) +
callbackAfterSeconds (the update that postponed it, or the retry's creation, starts the delay); it is
ready when due within `lead` seconds (a pod started now is up by then). Under a `concurrentExecLimit`, at
most the limit minus the IN_PROGRESS tasks of the type are ready. Rate-limit postponements are not
visible in a task and still count as ready (the task-definition caps bound the pods they can add).

Cost: one request per task type whose queue is not empty, per polling interval, shared by every
ConductorWorker of that server; the server reads all pending tasks of the type to answer, and returns at
most `limit` of them (about 2.5 kB each). A longer list is a sample: the ready share seen is applied to
the queue size.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from conductor_operator.observe import queue_key
from conductor_operator.servers import ServerClients
from worker_runtime.client import ConductorError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pending:
    """One pending task as far as readiness goes."""

    queue: str  # `domain:taskType` or `taskType`
    running: bool  # IN_PROGRESS: held by a worker
    due_ms: float  # when a SCHEDULED task may be polled (epoch ms)


@dataclass(frozen=True)
class Scan:
    """A task type's pending tasks; complete False when the server returned only `limit` of them."""

    tasks: tuple[Pending, ...]
    complete: bool


@dataclass(frozen=True)
class Readiness:
    """Per queue: tasks a pod could start now (the autoscaler's backlog) and queued tasks that wait."""

    ready: dict[str, int]
    waiting: dict[str, int]

    @property
    def total_waiting(self) -> int:
        return sum(self.waiting.values())


def pending_from_task(task: Mapping[str, Any]) -> Pending | None:
    """A task of the admin list -> Pending; None for a status that holds no queue message."""
    status = task.get("status")
    if status not in ("SCHEDULED", "IN_PROGRESS"):
        return None
    base = max(float(task.get("scheduledTime") or 0), float(task.get("updateTime") or 0))
    delay = float(task.get("callbackAfterSeconds") or 0) * 1000.0
    return Pending(
        queue=queue_key(str(task.get("taskType") or task.get("taskDefName") or ""), task.get("domain") or None),
        running=status == "IN_PROGRESS",
        due_ms=base + delay,
    )


def readiness(
    sizes: Mapping[str, int],
    scans: Mapping[str, Scan],
    queue_types: Mapping[str, str],
    exec_limits: Mapping[str, int],
    now_ms: float,
    lead_s: float,
) -> Readiness:
    """Ready and waiting tasks per queue key.

    sizes: the server's queue sizes; scans: task type -> its pending tasks (a type without a scan counts
    its whole queue as ready); queue_types: queue key -> task type; exec_limits: task type ->
    concurrentExecLimit (types without one absent)."""
    horizon = now_ms + lead_s * 1000.0
    ready: dict[str, int] = {}
    waiting: dict[str, int] = {}
    for queue, size in sizes.items():
        task_type = queue_types.get(queue, queue)
        scan = scans.get(task_type)
        if scan is None or size <= 0:
            ready[queue], waiting[queue] = max(0, size), 0
            continue
        scheduled = [p for p in scan.tasks if p.queue == queue and not p.running]
        due = sum(1 for p in scheduled if p.due_ms <= horizon)
        if scan.complete:
            count = min(size, due)
        elif scheduled:
            count = round(size * due / len(scheduled))
        else:  # the sample holds none of this queue: nothing known against the server's count
            count = size
        limit = exec_limits.get(task_type)
        if limit is not None and scan.complete:
            running = sum(1 for p in scan.tasks if p.running)
            count = min(count, max(0, limit - running))
        ready[queue], waiting[queue] = count, size - count
    return Readiness(ready, waiting)


class PendingTaskSource:
    """Pending tasks per server and task type, cached for `max_age` seconds and shared by all callers.

    A server that refuses the admin list (404/405: no such endpoint; 401/403: the credentials may not
    read it, as on Orkes without the admin role) is remembered for `retry_after` seconds: its queues
    count whole, as before this module existed."""

    def __init__(self, timeout: float = 5.0, limit: int = 500, retry_after: float = 600.0) -> None:
        self.limit = limit
        self.retry_after = retry_after
        self._clients = ServerClients(timeout)
        self._cache: dict[tuple[str, str, str], tuple[float, Scan]] = {}
        self._refused: dict[tuple[str, str], tuple[float, int]] = {}
        self.requests = 0

    def refused(self, url: str, key_id: str | None = None, key_secret: str | None = None) -> int | None:
        """The HTTP status the server refused the list with (None: it answers, or was not asked yet)."""
        key, _ = self._clients.get(url, key_id, key_secret)
        found = self._refused.get(key)
        return found[1] if found else None

    def scans(
        self,
        url: str,
        task_types: Iterable[str],
        max_age: float,
        key_id: str | None = None,
        key_secret: str | None = None,
        now: float | None = None,
    ) -> dict[str, Scan]:
        """Scans of the given types; types the server will not list are absent. Raises ConductorError
        only for errors other than a refusal (the caller keeps the plain queue sizes)."""
        key, client = self._clients.get(url, key_id, key_secret)
        out: dict[str, Scan] = {}
        with self._clients.lock(key):
            now = time.monotonic() if now is None else now
            refused = self._refused.get(key)
            if refused and now - refused[0] < self.retry_after:
                return out
            for task_type in task_types:
                cached = self._cache.get((*key, task_type))
                if cached and now - cached[0] < max_age:
                    out[task_type] = cached[1]
                    continue
                try:
                    self.requests += 1
                    resp = client.request(
                        "GET",
                        f"/admin/task/{quote(task_type, safe='')}",
                        params={"start": 0, "count": self.limit},
                        template="/admin/task/{taskType}",
                    )
                except ConductorError as exc:
                    if exc.status in (401, 403, 404, 405):
                        log.info("%s refuses the pending-task list (HTTP %s): queues count whole", url, exc.status)
                        self._refused[key] = (now, exc.status)
                        return {}
                    raise
                self._refused.pop(key, None)
                tasks = resp.json() or []
                pending = tuple(p for p in (pending_from_task(t) for t in tasks) if p is not None)
                scan = Scan(pending, complete=len(tasks) < self.limit)
                self._cache[(*key, task_type)] = (now, scan)
                out[task_type] = scan
        return out

    def close(self) -> None:
        self._clients.close()
