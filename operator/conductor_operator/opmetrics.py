"""The operator's own Prometheus metrics (served on --metrics-port, default 8080)."""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge

REGISTRY = CollectorRegistry()
_CW = ["namespace", "name"]

QUEUE_DEPTH = Gauge(
    "conductor_operator_queue_depth", "Tasks waiting in a Conductor queue", [*_CW, "queue"], registry=REGISTRY
)
READY_TASKS = Gauge(
    "conductor_operator_ready_tasks",
    "Queued tasks a worker could start now (the autoscaler's backlog; not those waiting out a callback or retry delay)",
    [*_CW, "queue"],
    registry=REGISTRY,
)
DESIRED = Gauge("conductor_operator_desired_replicas", "Replicas the operator wants", _CW, registry=REGISTRY)
CURRENT = Gauge("conductor_operator_current_replicas", "Replicas of the worker Deployment", _CW, registry=REGISTRY)
BUSY = Gauge("conductor_operator_busy_slots", "Busy worker slots seen in the last scrape", _CW, registry=REGISTRY)
CAPACITY = Gauge("conductor_operator_slot_capacity", "Worker slots seen in the last scrape", _CW, registry=REGISTRY)
DECISIONS = Counter(
    "conductor_operator_scale_decisions", "Autoscaler evaluations by outcome", [*_CW, "direction"], registry=REGISTRY
)
SCRAPE_ERRORS = Counter(
    "conductor_operator_scrape_errors", "Worker pod /metrics scrapes that failed", _CW, registry=REGISTRY
)
CONDUCTOR_ERRORS = Counter(
    "conductor_operator_conductor_errors", "Queue-depth requests that failed", _CW, registry=REGISTRY
)
RECONCILES = Counter("conductor_operator_reconciles", "Child applies by result", [*_CW, "result"], registry=REGISTRY)
API_REQUESTS = Counter(
    "conductor_operator_api_requests",
    "Kubernetes API requests of the reconcile and autoscaler steps (not kopf's own watches and patches)",
    ["verb", "resource"],
    registry=REGISTRY,
)


def forget(namespace: str, name: str) -> None:
    """Drop the series of a deleted ConductorWorker."""
    for metric in (DESIRED, CURRENT, BUSY, CAPACITY, SCRAPE_ERRORS, CONDUCTOR_ERRORS):
        with contextlib.suppress(KeyError):
            metric.remove(namespace, name)
    for metric in (QUEUE_DEPTH, READY_TASKS, DECISIONS, RECONCILES):
        for labels in [k for k in list(metric._metrics) if k[:2] == (namespace, name)]:
            metric.remove(*labels)
