"""The benchmark's task functions for this project's runtime (`conductor-worker run --module bench_workers`).

The task types are named by the environment, so every run polls fresh queues:
BENCH_TASKS="name:kind,name:kind" with kind `noop` (return at once) or `sleep10` (sleep 10 ms).
"""

from __future__ import annotations

import os
import time

from worker_runtime import worker_task


def noop() -> dict:
    return {"ok": True}


def sleep10() -> dict:
    time.sleep(0.010)
    return {"ok": True}


KINDS = {"noop": noop, "sleep10": sleep10}

for entry in filter(None, os.environ.get("BENCH_TASKS", "").split(",")):
    name, _, kind = entry.partition(":")
    worker_task(task_definition_name=name)(KINDS[kind])
