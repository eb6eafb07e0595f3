"""The operator's settings in one object: read from the environment once (in `main`), passed on as an argument.

Why one object: the Helm chart sets the environment, the CLI flags override it, and everything below
`main` (handlers, controller, builders) gets the result as a value, so nothing else reads `os.environ`
and a test builds the settings it wants instead of patching the environment.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_WORKER_IMAGE = "conductor-worker-runtime:0.1.0"  # as the chart names it (workerImage)


@dataclass(frozen=True)
class Config:
    """Each field: its flag / environment variable, then what it is for."""

    namespaces: tuple[str, ...] = ()
    """--namespace (repeatable) / WATCH_NAMESPACES (comma list): namespaces to watch, globs allowed."""
    all_namespaces: bool = True
    """--all-namespaces: watch the whole cluster; true whenever no namespace is given."""
    standalone: bool = False
    """--standalone / CWO_STANDALONE=1: no peering (a single replica, or a test)."""
    peering: str | None = None
    """--peering / CWO_PEERING: KopfPeering name; only the highest-priority replica acts (kopf.dev CRDs)."""
    priority: int = 0
    """--priority / CWO_PRIORITY: peering priority; random by default, since replicas of one Deployment
    need distinct ones or kopf lets all of them act."""
    peering_lifetime: int = 60
    """CWO_PEERING_LIFETIME: seconds a replica's peering record stays valid unless renewed; after the
    active replica dies, a standby acts within this time (kopf renews it 10 s before it ends)."""
    liveness: str = "http://0.0.0.0:8081/healthz"
    """--liveness / CWO_LIVENESS: kopf's liveness endpoint URL ('' disables it)."""
    metrics_port: int = 8080
    """--metrics-port / CWO_METRICS_PORT: the operator's own Prometheus port (0 disables it)."""
    metrics_host: str = "0.0.0.0"
    """--metrics-host / CWO_METRICS_HOST: the address the metrics endpoint listens on."""
    verbose: bool = False
    """--verbose: kopf's DEBUG logging (every API request: costs CPU at scale)."""
    log_format: str = "full"
    """--log-format / CWO_LOG_FORMAT: plain, full or json."""
    resync_seconds: float = 60.0
    """CWO_RESYNC_SECONDS: interval of the drift-correction and status loop of a ConductorWorker without
    autoscaling (with it, spec.autoscaling.pollingIntervalSeconds). A safety net: edits and deletions of
    the Deployment and its rollout wake the loop at once; the Secret and CRD checks wait for it."""
    max_workers: int = 32
    """CWO_MAX_WORKERS: threads for kopf's sync handlers and for the per-object loop steps; the API
    client's connection pool is sized to match, or urllib3 discards connections under load."""
    watch_server_timeout: int = 300
    """CWO_WATCH_SERVER_TIMEOUT: seconds the API server keeps a watch open before kopf re-lists."""
    default_worker_image: str = DEFAULT_WORKER_IMAGE
    """CWO_DEFAULT_WORKER_IMAGE: the runtime image of a python ConductorWorker without spec.image."""
    secret_ttl_seconds: float = 60.0
    """CWO_SECRET_TTL_SECONDS: how long a complete authSecretRef Secret is reused before it is read again
    (a rotated key reaches the queue-depth calls within this time; a missing one is read at every step)."""
    activation_poll_seconds: float = 1.0
    """CWO_ACTIVATION_POLL_SECONDS: how often a fleet at zero replicas looks at its queues between
    evaluations (0: only at its pollingIntervalSeconds). Cheap: one queue-size request per Conductor server
    and period, shared by every ConductorWorker; a changed backlog runs a full evaluation at once, so the
    first pod starts about a second after the first task, not up to one polling interval later."""
    kubeconfig: str | None = None
    """KUBECONFIG: the kubeconfig used outside a cluster (in a pod, the in-cluster credentials win)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Config:
        """The settings the environment gives (defaults for what it does not)."""
        d = cls()
        namespaces = tuple(n.strip() for n in env.get("WATCH_NAMESPACES", "").split(",") if n.strip())
        return cls(
            namespaces=namespaces,
            all_namespaces=not namespaces,
            standalone=env.get("CWO_STANDALONE") == "1",
            peering=env.get("CWO_PEERING") or None,
            priority=_number(env, "CWO_PRIORITY", int, random.randint(1, 1_000_000)),
            peering_lifetime=_number(env, "CWO_PEERING_LIFETIME", int, d.peering_lifetime),
            liveness=env.get("CWO_LIVENESS", d.liveness),
            metrics_port=_number(env, "CWO_METRICS_PORT", int, d.metrics_port),
            metrics_host=env.get("CWO_METRICS_HOST") or d.metrics_host,
            log_format=env.get("CWO_LOG_FORMAT") or d.log_format,
            resync_seconds=_number(env, "CWO_RESYNC_SECONDS", float, d.resync_seconds),
            max_workers=_number(env, "CWO_MAX_WORKERS", int, d.max_workers),
            watch_server_timeout=_number(env, "CWO_WATCH_SERVER_TIMEOUT", int, d.watch_server_timeout),
            default_worker_image=env.get("CWO_DEFAULT_WORKER_IMAGE") or d.default_worker_image,
            secret_ttl_seconds=_number(env, "CWO_SECRET_TTL_SECONDS", float, d.secret_ttl_seconds),
            activation_poll_seconds=_number(env, "CWO_ACTIVATION_POLL_SECONDS", float, d.activation_poll_seconds),
            kubeconfig=env.get("KUBECONFIG") or None,
        )


def _number(env: Mapping[str, str], var: str, kind: type, default: Any) -> Any:
    """A numeric setting; a value that is no number is a ValueError naming the variable."""
    raw = env.get(var)
    if not raw:
        return default
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"{var}={raw!r} is not a number") from None
