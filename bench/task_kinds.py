"""The benchmark's task functions, one copy for every Python contender (runtime, SDK, bare loop).

The task types are named by the environment, so every run polls fresh queues:
BENCH_TASKS="name:kind,name:kind" with kind `noop` (return at once) or `sleep10` (sleep 10 ms).
No imports beyond the standard library: each contender loads this from its own virtualenv.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable


def noop() -> dict:
    return {"ok": True}


def sleep10() -> dict:
    time.sleep(0.010)
    return {"ok": True}


KINDS: dict[str, Callable[[], dict]] = {"noop": noop, "sleep10": sleep10}


def bench_tasks() -> list[tuple[str, Callable[[], dict]]]:
    """(task type, function) for each BENCH_TASKS entry."""
    pairs = []
    for entry in filter(None, os.environ.get("BENCH_TASKS", "").split(",")):
        name, _, kind = entry.partition(":")
        pairs.append((name, KINDS[kind]))
    return pairs
