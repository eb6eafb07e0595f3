"""Reusable daemon threads for sync worker functions, never fewer than the functions running.

A fixed pool cannot serve a runner whose timed-out function hangs: the slot is freed but the thread is
not, so the next task would wait behind it. Here a submission takes an idle thread if there is one and
starts a new one otherwise; a hung thread is simply never idle again. Starting a thread costs about
ten times a hand-over to an idle one, so threads are kept rather than started per task. Daemon
threads: a hung function never keeps the process from exiting.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class GrowingThreadPool:
    def __init__(self, name: str) -> None:
        self.name = name
        self._work: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...]]] = queue.SimpleQueue()
        self._lock = threading.Condition()
        self._idle = 0  # threads that will take the next item without a new one being started
        self.started = 0

    def submit(self, func: Callable[..., Any], *args: Any) -> None:
        """Run func(*args) on a thread; an exception it raises is its own to handle (it is only logged)."""
        with self._lock:
            reuse = self._idle > 0
            if reuse:
                self._idle -= 1
            else:
                self.started += 1
                number = self.started
        self._work.put((func, args))
        if not reuse:
            threading.Thread(target=self._serve, name=f"{self.name}-{number}", daemon=True).start()

    def _serve(self) -> None:
        while True:
            func, args = self._work.get()
            try:
                func(*args)
            except BaseException:  # callers report their own failures; the thread lives on
                log.exception("uncaught in a %s thread", self.name)
            with self._lock:
                self._idle += 1
                self._lock.notify_all()

    def wait_idle(self, count: int, timeout: float) -> bool:
        """Wait until `count` threads are idle (for tests and shutdown)."""
        with self._lock:
            return self._lock.wait_for(lambda: self._idle >= count, timeout)
