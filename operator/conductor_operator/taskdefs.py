"""Task-definition limits that cap how many worker pods can get work (I/O edge plus a pure part).

Why: Conductor hands out no more than `concurrentExecLimit` tasks of a type at once, and no more than
`rateLimitPerFrequency` per `rateLimitFrequencyInSeconds`. Tasks over the limit stay in the queue, so a
queue-depth autoscaler would add pods that only poll. A pod with `concurrency` slots takes at most that
many tasks, so ceil(limit / concurrency) pods are all the work can use. (A rate limit bounds the starts
per window, not the tasks in flight; taken as a bound on tasks in flight, it is exact for tasks shorter
than the window and conservative for longer ones.)

Why cached per server and shared: definitions rarely change and many ConductorWorkers ask one server;
one `GET /api/metadata/taskdefs/{name}` per name and server per `max_age` answers all of them.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from conductor_operator.observe import queue_key
from conductor_operator.servers import ServerClients
from worker_runtime.client import ConductorError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskLimits:
    """A definition's limits; None where Conductor applies none (absent or 0)."""

    concurrent_exec_limit: int | None = None
    rate_limit_per_frequency: int | None = None
    response_timeout_seconds: int | None = None  # how long a worker may hold a task without an update
    known: bool = True  # False: the definition could not be read (and never was): the limits are a guess

    @classmethod
    def from_definition(cls, definition: dict[str, Any] | None) -> TaskLimits:
        def positive(key: str) -> int | None:
            value = (definition or {}).get(key)
            return int(value) if isinstance(value, int | float) and value > 0 else None

        return cls(
            positive("concurrentExecLimit"), positive("rateLimitPerFrequency"), positive("responseTimeoutSeconds")
        )

    @property
    def tasks(self) -> int | None:
        """Tasks of this type that workers can hold at once (None: no limit)."""
        values = [v for v in (self.concurrent_exec_limit, self.rate_limit_per_frequency) if v is not None]
        return min(values) if values else None


def pod_caps(tasks: Iterable[dict[str, Any]], limits: dict[str, TaskLimits]) -> dict[str, int]:
    """Queue key -> the most pods that can get work of that task type (only the limited types)."""
    caps: dict[str, int] = {}
    for task in tasks:
        limit = limits.get(task["name"], TaskLimits()).tasks
        if limit is not None:
            slots = max(1, int(task.get("concurrency") or 1))
            caps[queue_key(task["name"], task.get("domain") or None)] = max(1, math.ceil(limit / slots))
    return caps


class TaskDefSource:
    """Task definitions per Conductor server and name, cached for `max_age` seconds."""

    def __init__(
        self, timeout: float = 5.0, max_age: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.timeout = timeout
        self.max_age = max_age
        self.clock = clock
        self._clients = ServerClients(timeout)
        self._cache: dict[tuple[str, str, str], tuple[float, TaskLimits]] = {}
        self.requests = 0

    def limits(
        self, url: str, names: Iterable[str], key_id: str | None = None, key_secret: str | None = None
    ) -> dict[str, TaskLimits]:
        """Limits per task name. A definition that does not exist has none; one that cannot be read
        keeps its last known limits (none if never read), so a flaky server never blocks scaling."""
        key, client = self._clients.get(url, key_id, key_secret)
        out: dict[str, TaskLimits] = {}
        for name in names:
            cache_key = (*key, name)
            now = self.clock()
            cached = self._cache.get(cache_key)
            if cached and now - cached[0] < self.max_age:
                out[name] = cached[1]
                continue
            try:
                self.requests += 1
                resp = client.request("GET", f"/metadata/taskdefs/{quote(name, safe='')}")
                limits = TaskLimits.from_definition(resp.json() if resp.content else None)
            except ConductorError as exc:
                if exc.status != 404:
                    log.info("task definition %s unreadable at %s: %s", name, url, exc)
                    out[name] = cached[1] if cached else TaskLimits(known=False)
                    continue
                limits = TaskLimits()
            except ValueError:  # not JSON
                limits = TaskLimits()
            self._cache[cache_key] = (now, limits)
            out[name] = limits
        return out

    def close(self) -> None:
        self._clients.close()
