"""A test worker image's module: one sleeping worker per task type named in CWO_SLEEP_TASKS.

Integration tests and benchmarks give each run its own task types (so no queue is shared between
tests); the names arrive by environment because the image is built once for all of them.
"""

from __future__ import annotations

import os
import time

from worker_runtime import worker_task


def _sleeper(task: str):
    @worker_task(task_definition_name=task, thread_count=4)
    def sleep(millis: int = 300) -> dict:
        time.sleep(millis / 1000)
        return {"slept_ms": millis, "pod": os.environ.get("HOSTNAME", "")}

    return sleep


WORKERS = [_sleeper(name.strip()) for name in os.environ.get("CWO_SLEEP_TASKS", "").split(",") if name.strip()]
