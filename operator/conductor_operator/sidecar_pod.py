"""The Conductor sidecar in a worker pod of another SDK (pure): its container, and what it changes in the
worker container (server URL, no credentials, the preStop drain) and in the pod (shared PID namespace).

Why a sidecar: an unmodified SDK worker does not read the ConductorWorker's domain or concurrency, may
export no busy slots, and does not finish its tasks on SIGTERM. The sidecar (worker_runtime/sidecar/)
does all of that from outside the worker, so every SDK is scaled in without losing a task.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from conductor_operator.config import Config
from conductor_operator.sdk_env import auth_env
from worker_runtime import env_names

NAME = "conductor-sidecar"
PROXY_PORT = 7700  # on the pod's loopback only: the worker's server URL
METRICS_PORT = 7701  # /metrics, /healthz, /readyz, /drain
PORT_NAME = "sidecar-metrics"  # not "metrics": a user's worker container may already use that name
SERVER_URL = f"http://127.0.0.1:{PROXY_PORT}/api"
IMAGE_USER = 10001  # the runtime image's user
DEFAULT_RESOURCES = {"requests": {"cpu": "10m", "memory": "48Mi"}, "limits": {"memory": "160Mi"}}


def settings(spec: dict[str, Any]) -> dict[str, Any]:
    return spec.get("sidecar") or {}


def enabled(spec: dict[str, Any], runtime: bool) -> bool:
    """Every pod of another SDK gets one unless spec.sidecar.enabled is false (the runtime needs none)."""
    return not runtime and bool(settings(spec).get("enabled", True))


def tasks_json(spec: dict[str, Any]) -> str:
    """CONDUCTOR_SIDECAR_TASKS: each task's domain and concurrency, as the sidecar enforces them."""
    out = []
    for task in spec.get("tasks") or []:
        item: dict[str, Any] = {"name": task["name"]}
        if task.get("domain"):
            item["domain"] = task["domain"]
        if task.get("concurrency"):
            item["concurrency"] = int(task["concurrency"])
        out.append(item)
    return json.dumps(out, separators=(",", ":"))


def container(spec: dict[str, Any], config: Config, drain_seconds: int, security: dict[str, Any]) -> dict[str, Any]:
    """A native sidecar (an init container that keeps running): started before the worker, stopped
    after it, so it is there for the worker's last updates and the preStop drain."""
    conductor = spec.get("conductor") or {}
    env: list[dict[str, Any]] = [
        {"name": env_names.SERVER_URL, "value": conductor["serverUrl"]},
        {"name": env_names.SIDECAR_TASKS, "value": tasks_json(spec)},
        {"name": env_names.POD_NAME, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "HOST_IPS", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
    ]
    env += auth_env(conductor.get("authSecretRef"))
    probe = {"httpGet": {"path": "/healthz", "port": PORT_NAME}, "periodSeconds": 10, "timeoutSeconds": 2}
    return {
        "name": NAME,
        "image": settings(spec).get("image") or config.default_worker_image,
        "imagePullPolicy": spec.get("imagePullPolicy") or "IfNotPresent",
        "restartPolicy": "Always",
        "command": ["conductor-worker"],
        "args": [
            "sidecar",
            "--port",
            str(PROXY_PORT),
            "--metrics-port",
            str(METRICS_PORT),
            "--drain-timeout",
            str(drain_seconds),
            "--json-logs",
        ],
        "env": env,
        "ports": [{"name": PORT_NAME, "containerPort": METRICS_PORT, "protocol": "TCP"}],
        "startupProbe": {**probe, "periodSeconds": 1, "failureThreshold": 30},
        "livenessProbe": {**probe, "failureThreshold": 3},
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": PORT_NAME},
            "periodSeconds": 5,
            "timeoutSeconds": 2,
            "failureThreshold": 2,
        },
        "resources": copy.deepcopy(settings(spec).get("resources") or DEFAULT_RESOURCES),
        "securityContext": {
            **security,
            "runAsNonRoot": True,
            "runAsUser": IMAGE_USER,
            "runAsGroup": IMAGE_USER,
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }


def pre_stop() -> dict[str, Any]:
    """The worker container's preStop: the kubelet asks the sidecar to drain, so the worker gets SIGTERM
    only once the pod holds no task (or the drain timeout passed)."""
    return {"preStop": {"httpGet": {"path": "/drain", "port": METRICS_PORT}}}
