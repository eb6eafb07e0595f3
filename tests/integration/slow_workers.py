"""Workers run by the CLI in subprocess tests (imported with --path tests/integration)."""

from __future__ import annotations

import os
import time

from worker_runtime import worker_task

SLOW_TASK = os.environ.get("TEST_SLOW_TASK", "test_slow")


@worker_task(task_definition_name=SLOW_TASK)
def slow(millis: int) -> dict:
    time.sleep(millis / 1000)
    return {"slept": millis, "pid": os.getpid()}
