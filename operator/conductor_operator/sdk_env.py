"""The env of a worker container, in the configuration conventions of the SDK it was written with.

Why per SDK: an unmodified SDK worker reads its server, credentials and per-task settings only under its
own names, and each SDK spells them differently (`THREAD_COUNT` vs `CONCURRENCY` vs `threadCount`; the
task name upper-cased with '-' kept, or with '_'; dotted property names). Each row below was read in the
SDK's source and proved with the examples' real workers against a real Conductor (thread count and
domain from this env; see examples/README.md). Where an SDK has no convention, the example reads a
variable itself, and `Convention.read_by` says so.

Credentials are only ever secretKeyRef entries: the operator never sees or copies their values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from worker_runtime.env_names import (
    AUTH_KEY,
    AUTH_SECRET,
    METRICS_PORT,
    POD_NAME,
    SECRET_KEY_ID,
    SECRET_KEY_SECRET,
    SERVER_URL,
    dotted,
    upper_underscore,
    upper_verbatim,
)

# The task settings a ConductorWorker gives (its spec.tasks[] field names) and what they mean.
TASK_FIELDS = ("concurrency", "domain", "pollIntervalMs")


@dataclass(frozen=True)
class Convention:
    """How one SDK (or its example, where the SDK has none) takes its configuration from the environment."""

    sdk: str
    version: str  # the version whose source and behaviour were checked
    task_var: Callable[[str, str], str]
    props: Mapping[str, str]  # TASK_FIELDS name -> the SDK's property name
    read_by: Mapping[str, str] = field(default_factory=dict)  # setting -> "sdk" | "example"
    metrics_port: int = 8000  # the port the worker serves /metrics on unless METRICS_PORT says otherwise
    metrics_path: str = "/metrics"
    notes: str = ""


CONVENTIONS: dict[str, Convention] = {
    "python": Convention(
        sdk="this project's worker runtime (conductor-worker)",
        version="0.1.0",
        task_var=upper_underscore,
        props={"concurrency": "THREAD_COUNT", "domain": "DOMAIN", "pollIntervalMs": "POLL_INTERVAL"},
        read_by=dict.fromkeys(("server", "auth", *TASK_FIELDS, "metrics_port"), "sdk"),
        metrics_port=8000,
        notes="the Python SDK's names; also reads conductor.worker.<task>.<prop> and CONDUCTOR_WORKER_ALL_<PROP>",
    ),
    "go": Convention(
        sdk="github.com/conductor-sdk/conductor-go",
        version="v1.6.1",
        task_var=upper_underscore,
        props={"concurrency": "BATCH_SIZE", "domain": "DOMAIN", "pollIntervalMs": "POLL_INTERVAL"},
        read_by={"server": "sdk", "auth": "sdk", **dict.fromkeys((*TASK_FIELDS, "metrics_port"), "example")},
        metrics_port=2112,
        notes=(
            "client.NewAPIClientFromEnv reads the server and key/secret; the SDK has no per-task variables "
            "(batch size = concurrent tasks, domain and poll interval are worker options), so "
            "examples/go reads these and passes them as worker.WithBatchSize/WithDomain/WithPollInterval"
        ),
    ),
    "javascript": Convention(
        sdk="@io-orkes/conductor-javascript",
        version="4.0.0",
        task_var=upper_verbatim,
        props={"concurrency": "CONCURRENCY", "domain": "DOMAIN", "pollIntervalMs": "POLL_INTERVAL"},
        read_by={**dict.fromkeys(("server", "auth", *TASK_FIELDS), "sdk"), "metrics_port": "example"},
        metrics_port=9090,
        notes=(
            "TaskHandler applies CONDUCTOR_WORKER_<TASK>_<PROP> only to @worker-decorated workers, not to "
            "objects passed in `workers`; WORKER_CANONICAL_METRICS=true switches to the shared metric names"
        ),
    ),
    "java": Convention(
        sdk="io.orkes.conductor:orkes-conductor-client (org.conductoross:conductor-client)",
        version="4.0.8",
        task_var=dotted,
        props={"concurrency": "threadCount", "domain": "domain", "pollIntervalMs": "pollInterval"},
        read_by={"server": "sdk", "auth": "sdk", **dict.fromkeys((*TASK_FIELDS, "metrics_port"), "example")},
        metrics_port=9991,
        notes=(
            "useEnvVariables(true) reads the server (and, in the Orkes builder, key/secret); the client reads "
            "conductor.worker.<task>.<prop> only from a classpath file and its Spring module from the Spring "
            "environment, which takes these exact variable names; examples/java reads them itself"
        ),
    ),
}


def secret_keys(ref: Mapping[str, Any]) -> tuple[str, str]:
    """The key id's and the key secret's names in the Secret spec.conductor.authSecretRef names."""
    return ref.get("keyIdKey") or SECRET_KEY_ID, ref.get("keySecretKey") or SECRET_KEY_SECRET


def auth_env(ref: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """CONDUCTOR_AUTH_KEY/_SECRET as secretKeyRefs (every SDK, the runtime and the sidecar read these)."""
    if not ref:
        return []
    key_id, key_secret = secret_keys(ref)
    return [
        {"name": AUTH_KEY, "valueFrom": {"secretKeyRef": {"name": ref["name"], "key": key_id}}},
        {"name": AUTH_SECRET, "valueFrom": {"secretKeyRef": {"name": ref["name"], "key": key_secret}}},
    ]


def env_value(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def sdk_env(
    sdk: str,
    tasks: Iterable[Mapping[str, Any]],
    server_url: str,
    auth_secret_ref: Mapping[str, Any] | None = None,
    metrics_port: int | None = None,
) -> list[dict[str, Any]]:
    """Kubernetes EnvVar dicts for a worker of `sdk` serving `tasks` (ConductorWorker spec.tasks[] items).

    `auth_secret_ref` is spec.conductor.authSecretRef ({name, keyIdKey?, keySecretKey?}; keys default to
    keyId/keySecret). Unset task fields add nothing, so the worker's own defaults stay in force.
    """
    try:
        conv = CONVENTIONS[sdk]
    except KeyError:
        raise ValueError(f"unknown sdk {sdk!r}: one of {', '.join(CONVENTIONS)}") from None
    env: list[dict[str, Any]] = [
        {"name": SERVER_URL, "value": server_url},
        {"name": POD_NAME, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]
    env += auth_env(auth_secret_ref)
    env.append({"name": METRICS_PORT, "value": str(metrics_port or conv.metrics_port)})
    for task in tasks:
        for spec_field in TASK_FIELDS:
            value = task.get(spec_field)
            if value is None or value == "":
                continue
            env.append({"name": conv.task_var(task["name"], conv.props[spec_field]), "value": env_value(value)})
    return env
