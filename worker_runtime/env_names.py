"""The environment variable names and task-variable forms that the operator, the runtime and the sidecar
share (and the Conductor SDKs' forms the operator writes for other workers).

Why one module: the operator writes these names into pods and the runtime and the sidecar read them; a
name spelled in two places drifts (a renamed variable would silently stop configuring the pods).
"""

from __future__ import annotations

import re

# Every SDK, the runtime and the sidecar
SERVER_URL = "CONDUCTOR_SERVER_URL"  # the API base; all accept it ending in /api
AUTH_KEY = "CONDUCTOR_AUTH_KEY"
AUTH_SECRET = "CONDUCTOR_AUTH_SECRET"
POD_NAME = "POD_NAME"  # the worker id (Go and JavaScript workers use the host name, which is the same)
POD_NAMESPACE = "POD_NAMESPACE"

# The runtime (`conductor-worker run`)
METRICS_PORT = "CONDUCTOR_WORKER_METRICS_PORT"
METRICS_HOST = "CONDUCTOR_WORKER_METRICS_HOST"
DRAIN_TIMEOUT = "CONDUCTOR_WORKER_DRAIN_TIMEOUT"
MAX_RESULT_BYTES = "CONDUCTOR_WORKER_MAX_RESULT_BYTES"
JSON_LOGS = "CONDUCTOR_WORKER_JSON_LOGS"
LOG_LEVEL = "CONDUCTOR_WORKER_LOG_LEVEL"
MODULES = "CONDUCTOR_WORKER_MODULES"
PATH = "CONDUCTOR_WORKER_PATH"
TASKS = "CONDUCTOR_WORKER_TASKS"
TASK_SETTINGS = "CONDUCTOR_WORKER_TASK_SETTINGS"  # JSON {task name: {property: value}}, exact names

# The sidecar (`conductor-worker sidecar`)
SIDECAR_PORT = "CONDUCTOR_SIDECAR_PORT"
SIDECAR_TASKS = "CONDUCTOR_SIDECAR_TASKS"  # JSON [{name, domain?, concurrency?}]

# The keys of spec.conductor.authSecretRef's Secret unless keyIdKey/keySecretKey say otherwise
SECRET_KEY_ID = "keyId"
SECRET_KEY_SECRET = "keySecret"

# ConductorWorker spec.tasks[] field -> the runtime's property (the Python SDK's names)
RUNTIME_TASK_PROPS = (
    ("concurrency", "thread_count"),
    ("pollIntervalMs", "poll_interval"),
    ("pollTimeoutMs", "poll_timeout"),
    ("domain", "domain"),
    ("batchSize", "batch_size"),
    ("paused", "paused"),
)


def sanitized(task: str) -> str:
    """A task name as an env key part: non-alphanumerics become '_', upper-cased (GET_INVENTORY)."""
    return re.sub(r"[^A-Za-z0-9]", "_", task).upper()


def upper_underscore(task: str, prop: str) -> str:
    """CONDUCTOR_WORKER_GET_INVENTORY_THREAD_COUNT: the runtime's own form and the Go example's."""
    return f"CONDUCTOR_WORKER_{sanitized(task)}_{prop.upper()}"


def upper_verbatim(task: str, prop: str) -> str:
    """CONDUCTOR_WORKER_GET-INVENTORY_CONCURRENCY: the name upper-cased as it is (JavaScript, Python SDKs)."""
    return f"CONDUCTOR_WORKER_{task.upper()}_{prop.upper()}"


def dotted(task: str, prop: str) -> str:
    """conductor.worker.get-inventory.threadCount: the Java client's and the Python SDK's property names."""
    return f"conductor.worker.{task}.{prop}"
