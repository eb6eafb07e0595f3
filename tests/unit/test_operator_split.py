"""The pieces split out of the controller: Secret reads (kube), pod-deletion-cost (deletion_cost), the
status assembly and its Events (status)."""

from __future__ import annotations

import base64

import pytest

from conductor_operator.deletion_cost import DELETION_COST, deletion_costs, protect_busy_pods
from conductor_operator.kube import auth_secret, conductor_credentials
from conductor_operator.observe import PodMetrics, ScrapeResult, parse_metrics
from conductor_operator.status import Problem, assemble_status, problem_events


class Secrets:
    def __init__(self, data: dict[str, dict[str, str]]) -> None:
        self.data = data

    def secret_data(self, namespace: str, name: str, keys: tuple[str, ...] = ()) -> dict[str, str] | None:
        return self.data.get(name)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_credentials_come_from_the_referenced_secret_with_its_key_names():
    ref = {"name": "creds", "keyIdKey": "id", "keySecretKey": "secret"}
    spec = {"conductor": {"authSecretRef": ref}}
    kube = Secrets({"creds": {"id": b64("k"), "secret": b64("s")}})
    assert conductor_credentials(kube, spec, "ns") == ("k", "s")
    assert auth_secret(kube, spec, "ns") == {"id": b64("k"), "secret": b64("s")}
    assert conductor_credentials(kube, {}, "ns") == (None, None) and auth_secret(kube, {}, "ns") is None
    with pytest.raises(KeyError, match="not found"):
        conductor_credentials(Secrets({}), spec, "ns")


def pod(name: str, cost: str | None = None) -> dict:
    meta: dict = {"name": name}
    if cost is not None:
        meta["annotations"] = {DELETION_COST: cost}
    return {"metadata": meta}


def metrics(busy: int) -> PodMetrics:
    text = f'worker_busy_slots{{taskType="t"}} {busy}\nworker_slot_capacity{{taskType="t"}} 4\n'
    return parse_metrics(text)


def test_idle_pods_cost_nothing_busy_ones_100_per_slot_and_unchanged_ones_are_not_patched():
    scrape = ScrapeResult({"busy": metrics(3), "idle": metrics(0), "same": metrics(1)}, {})
    pods = [pod("busy"), pod("idle", "300"), pod("same", "100"), pod("unscraped")]
    assert deletion_costs(pods, scrape) == {"busy": "300", "idle": "0", "unscraped": "0"}

    class Patcher:
        def __init__(self) -> None:
            self.calls: list[tuple[str, dict]] = []

        def merge_patch(self, api_version, kind, namespace, name, patch):
            self.calls.append((name, patch))
            if name == "unscraped":
                raise RuntimeError("gone")  # best effort: the others are still patched

    patcher = Patcher()
    protect_busy_pods(patcher, "ns", pods, scrape)
    assert [n for n, _ in patcher.calls] == ["busy", "idle", "unscraped"]
    assert patcher.calls[0][1] == {"metadata": {"annotations": {DELETION_COST: "300"}}}


def test_problem_events_only_on_change():
    a, b = Problem("A", "a broke"), Problem("B", "b broke")
    assert problem_events((), [a]) == [("Warning", "A", "a broke")]
    assert problem_events(("A",), [a, b]) == [("Warning", "B", "b broke")]
    assert problem_events(("A",), [a]) == []
    assert problem_events(("A", "B"), []) == [("Normal", "Recovered", "no configuration problem left")]


def test_assembled_status_without_autoscaling_clears_queue_numbers_and_keeps_transition_times():
    body = {
        "metadata": {"name": "orders", "namespace": "ns", "generation": 2},
        "spec": {"tasks": [{"name": "t"}], "replicas": 2},
        "status": {"conditions": [{"type": "Active", "status": "True", "lastTransitionTime": "T0"}]},
    }
    deployment = {"status": {"replicas": 2, "readyReplicas": 2, "updatedReplicas": 2}}
    status = assemble_status(
        body, desired=2, deployment=deployment, problems=[], auto=None, spec_hash="h", last_active=None, now="T1"
    )
    assert status["queueDepth"] is None and status["lastDecisionReason"] == "autoscaling disabled: spec.replicas"
    conds = {c["type"]: c for c in status["conditions"]}
    assert conds["Ready"]["status"] == "True" and conds["Active"]["lastTransitionTime"] == "T0"
    assert (status["observedGeneration"], status["specHash"], status["taskNames"]) == (2, "h", "t")


def test_resource_of_an_api_path():
    from conductor_operator.kube import resource_of

    assert resource_of("/apis/apps/v1/namespaces/ns/deployments/w") == "deployments"
    assert resource_of("/api/v1/namespaces/ns/pods") == "pods"
    assert resource_of("/apis/conductor.io/v1alpha1/namespaces/ns/conductorworkers/w/status") == (
        "conductorworkers/status"
    )
    assert resource_of("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/x.y") == "customresourcedefinitions"
