"""The benchmark's task functions for this project's runtime (`conductor-worker run --module bench_workers`).

The functions and BENCH_TASKS="name:kind,..." are task_kinds.py's, shared with the other contenders.
"""

from __future__ import annotations

from task_kinds import bench_tasks

from worker_runtime import worker_task

for name, func in bench_tasks():
    worker_task(task_definition_name=name)(func)
