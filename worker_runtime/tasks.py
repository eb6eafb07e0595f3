"""Task management API: read and update tasks outside the poll loop (e.g. from a webhook handler)."""

from __future__ import annotations

from typing import Any

from worker_runtime.client import ConductorClient
from worker_runtime.model import Task, TaskResult, TaskStatus


class TaskManager:
    def __init__(self, client: ConductorClient | None = None) -> None:
        self.client = client or ConductorClient()

    def get_task(self, task_id: str) -> Task:
        return Task(self.client.get_task(task_id))

    def update_task(
        self,
        task_id: str,
        workflow_id: str,
        status: TaskStatus | str,
        output: dict[str, Any] | None = None,
        reason: str | None = None,
        worker_id: str = "",
    ) -> str:
        """Update a task by its id (the task need not have been polled by this process)."""
        result = TaskResult(
            status=TaskStatus(status),
            output_data=output or {},
            reason_for_incompletion=reason,
            task_id=task_id,
            workflow_instance_id=workflow_id,
            worker_id=worker_id,
        )
        return self.client.update_task(result.to_json())

    def update_task_by_ref_name(
        self,
        workflow_id: str,
        task_ref_name: str,
        status: TaskStatus | str,
        output: dict[str, Any] | None = None,
        worker_id: str | None = None,
    ) -> str:
        """Complete (or fail) a task found by workflow id + reference name, no task id needed."""
        return self.client.update_task_by_ref_name(
            workflow_id, task_ref_name, str(TaskStatus(status)), output or {}, worker_id
        )

    def add_log(self, task_id: str, message: str) -> None:
        self.client.add_task_log(task_id, message)
