"""The shared Conductor worker runtime: write @worker_task functions, run them with TaskHandler or the CLI."""

from worker_runtime.client import ConductorClient, ConductorError
from worker_runtime.context import TaskContext, get_task_context
from worker_runtime.handler import TaskHandler
from worker_runtime.model import NonRetryableError, Task, TaskInProgress, TaskResult, TaskStatus
from worker_runtime.tasks import TaskManager
from worker_runtime.worker import worker_task

__all__ = [
    "ConductorClient",
    "ConductorError",
    "NonRetryableError",
    "Task",
    "TaskContext",
    "TaskHandler",
    "TaskInProgress",
    "TaskManager",
    "TaskResult",
    "TaskStatus",
    "get_task_context",
    "worker_task",
]
