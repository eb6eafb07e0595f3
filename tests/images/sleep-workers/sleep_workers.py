"""A test worker image's module: one sleeping worker per task type named in CWO_SLEEP_TASKS.

Integration tests and benchmarks give each run its own task types (so no queue is shared between
tests); the names arrive by environment because the image is built once for all of them.
"""

from __future__ import annotations

import os
import time

from worker_runtime import TaskInProgress, get_task_context, worker_task


def _sleeper(task: str):
    @worker_task(task_definition_name=task, thread_count=4)
    def sleep(millis: int = 300, callback_after: int = 0) -> dict | TaskInProgress:
        """callback_after > 0: the first run hands the task back for that many seconds (the README's
        TaskInProgress pattern), the next one sleeps and completes."""
        if callback_after > 0 and get_task_context().poll_count <= 1:
            return TaskInProgress(callback_after_seconds=callback_after, output={"waited_for": callback_after})
        time.sleep(millis / 1000)
        return {"slept_ms": millis, "pod": os.environ.get("HOSTNAME", "")}

    return sleep


WORKERS = [_sleeper(name.strip()) for name in os.environ.get("CWO_SLEEP_TASKS", "").split(",") if name.strip()]
