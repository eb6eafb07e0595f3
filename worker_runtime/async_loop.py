"""One event loop thread shared by all `async def` workers of a process."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable
from typing import Any

STUCK_AFTER_SECONDS = 120.0  # a loop (or poll loop) without a beat for this long is reported stuck


class AsyncLoop:
    """Each async task runs as a task on one loop thread.

    An async function that blocks (a sync sleep, a CPU loop) stalls every other one: the watchdog's
    `beat` stops landing, and /healthz reports the loop blocked."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.last_beat = clock()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="async-workers", daemon=True)
        self.thread.start()

    def beat(self) -> None:
        self.loop.call_soon_threadsafe(self._mark)

    def _mark(self) -> None:
        self.last_beat = self.clock()

    def problem(self) -> str | None:
        if not self.thread.is_alive():
            return "event loop not running"
        stalled = self.clock() - self.last_beat
        return f"event loop blocked for {stalled:.0f}s" if stalled >= STUCK_AFTER_SECONDS else None

    def submit(self, coro: Any) -> concurrent.futures.Future:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
