"""The children as the operator's watches see them: slim copies of the managed Deployments and worker
pods, kept by kopf indexes and handed to each loop step.

Why: a thousand ConductorWorkers each GETting their Deployment and LISTing their pods every interval is
~100-200 API requests a second for nothing; the watches kopf already runs deliver every change. Slim
copies keep only what the steps read, so 1,000 pods cost little memory.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from conductor_operator.builders import HASH_ANNOTATION, MANAGER
from conductor_operator.deletion_cost import DELETION_COST

MANAGED = {"app.kubernetes.io/managed-by": MANAGER}
INSTANCE_LABEL = "app.kubernetes.io/instance"  # a worker pod's ConductorWorker (builders.selector_labels)


@dataclass(frozen=True)
class Cached:
    """What the watches hold for one ConductorWorker: its Deployment (None: the watch has none) and its
    pods. A step given no Cached reads both from the API server (unit tests)."""

    deployment: dict[str, Any] | None
    pods: list[dict[str, Any]]


def slim_deployment(body: Mapping[str, Any]) -> dict[str, Any]:
    """The fields the steps read: generation and spec-hash annotation (drift), replicas, status."""
    meta = body.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    return {
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "generation": meta.get("generation"),
            "annotations": {HASH_ANNOTATION: annotations[HASH_ANNOTATION]} if HASH_ANNOTATION in annotations else {},
        },
        "spec": {"replicas": (body.get("spec") or {}).get("replicas")},
        "status": copy.deepcopy(dict(body.get("status") or {})),
    }


def slim_pod(body: Mapping[str, Any]) -> dict[str, Any]:
    """The fields the steps read: name, deletion (Terminating), deletion cost, phase and IP (scrape)."""
    meta = body.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    status = body.get("status") or {}
    slim: dict[str, Any] = {
        "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace")},
        "status": {"phase": status.get("phase"), "podIP": status.get("podIP")},
    }
    if meta.get("deletionTimestamp"):
        slim["metadata"]["deletionTimestamp"] = meta["deletionTimestamp"]
    if DELETION_COST in annotations:
        slim["metadata"]["annotations"] = {DELETION_COST: annotations[DELETION_COST]}
    return slim


def owner_key(body: Mapping[str, Any]) -> tuple[str, str] | None:
    """(namespace, ConductorWorker name) of a worker pod, from its instance label."""
    meta = body.get("metadata") or {}
    owner = (meta.get("labels") or {}).get(INSTANCE_LABEL)
    return (meta.get("namespace"), owner) if owner else None


def snapshot(deployments: Mapping[Any, Any], pods: Mapping[Any, Any], namespace: str, name: str) -> Cached:
    """Detached copies of one ConductorWorker's entries in the two indexes (read on the event loop, used on
    a step thread)."""
    key = (namespace, name)
    found = list(deployments.get(key) or ())
    return Cached(
        deployment=copy.deepcopy(found[0]) if found else None,
        pods=[copy.deepcopy(p) for p in pods.get(key) or ()],
    )
