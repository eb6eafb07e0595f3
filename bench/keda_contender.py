"""What a Conductor user writes to autoscale a worker with KEDA instead of this operator: a Deployment of
the worker image and a ScaledObject whose `metrics-api` trigger reads the task type's queue size from
Conductor (`GET <api>/tasks/queue/sizes?taskType=<t>` answers `{"<t>": N}`). Pure: manifests only.

`defaults` leaves every setting KEDA has a default for unset (pollingInterval 30 s, cooldownPeriod 300 s,
the HPA's 300 s scale-down window), as a first ScaledObject would; `tuned` polls every 5 s, what a user
who cares about latency sets first.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

TUNED_POLLING_INTERVAL = 5
# Characters a GJSON path (the trigger's valueLocation) reads as syntax; a task name can hold them.
_GJSON_SAFE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-:")


def gjson_key(name: str) -> str:
    """A task name as one GJSON path key: `a.b` would otherwise be read as key `b` inside key `a`."""
    return "".join(c if c in _GJSON_SAFE or c <= " " or c > "~" else "\\" + c for c in name)


def queue_size_url(conductor_url: str, task_type: str) -> str:
    """Conductor's queue-size endpoint for one task type; conductor_url is the API base ending in /api."""
    return f"{conductor_url.rstrip('/')}/tasks/queue/sizes?taskType={urllib.parse.quote(task_type, safe='')}"


@dataclass(frozen=True)
class KedaContender:
    """One worker fleet scaled by KEDA. conductor_url is the server as the pods reach it; keda_conductor_url
    as KEDA's operator reaches it (on the local stack KEDA runs on the host, the pods behind the bridge;
    in a cluster both are the same and it may be left None)."""

    name: str
    namespace: str
    image: str
    task_type: str
    conductor_url: str
    max_replicas: int
    keda_conductor_url: str | None = None
    target_queue_per_replica: int = 10
    polling_interval: int | None = None  # None: KEDA's default (30 s)
    cooldown_period: int | None = None  # None: KEDA's default (300 s)
    command: Sequence[str] | None = None
    args: Sequence[str] | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    image_pull_policy: str = "IfNotPresent"

    def deployment(self) -> dict[str, Any]:
        """Starts at zero replicas: KEDA activates it when the first task waits."""
        labels = {"app.kubernetes.io/name": self.name}
        container: dict[str, Any] = {
            "name": "worker",
            "image": self.image,
            "imagePullPolicy": self.image_pull_policy,
            "env": [
                {"name": k, "value": v} for k, v in {"CONDUCTOR_SERVER_URL": self.conductor_url, **self.env}.items()
            ],
        }
        if self.command is not None:
            container["command"] = list(self.command)
        if self.args is not None:
            container["args"] = list(self.args)
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": self.name, "namespace": self.namespace, "labels": dict(labels)},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": dict(labels)},
                "template": {"metadata": {"labels": dict(labels)}, "spec": {"containers": [container]}},
            },
        }

    def scaled_object(self) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": self.name},
            "minReplicaCount": 0,
            "maxReplicaCount": self.max_replicas,
        }
        if self.polling_interval is not None:
            spec["pollingInterval"] = self.polling_interval
        if self.cooldown_period is not None:
            spec["cooldownPeriod"] = self.cooldown_period
        spec["triggers"] = [
            {
                "type": "metrics-api",
                "metricType": "AverageValue",
                "metadata": {
                    "url": queue_size_url(self.keda_conductor_url or self.conductor_url, self.task_type),
                    "format": "json",
                    "valueLocation": gjson_key(self.task_type),
                    "targetValue": str(self.target_queue_per_replica),
                },
            }
        ]
        return {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": spec,
        }

    def manifests(self) -> list[dict[str, Any]]:
        """In apply order: the Deployment first, so the ScaledObject finds its target."""
        return [self.deployment(), self.scaled_object()]


def defaults(**kwargs: Any) -> KedaContender:
    """KEDA as a first ScaledObject configures it: every interval at its default."""
    return KedaContender(**kwargs)


def tuned(**kwargs: Any) -> KedaContender:
    """KEDA with its polling interval lowered to 5 s."""
    return KedaContender(**{"polling_interval": TUNED_POLLING_INTERVAL, **kwargs})
