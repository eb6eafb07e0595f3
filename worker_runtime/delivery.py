"""How results and handed-back tasks reach the server despite failures; the runtime and the sidecar share it.

A result is the one thing a worker must not lose: a failed update is tried again while trying can help (a
5xx, a network failure, an expired token: ConductorError.retryable), with jittered backoff so that many
pods do not retry in step, and stopped only by a refusal, the caller's deadline or its attempt budget.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from worker_runtime.backoff import Backoff
from worker_runtime.client import ConductorClient
from worker_runtime.errors import ConductorError

log = logging.getLogger(__name__)


class UpdateRetries:
    """When to try one result update again. Each update gets its own (the backoff is copied, not shared)."""

    def __init__(
        self,
        backoff: Backoff,
        give_up_after: float | None = None,
        attempts: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """give_up_after: seconds from now after which a failure stops the retries (None: no deadline);
        attempts: tries in all, the first included (None: no limit)."""
        self.backoff = dataclasses.replace(backoff, attempts=0)
        self.clock = clock
        self.deadline = None if give_up_after is None else clock() + give_up_after
        self.attempts = attempts
        self.failures = 0

    def next_delay(self, error: ConductorError) -> float | None:
        """Seconds to wait before the next try, or None: stop (a refusal, out of time or of attempts)."""
        self.failures += 1
        if not error.retryable:
            return None
        if self.deadline is not None and self.clock() > self.deadline:
            return None
        if self.attempts is not None and self.failures >= self.attempts:
            return None
        return self.backoff.next_delay()


def give_back(
    client: ConductorClient,
    task: Mapping[str, Any],
    worker_id: str,
    why: str,
    attempts: int = 3,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Hand a task this pod holds but will not run back to the server now: IN_PROGRESS with
    callbackAfterSeconds 0, which requeues it for the next poll without using one of its retries.
    False when the server could not be told (the task then comes back after its response timeout)."""
    for attempt in range(1, attempts + 1):
        try:
            client.release_task(dict(task), worker_id)
            log.info("handed task %s back to the server (%s)", task.get("taskId"), why)
            return True
        except ConductorError as exc:
            if attempt == attempts:
                log.error(
                    "could not hand task %s back (%s): %s; the server retries it after its response timeout",
                    task.get("taskId"),
                    why,
                    exc,
                )
            else:
                sleep(0.5 * attempt)
    return False
