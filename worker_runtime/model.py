"""The task and task-result shapes exchanged with the Conductor server."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class TaskStatus(StrEnum):
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    FAILED_WITH_TERMINAL_ERROR = "FAILED_WITH_TERMINAL_ERROR"


@dataclass(frozen=True)
class Task:
    """A polled task; `raw` keeps every field the server sent."""

    raw: dict[str, Any]

    @property
    def task_id(self) -> str:
        return self.raw["taskId"]

    @property
    def task_type(self) -> str:
        return self.raw.get("taskType") or self.raw.get("taskDefName", "")

    @property
    def workflow_instance_id(self) -> str:
        return self.raw.get("workflowInstanceId", "")

    @property
    def reference_task_name(self) -> str:
        return self.raw.get("referenceTaskName", "")

    @property
    def input_data(self) -> dict[str, Any]:
        return self.raw.get("inputData") or {}

    @property
    def retry_count(self) -> int:
        return int(self.raw.get("retryCount") or 0)

    @property
    def poll_count(self) -> int:
        return int(self.raw.get("pollCount") or 0)

    @property
    def callback_after_seconds(self) -> int:
        return int(self.raw.get("callbackAfterSeconds") or 0)

    @property
    def domain(self) -> str | None:
        return self.raw.get("domain")


@dataclass
class TaskResult:
    """What a worker reports; return one from a worker function for full control."""

    status: TaskStatus = TaskStatus.COMPLETED
    output_data: dict[str, Any] = field(default_factory=dict)
    reason_for_incompletion: str | None = None
    callback_after_seconds: int = 0
    logs: list[str] = field(default_factory=list)
    task_id: str = ""
    workflow_instance_id: str = ""
    worker_id: str = ""

    def to_json(self) -> dict[str, Any]:
        now = int(time.time() * 1000)
        body: dict[str, Any] = {
            "taskId": self.task_id,
            "workflowInstanceId": self.workflow_instance_id,
            "workerId": self.worker_id,
            "status": str(self.status),
            "outputData": self.output_data,
            "callbackAfterSeconds": self.callback_after_seconds,
            "logs": [{"log": line, "taskId": self.task_id, "createdTime": now} for line in self.logs],
        }
        if self.reason_for_incompletion:
            body["reasonForIncompletion"] = self.reason_for_incompletion
        return body


@dataclass
class TaskInProgress:
    """Return this to keep the task IN_PROGRESS; the server hands it back after the callback delay."""

    callback_after_seconds: int
    output: dict[str, Any] = field(default_factory=dict)


class NonRetryableError(Exception):
    """Raise (or subclass) to fail the task with FAILED_WITH_TERMINAL_ERROR: the server will not retry."""
