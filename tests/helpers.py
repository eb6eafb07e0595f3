"""Small helpers shared by the integration tests (waiting, Conductor fixtures of definitions)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll until predicate() is truthy; fail saying what was awaited and the last value seen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def task_def(name: str, retry_count: int = 0, response_timeout: int = 60, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "retryCount": retry_count,
        "retryLogic": "FIXED",
        "retryDelaySeconds": 0,
        "timeoutSeconds": 0,
        "responseTimeoutSeconds": response_timeout,
        "ownerEmail": "tests@example.com",
        **extra,
    }


def linear_workflow(
    name: str, steps: list[tuple[str, str, dict[str, Any]]], output: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A workflow of SIMPLE tasks run one after the other: steps are (task, ref, inputParameters)."""
    return {
        "name": name,
        "version": 1,
        "schemaVersion": 2,
        "ownerEmail": "tests@example.com",
        "tasks": [
            {"name": t, "taskReferenceName": ref, "type": "SIMPLE", "inputParameters": inputs}
            for t, ref, inputs in steps
        ],
        "outputParameters": output or {},
    }


def wait_workflow_done(client, workflow_id: str, timeout: float = 60) -> dict[str, Any]:
    return wait_for(
        lambda: (w := client.get_workflow(workflow_id))["status"] not in ("RUNNING", "PAUSED") and w,
        timeout,
        f"workflow {workflow_id} to finish",
    )


# A minimal ServiceMonitor CRD (the Prometheus Operator's kind) for tests that need the API to exist.
SERVICE_MONITOR_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors, singular: servicemonitor}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec: {type: object, x-kubernetes-preserve-unknown-fields: true}
"""
