"""Scaling down without cutting busy workers short: idle pods are made cheaper for the ReplicaSet to delete.

Why an annotation: when a Deployment shrinks, the ReplicaSet controller deletes the pods with the lowest
`controller.kubernetes.io/pod-deletion-cost` first; setting it from the scraped busy slots before the
replica count drops turns "any pod" into "the idlest pods". Side effects of a scale decision live here,
apart from the decision (autoscaler) and the status.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from conductor_operator.observe import ScrapeResult

log = logging.getLogger(__name__)
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
MAX_COST = 1_000_000


class PodPatcher(Protocol):
    def merge_patch(self, api_version: str, kind: str, namespace: str, name: str, patch: dict[str, Any]) -> Any: ...


def deletion_costs(pods: list[dict[str, Any]], scrape: ScrapeResult) -> dict[str, str]:
    """The cost each pod should carry, for the pods whose annotation differs: 100 per busy slot, 0 for an
    idle or unscraped pod."""
    wanted: dict[str, str] = {}
    for pod in pods:
        name = pod["metadata"]["name"]
        cost = "0" if name not in scrape.pods else str(min(MAX_COST, 100 * scrape.pods[name].busy_slots))
        if (pod["metadata"].get("annotations") or {}).get(DELETION_COST) != cost:
            wanted[name] = cost
    return wanted


def protect_busy_pods(kube: PodPatcher, namespace: str, pods: list[dict[str, Any]], scrape: ScrapeResult) -> None:
    """Annotate the pods before a scale-down (best effort: a pod may already be gone)."""
    for name, cost in deletion_costs(pods, scrape).items():
        try:
            kube.merge_patch("v1", "Pod", namespace, name, {"metadata": {"annotations": {DELETION_COST: cost}}})
        except Exception as exc:
            log.debug("pod-deletion-cost on %s: %s", name, exc)
