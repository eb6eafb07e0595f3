"""The Controller's steps against a fake Kubernetes API, a fake Conductor queue source and a fake scraper.

Why fakes: the controller is the glue between kopf, the API server, Conductor and the pods; these tests
pin down what it writes (children, status, Events) for each situation without any server or clock.
"""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from conductor_operator import builders
from conductor_operator.config import Config
from conductor_operator.controller import Controller
from conductor_operator.observe import PodMetrics, ScrapeResult, parse_metrics
from conductor_operator.readiness import Pending, Scan
from conductor_operator.taskdefs import TaskLimits
from conductor_operator.watched import Cached, slim_deployment, slim_pod
from worker_runtime.client import ConductorError

NS = "shop"


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeKube:
    """The Kube methods the controller calls, over a dict of objects; records writes and Events."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.events: list[tuple[str, str, str]] = []
        self.status_patches: list[dict[str, Any]] = []
        self.deleted: list[tuple[str, str]] = []
        self.fail_apply: dict[str, ApiException] = {}  # kind -> error the API server answers
        self.crds: set[str] = set()
        self.secrets: dict[str, dict[str, str]] = {}

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        obj = self.objects.get((kind, namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        kind, meta = manifest["kind"], manifest["metadata"]
        if kind in self.fail_apply:
            raise self.fail_apply[kind]
        key = (kind, meta["namespace"], meta["name"])
        old = self.objects.get(key)
        new = copy.deepcopy(manifest)
        generation = (old or {}).get("metadata", {}).get("generation", 0)
        if old is None or old.get("spec") != new.get("spec"):
            generation += 1
        new["metadata"]["generation"] = generation
        new["status"] = copy.deepcopy((old or {}).get("status") or {})
        self.objects[key] = new
        return copy.deepcopy(new)

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        self.deleted.append((kind, name))
        return self.objects.pop((kind, namespace, name), None) is not None

    def list(self, api_version: str, kind: str, namespace: str, selector: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(o) for (k, ns, _), o in self.objects.items() if k == kind and ns == namespace]

    def merge_patch(self, api_version: str, kind: str, namespace: str, name: str, patch: dict[str, Any]) -> Any:
        obj = self.objects[(kind, namespace, name)]
        obj["metadata"].setdefault("annotations", {}).update(patch["metadata"]["annotations"])
        return obj

    def patch_status(self, namespace: str, name: str, status: dict[str, Any], kind: str = "ConductorWorker") -> Any:
        if kind != "ConductorWorker":
            self.objects[(kind, namespace, name)]["status"] = copy.deepcopy(status)
            return status
        self.status_patches.append(copy.deepcopy(status))
        return status

    def crd_installed(self, name: str, ttl: float = 30.0) -> bool:
        return name in self.crds

    def secret_data(self, namespace: str, name: str, keys: tuple[str, ...] = ()) -> dict[str, str] | None:
        return self.secrets.get(name)

    def event(self, owner: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))

    # -- test helpers ----------------------------------------------------------------------------

    def deployment(self, name: str = "orders") -> dict[str, Any] | None:
        return self.objects.get(("Deployment", NS, name))

    def add_pod(self, name: str, ip: str, terminating: bool = False) -> None:
        meta: dict[str, Any] = {"name": name, "namespace": NS, "labels": builders.selector_labels("orders")}
        if terminating:
            meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        self.objects[("Pod", NS, name)] = {"metadata": meta, "status": {"phase": "Running", "podIP": ip}}


def api_error(status: int, reason: str, message: str) -> ApiException:
    exc = ApiException(status=status, reason=reason)
    exc.body = json.dumps({"kind": "Status", "status": "Failure", "reason": reason, "message": message})
    return exc


class FakeQueues:
    """QueueDepthSource stand-in: depths per queue key, or an error for every read; records who was asked
    with which credentials."""

    def __init__(self, depths: dict[str, int] | None = None) -> None:
        self.depths_by_queue = depths or {}
        self.error: Exception | None = None
        self.calls = 0
        self.asked: list[tuple[str, str | None, str | None]] = []

    def depths(self, url, queues, max_age, key_id=None, key_secret=None, now=None) -> dict[str, int]:
        self.calls += 1
        self.asked.append((url, key_id, key_secret))
        if self.error is not None:
            raise self.error
        return {(f"{d}:{t}" if d else t): self.depths_by_queue.get(f"{d}:{t}" if d else t, 0) for t, d in queues}

    def close(self) -> None:
        pass


class FakeScraper:
    """Scraper stand-in: pod name -> PodMetrics or a /metrics page (read with the real parser and the slots
    the controller passes), or a scrape error for the pods named in `errors`."""

    def __init__(self) -> None:
        self.metrics: dict[str, PodMetrics] = {}
        self.pages: dict[str, str] = {}
        self.errors: set[str] = set()
        self.targets: dict[str, str] = {}
        self.slots: dict[str, int] | None = None
        self.calls = 0

    def scrape(self, targets: dict[str, str], slots: dict[str, int] | None = None) -> ScrapeResult:
        self.calls += 1
        self.targets, self.slots = dict(targets), slots
        self.metrics.update({n: parse_metrics(text, slots) for n, text in self.pages.items()})
        pods = {n: self.metrics[n] for n in targets if n in self.metrics and n not in self.errors}
        errors = {n: "ConnectionError: refused" for n in targets if n not in pods}
        return ScrapeResult(pods, errors)

    def close(self) -> None:
        pass


class FakeTaskDefs:
    """TaskDefSource stand-in: limits per task name."""

    def __init__(self) -> None:
        self.by_name: dict[str, TaskLimits] = {}

    def limits(self, url, names, key_id=None, key_secret=None) -> dict[str, TaskLimits]:
        return {n: self.by_name.get(n, TaskLimits()) for n in names}

    def close(self) -> None:
        pass


class FakePending:
    """PendingTaskSource stand-in: scans per task type, or a refusal status for the whole server."""

    def __init__(self) -> None:
        self.by_type: dict[str, Scan] = {}
        self.refusal: int | None = None
        self.asked: list[list[str]] = []

    def scans(self, url, task_types, max_age, key_id=None, key_secret=None, now=None) -> dict[str, Scan]:
        self.asked.append(list(task_types))
        if self.refusal is not None:
            return {}
        return {t: self.by_type[t] for t in task_types if t in self.by_type}

    def refused(self, url, key_id=None, key_secret=None) -> int | None:
        return self.refusal

    def close(self) -> None:
        pass


def body(spec: dict[str, Any] | None = None, status: dict[str, Any] | None = None, **spec_kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "conductor": {"serverUrl": "http://conductor:8080/api"},
        "image": "registry/workers:1",
        "tasks": [{"name": "resize", "concurrency": 2}],
        "replicas": 1,
    }
    base.update(spec or {})
    base.update(spec_kw)
    return {
        "apiVersion": f"{builders.GROUP}/{builders.VERSION}",
        "kind": builders.KIND,
        "metadata": {"name": "orders", "namespace": NS, "uid": "uid-1", "generation": 1},
        "spec": base,
        "status": status or {},
    }


def autoscaling(**kw: Any) -> dict[str, Any]:
    return {"enabled": True, "minReplicas": 1, "maxReplicas": 20, "targetQueueDepthPerReplica": 10, **kw}


@pytest.fixture
def world():
    kube, queues, scraper, clock = FakeKube(), FakeQueues(), FakeScraper(), FakeClock()
    return (
        kube,
        queues,
        scraper,
        clock,
        Controller(kube, Config(), queues, scraper, clock=clock, taskdefs=FakeTaskDefs(), pending=FakePending()),
    )


def last_status(kube: FakeKube) -> dict[str, Any]:
    assert kube.status_patches, "no status written"
    return kube.status_patches[-1]


def cond(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == type_)


# -- tests -----------------------------------------------------------------------------------------


def test_reconcile_applies_the_children_and_writes_status(world):
    kube, _, _, _, ctl = world
    ctl.reconcile(body(replicas=3))
    assert kube.deployment()["spec"]["replicas"] == 3
    assert ("Service", NS, "orders") in kube.objects and ("PodDisruptionBudget", NS, "orders") in kube.objects
    status = last_status(kube)
    assert status["desiredReplicas"] == 3 and cond(status, "Degraded")["status"] == "False"


def test_restart_keeps_the_scale_down_window(world):
    """A new Controller (operator restart, peering fail-over) finds 6 replicas and no backlog: the default
    300 s scale-down window holds them, as the HPA seeds its window from the current count."""
    kube, _, _, clock, ctl = world
    spec = body(autoscaling=autoscaling())
    kube.apply(builders.deployment(builders.Owner("orders", NS, "uid-1"), spec["spec"], 6, Config()))
    ctl.autoscale(spec)
    assert kube.deployment()["spec"]["replicas"] == 6, last_status(kube)["lastDecisionReason"]
    clock.now += 301
    ctl.autoscale(spec)
    assert kube.deployment()["spec"]["replicas"] == 1


def test_terminating_pods_do_not_count_for_utilization(world):
    """Two serving pods at 25 % together (target 50 %) and a Terminating pod still draining 4 busy slots:
    the fleet goes down to 1; counted, the leaving pod would hold it at 2 (50 %, and a second busy pod)."""
    kube, _, scraper, _, ctl = world
    spec = body(autoscaling=autoscaling(targetUtilization=50, scaleDown={"stabilizationWindowSeconds": 0}))
    kube.apply(builders.deployment(builders.Owner("orders", NS, "uid-1"), spec["spec"], 2, Config()))
    for name, ip, busy, leaving in (
        ("a", "10.0.0.1", 0, False),
        ("b", "10.0.0.2", 2, False),
        ("c", "10.0.0.3", 4, True),
    ):
        kube.add_pod(name, ip, terminating=leaving)
        scraper.metrics[name] = PodMetrics(busy_slots=busy, slot_capacity=4)
    ctl.autoscale(spec)
    assert kube.deployment()["spec"]["replicas"] == 1, last_status(kube)["lastDecisionReason"]
    assert last_status(kube)["utilization"] == "25%"
    assert "c" in scraper.targets  # still scraped: busy protection sees a draining pod


def test_task_definition_limits_cap_the_fleet(world):
    """concurrentExecLimit 6 with 2 slots a pod: 500 waiting tasks still need only 3 pods."""
    kube, queues, _, _, ctl = world
    ctl.taskdefs.by_name["resize"] = TaskLimits(concurrent_exec_limit=6)
    queues.depths_by_queue["resize"] = 500
    ctl.autoscale(body(autoscaling=autoscaling()))
    assert kube.deployment()["spec"]["replicas"] == 3, last_status(kube)["lastDecisionReason"]


def test_a_refused_child_shows_as_degraded_with_the_api_reason_and_a_warning_event(world):
    kube, _, _, _, ctl = world
    kube.fail_apply["Service"] = api_error(422, "Invalid", 'Service "orders" is invalid: metadata.name: Invalid value')
    ctl.reconcile(body(replicas=2))
    assert kube.deployment()["spec"]["replicas"] == 2  # the other children are still applied
    assert ("PodDisruptionBudget", NS, "orders") in kube.objects
    degraded = cond(last_status(kube), "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "ServiceApplyFailed"
    assert "Invalid (HTTP 422)" in degraded["message"] and "metadata.name: Invalid value" in degraded["message"]
    assert ("Warning", "ServiceApplyFailed", degraded["message"]) in kube.events
    assert cond(last_status(kube), "Ready")["status"] == "False"
    del kube.fail_apply["Service"]
    ctl.reconcile(body(replicas=2), force=False)  # the resync step, long before the full resync is due
    assert cond(last_status(kube), "Degraded")["status"] == "False"
    assert ("Service", NS, "orders") in kube.objects
    assert any(e[:2] == ("Normal", "Recovered") for e in kube.events)


def test_a_refused_deployment_is_degraded_and_applied_again_at_the_next_step(world):
    kube, _, _, _, ctl = world
    kube.fail_apply["Deployment"] = api_error(403, "Forbidden", 'deployments.apps "orders" is forbidden: quota')
    spec = body(autoscaling=autoscaling())
    ctl.reconcile(spec)  # does not raise: the status says why, and the next loop step applies again
    degraded = cond(last_status(kube), "Degraded")
    assert degraded["reason"] == "DeploymentApplyFailed" and "Forbidden" in degraded["message"]
    assert any(e[:2] == ("Warning", "DeploymentApplyFailed") for e in kube.events)
    del kube.fail_apply["Deployment"]
    ctl.autoscale(spec)
    assert kube.deployment() is not None
    assert cond(last_status(kube), "Degraded")["status"] == "False"


def test_disabling_the_pdb_deletes_it(world):
    kube, _, _, _, ctl = world
    ctl.reconcile(body(replicas=3))
    assert ("PodDisruptionBudget", NS, "orders") in kube.objects
    ctl.reconcile(body(replicas=3, podDisruptionBudget={"enabled": False}))  # the Deployment is unchanged
    assert ("PodDisruptionBudget", NS, "orders") not in kube.objects
    deletes = len(kube.deleted)
    ctl.reconcile(body(replicas=3, podDisruptionBudget={"enabled": False}))
    assert len(kube.deleted) == deletes  # known to be gone: no DELETE at every step


def test_status_drops_the_queues_of_tasks_no_longer_in_the_spec(world):
    kube, queues, _, _, ctl = world
    queues.depths_by_queue.update({"resize": 7, "eu:ship": 3})
    two = body(autoscaling=autoscaling(), tasks=[{"name": "resize"}, {"name": "ship", "domain": "eu"}])
    ctl.autoscale(two)
    assert last_status(kube)["queueDepth"] == {"resize": 7, "eu:ship": 3}
    # `ship` removed from the spec: the update handler writes status with the last evaluation's numbers
    one = body(autoscaling=autoscaling(), status={"queueDepth": {"resize": 7, "eu:ship": 3}})
    ctl.reconcile(one)
    assert last_status(kube)["queueDepth"] == {"resize": 7, "eu:ship": None}  # null deletes it (merge patch)
    assert last_status(kube)["totalQueueDepth"] == 7
    queues.error = ConductorError("GET /tasks/queue/all: connection refused")
    ctl.autoscale(body(autoscaling=autoscaling(), status={"queueDepth": {"resize": 7, "gone": 1}}))
    assert last_status(kube)["queueDepth"] == {"gone": None}


def test_re_enabled_autoscaling_keeps_the_scale_down_window_from_the_count_it_finds(world):
    kube, _, _, clock, ctl = world
    ctl.autoscale(body(autoscaling=autoscaling()))  # some history, then autoscaling off for a while
    ctl.reconcile(body(replicas=4, autoscaling={"enabled": False}))
    assert kube.deployment()["spec"]["replicas"] == 4
    clock.now += 1000
    ctl.autoscale(body(replicas=4, autoscaling=autoscaling()))
    assert kube.deployment()["spec"]["replicas"] == 4, last_status(kube)["lastDecisionReason"]


# -- workers of other SDKs: metrics from each SDK's names, or queue depth alone ----------------------

GO_PAGE = '# TYPE task_poll counter\ntask_poll{taskType="get-inventory"} 76\n'


def sdk_body(sdk: str, **spec_kw: Any) -> dict[str, Any]:
    """A worker of another SDK that talks to the server itself (spec.sidecar.enabled false by default here)."""
    spec_kw.setdefault("sidecar", {"enabled": False})
    cw = body(
        sdk=sdk,
        container={"image": f"registry/{sdk}-worker:1"},
        tasks=[{"name": "get-inventory", "domain": "john", "concurrency": 4}],
        **spec_kw,
    )
    del cw["spec"]["image"]
    return cw


def test_a_worker_without_busy_slot_metrics_scales_on_queue_depth_alone_and_to_zero(world):
    """conductor-go's page has poll counters but no busy slots: the pods answer (no scrape error, so scale
    to zero is allowed), utilization and busy protection are off, and status says "queue depth only"."""
    kube, queues, scraper, clock, ctl = world
    cw = sdk_body(
        "go", autoscaling=autoscaling(minReplicas=0, cooldownSeconds=30, scaleDown={"stabilizationWindowSeconds": 0})
    )
    queues.depths_by_queue["john:get-inventory"] = 40
    ctl.autoscale(cw)
    assert kube.deployment()["spec"]["replicas"] == 4, last_status(kube)["lastDecisionReason"]
    metrics = cond(last_status(kube), "MetricsAvailable")
    assert (metrics["status"], metrics["reason"]) == ("Unknown", "NoPodsScraped")
    for i in range(4):
        kube.add_pod(f"p{i}", f"10.0.0.{i}")
        scraper.pages[f"p{i}"] = GO_PAGE
    queues.depths_by_queue["john:get-inventory"] = 0
    clock.now += 10
    ctl.autoscale(cw)
    assert scraper.targets["p0"] == "http://10.0.0.0:2112/metrics"  # the Go convention's port
    status = last_status(kube)
    metrics = cond(status, "MetricsAvailable")
    assert (metrics["status"], metrics["reason"]) == ("False", "NoBusySlotMetrics")
    assert metrics["message"].startswith("queue depth only") and "go" in metrics["message"]
    assert status["busySlots"] is None and status["utilization"] is None  # not "0%": unknown
    assert status["lastDecisionReason"].endswith("[queue depth only: NoBusySlotMetrics]")
    assert kube.deployment()["spec"]["replicas"] == 1  # cooling down: no backlog for 10 s of 30
    clock.now += 31
    ctl.autoscale(cw)
    assert kube.deployment()["spec"]["replicas"] == 0, last_status(kube)["lastDecisionReason"]
    assert kube.events[-1][1] == "Scaled" and "queue depth only" in kube.events[-1][2]
    assert not any("pod-deletion-cost" in str(o["metadata"].get("annotations")) for o in kube.objects.values())
    # at zero there is no pod to read: the condition keeps what the pods said
    for i in range(4):
        del kube.objects[("Pod", NS, f"p{i}")]
    ctl.autoscale(cw)
    assert cond(last_status(kube), "MetricsAvailable")["reason"] == "NoBusySlotMetrics"


def test_busy_slots_from_another_sdks_names_feed_utilization_and_protect_busy_pods(world):
    """The Java client's active_workers (shared names) gives busy slots; the capacity comes from
    spec.tasks[].concurrency, which the operator passed to the pods as threadCount."""
    kube, _, scraper, _, ctl = world
    cw = sdk_body(
        "java",
        metrics={"path": "/prom"},
        autoscaling=autoscaling(targetUtilization=80, scaleDown={"stabilizationWindowSeconds": 0}),
    )
    kube.apply(builders.deployment(builders.Owner("orders", NS, "uid-1"), cw["spec"], 3, Config()))
    for name, busy in (("a", 3), ("b", 0), ("c", 0)):
        kube.add_pod(name, f"10.0.1.{len(name)}{busy}")
        scraper.pages[name] = (
            f'active_workers{{taskType="get-inventory"}} {busy}.0\ntask_poll_total{{taskType="get-inventory"}} 9\n'
        )
    ctl.autoscale(cw)
    assert scraper.slots == {"get-inventory": 4}
    assert scraper.targets["a"].endswith(":9991/prom")
    status = last_status(kube)
    assert (status["busySlots"], status["slotCapacity"], status["utilization"]) == (3, 12, "25%")
    metrics = cond(status, "MetricsAvailable")
    assert (metrics["status"], metrics["reason"]) == ("True", "BusySlotsRead") and "shared" in metrics["message"]
    assert kube.deployment()["spec"]["replicas"] == 1, status["lastDecisionReason"]
    cost = {
        n: kube.objects[("Pod", NS, n)]["metadata"]["annotations"]["controller.kubernetes.io/pod-deletion-cost"]
        for n in "abc"
    }
    assert cost == {"a": "300", "b": "0", "c": "0"}  # the ReplicaSet removes the idle pods first


def test_metrics_disabled_deletes_the_service_and_never_scrapes(world):
    kube, queues, scraper, clock, ctl = world
    ctl.reconcile(sdk_body("javascript"))
    assert ("Service", NS, "orders") in kube.objects
    off = sdk_body("javascript", metrics={"enabled": False}, autoscaling=autoscaling(minReplicas=0, cooldownSeconds=0))
    ctl.reconcile(off)
    assert ("Service", NS, "orders") not in kube.objects
    deletes = len(kube.deleted)
    kube.add_pod("p0", "10.0.0.9")
    queues.depths_by_queue["john:get-inventory"] = 5
    ctl.autoscale(off)
    assert scraper.calls == 0
    metrics = cond(last_status(kube), "MetricsAvailable")
    assert (metrics["status"], metrics["reason"]) == ("False", "MetricsDisabled")
    assert kube.deployment()["spec"]["replicas"] == 1
    queues.depths_by_queue["john:get-inventory"] = 0
    clock.now += 1
    ctl.autoscale(off)
    assert kube.deployment()["spec"]["replicas"] == 0, last_status(kube)["lastDecisionReason"]
    assert [d for d in kube.deleted[deletes:] if d[0] == "Service"] == []  # known gone: not deleted again


def test_pods_whose_metrics_do_not_answer_block_scale_to_zero_and_say_why(world):
    kube, _, scraper, clock, ctl = world
    cw = sdk_body("go", autoscaling=autoscaling(minReplicas=0, cooldownSeconds=0))
    kube.apply(builders.deployment(builders.Owner("orders", NS, "uid-1"), cw["spec"], 1, Config()))
    kube.add_pod("p0", "10.0.0.1")
    scraper.errors.add("p0")
    clock.now += 1
    ctl.autoscale(cw)
    ctl.autoscale(cw)
    assert kube.deployment()["spec"]["replicas"] == 1  # the pod might be busy: the HPA's missing-metrics rule
    metrics = cond(last_status(kube), "MetricsAvailable")
    assert metrics["reason"] == "MetricsScrapeFailed" and "spec.metrics.enabled" in metrics["message"]


# -- the watches' view (kopf indexes) instead of per-step reads ----------------------------------------


class CountingKube(FakeKube):
    def __init__(self) -> None:
        super().__init__()
        self.reads: list[tuple[str, str]] = []

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        self.reads.append(("GET", kind))
        return super().get(api_version, kind, namespace, name)

    def list(self, api_version: str, kind: str, namespace: str, selector: str) -> list[dict[str, Any]]:
        self.reads.append(("LIST", kind))
        return super().list(api_version, kind, namespace, selector)


def watched(kube: FakeKube) -> Cached:
    dep = kube.deployment()
    pods = [o for (k, _, _), o in kube.objects.items() if k == "Pod"]
    return Cached(slim_deployment(dep) if dep else None, [slim_pod(p) for p in pods])


def test_loop_steps_read_the_deployment_and_pods_from_the_watches_not_the_api_server():
    kube, queues = CountingKube(), FakeQueues({"resize": 0})
    ctl = Controller(
        kube, Config(), queues, FakeScraper(), clock=FakeClock(), taskdefs=FakeTaskDefs(), pending=FakePending()
    )
    cw = body(autoscaling=autoscaling())
    ctl.reconcile(cw, cached=Cached(None, []))  # a new CR: nothing watched, nothing read, nothing deleted
    assert kube.reads == [] and kube.deleted == []
    kube.add_pod("orders-a", "10.0.0.1")
    cw["status"] = {"observedGeneration": 1}
    for _ in range(3):
        ctl.autoscale(cw, cached=watched(kube))
        ctl.reconcile(cw, force=False, cached=watched(kube))
    assert kube.reads == []


def test_a_watch_that_has_not_seen_our_apply_yet_is_not_trusted():
    kube = CountingKube()
    ctl = Controller(
        kube, Config(), FakeQueues(), FakeScraper(), clock=FakeClock(), taskdefs=FakeTaskDefs(), pending=FakePending()
    )
    cw = body()
    ctl.reconcile(cw, cached=Cached(None, []))
    assert kube.deployment() is not None
    events = len(kube.events)
    ctl.reconcile(cw, force=False, cached=Cached(None, []))  # the watch event has not arrived: GET
    assert kube.reads == [("GET", "Deployment")] and len(kube.events) == events  # no second "Created"


def test_a_deployment_rollout_wakes_the_loop_of_a_worker_without_autoscaling_only():
    """The status of an idle ConductorWorker follows its pods becoming ready at once, without a short
    resync; an autoscaling one steps every polling interval anyway and is not woken by rollouts."""
    for spec, woken in ((body(replicas=2), True), (body(autoscaling=autoscaling()), False)):
        kube = FakeKube()
        ctl = Controller(
            kube, Config(), FakeQueues({"resize": 0}), FakeScraper(), FakeClock(), FakeTaskDefs(), FakePending()
        )
        step = ctl.autoscale if woken is False else ctl.reconcile
        step(spec)
        st = ctl.state(NS, "orders")
        generation = kube.deployment()["metadata"].get("generation")
        ctl.wake(NS, "orders", generation, dict(st.shown.rollout or {}))  # our own apply, nothing moved
        assert not st.wake.is_set()
        ctl.wake(NS, "orders", generation, {"replicas": 2, "readyReplicas": 2})
        assert st.wake.is_set() is woken
        st.wake.clear()
        ctl.wake(NS, "orders", (generation or 0) + 1, dict(st.shown.rollout or {}))  # someone edited the spec
        assert st.wake.is_set()


def test_a_new_generation_wakes_the_loop_and_only_a_full_step_marks_it_reconciled():
    """The loop reconciles in full while the ConductorWorker's generation is not the one last reconciled:
    a spec edit wakes it; the status patches the operator writes itself (same generation) do not."""
    for spec, step in ((body(replicas=2), "reconcile"), (body(autoscaling=autoscaling()), "autoscale")):
        kube = FakeKube()
        ctl = Controller(
            kube, Config(), FakeQueues({"resize": 0}), FakeScraper(), FakeClock(), FakeTaskDefs(), FakePending()
        )
        run = getattr(ctl, step)
        ctl.spec_changed(NS, "orders", 1)  # no step ran yet (the daemon's first step is a full one): no state
        assert ctl._known(NS, "orders") is None
        run(spec, force=False)
        st = ctl.state(NS, "orders")
        assert st.applied.reconciled_generation is None, "a resync or autoscale step is not a full reconcile"
        ctl.spec_changed(NS, "orders", 1)  # e.g. kopf's finalizer patch while the first full step runs
        assert not st.wake.is_set()
        run(spec, force=True)
        assert st.applied.reconciled_generation == 1
        ctl.spec_changed(NS, "orders", 1)  # our own status patch
        assert not st.wake.is_set()
        ctl.spec_changed(NS, "orders", 2)  # a new spec
        assert st.wake.is_set(), step
        st.wake.clear()
        newer = body(replicas=3) if step == "reconcile" else body(autoscaling=autoscaling(minReplicas=3))
        newer["metadata"]["generation"] = 2
        run(newer, force=True)
        assert st.applied.reconciled_generation == 2 and kube.deployment()["spec"]["replicas"] == 3


def test_tasks_waiting_out_a_callback_are_not_backlog_and_the_fleet_goes_to_zero(world):
    """20 tasks returned IN_PROGRESS with callbackAfterSeconds 40: Conductor's queue says 20 the whole
    wait; they are waiting, not backlog, so the fleet scales to zero, and comes back when they are due."""
    kube, queues, _, clock, ctl = world
    queues.depths_by_queue = {"resize": 20}
    now_ms = clock() * 1000
    cw = body(autoscaling=autoscaling(minReplicas=0, cooldownSeconds=0), replicas=None)
    ctl.pending.by_type = {"resize": Scan(tuple(Pending("resize", False, now_ms) for _ in range(20)), True)}
    ctl.autoscale(cw, force=True)
    assert kube.deployment()["spec"]["replicas"] == 2, last_status(kube)["lastDecisionReason"]
    # the workers took them and handed them back with callbackAfterSeconds 40
    clock.now += 5
    waiting = tuple(Pending("resize", False, now_ms + 45_000) for _ in range(20))
    ctl.pending.by_type = {"resize": Scan(waiting, complete=True)}
    ctl.autoscale(cw)
    status = last_status(kube)
    assert kube.deployment()["spec"]["replicas"] == 0, status["lastDecisionReason"]
    assert status["totalQueueDepth"] == 20 and status["readyTasks"] == 0
    assert "20 waiting" in status["lastDecisionReason"]
    assert ctl.pending.asked == [["resize"], ["resize"]]
    clock.now += 38  # due within the next interval: a pod started now is up when they are
    ctl.autoscale(cw)
    assert kube.deployment()["spec"]["replicas"] == 2, last_status(kube)["lastDecisionReason"]
    assert last_status(kube)["readyTasks"] == 20


def test_a_server_that_refuses_the_pending_list_counts_every_queued_task_and_says_so(world):
    kube, queues, _, _, ctl = world
    queues.depths_by_queue = {"resize": 20}
    ctl.pending.refusal = 403
    ctl.autoscale(body(autoscaling=autoscaling(minReplicas=0, cooldownSeconds=0), replicas=None), force=True)
    status = last_status(kube)
    assert kube.deployment()["spec"]["replicas"] == 2 and status["readyTasks"] == 20
    assert "waiting tasks not told apart" in status["lastDecisionReason"] and "403" in status["lastDecisionReason"]


def test_empty_queues_ask_for_no_pending_list(world):
    _, _, _, _, ctl = world
    ctl.autoscale(body(autoscaling=autoscaling()), force=True)
    assert ctl.pending.asked == []


def test_a_fleet_at_zero_is_woken_when_its_queue_grows_not_by_tasks_that_wait(world):
    """The activation watch between evaluations: only the shared queue sizes, and only a change counts."""
    kube, queues, _, clock, ctl = world
    cw = body(autoscaling=autoscaling(minReplicas=0, cooldownSeconds=0), replicas=None)
    ctl.autoscale(cw, force=True)
    assert kube.deployment()["spec"]["replicas"] == 0
    assert ctl.activation_due(cw) is False  # nothing queued
    queues.depths_by_queue = {"resize": 3}
    assert ctl.activation_due(cw) is True
    # 20 tasks waiting out a callback: seen by the evaluation, they do not wake the fleet again
    now_ms = clock() * 1000
    ctl.pending.by_type = {"resize": Scan(tuple(Pending("resize", False, now_ms + 60_000) for _ in range(20)), True)}
    queues.depths_by_queue = {"resize": 20}
    ctl.autoscale(cw)
    assert kube.deployment()["spec"]["replicas"] == 0
    assert ctl.activation_due(cw) is False
    queues.depths_by_queue = {"resize": 21}  # one more arrives
    assert ctl.activation_due(cw) is True
    ctl.pending.by_type = {}
    ctl.autoscale(cw)  # activated: the watch is off while the fleet runs
    assert kube.deployment()["spec"]["replicas"] > 0
    assert ctl.activation_due(cw) is False


def test_the_activation_watch_respects_the_activation_threshold(world):
    _, queues, _, _, ctl = world
    cw = body(autoscaling=autoscaling(minReplicas=0, cooldownSeconds=0, activationQueueDepth=5), replicas=None)
    ctl.autoscale(cw, force=True)
    queues.depths_by_queue = {"resize": 5}
    assert ctl.activation_due(cw) is False
    queues.depths_by_queue = {"resize": 6}
    assert ctl.activation_due(cw) is True


@pytest.mark.parametrize(("sdk", "kept"), [("java", 3), ("python", None), ("java+sidecar", None)])
def test_pods_that_do_not_drain_keep_their_busy_pods_and_runtime_pods_leave(world, sdk, kept):
    """Every pod holds one task, 3 of 12 slots busy: utilization wants 1. Runtime pods drain on SIGTERM, and
    the sidecar drains any SDK's pod before SIGTERM, so two busy ones may leave; an SDK's pods without the
    sidecar may not drain, so the busy ones stay."""
    kube, _, scraper, _, ctl = world
    auto = autoscaling(targetUtilization=80, scaleDown={"stabilizationWindowSeconds": 0})
    if sdk == "python":
        cw = body(tasks=[{"name": "get-inventory", "concurrency": 4}], autoscaling=auto)
    elif sdk == "java+sidecar":
        cw = sdk_body("java", sidecar={}, autoscaling=auto)
    else:
        cw = sdk_body(sdk, metrics={"path": "/prom"}, autoscaling=auto)
    kube.apply(builders.deployment(builders.Owner("orders", NS, "uid-1"), cw["spec"], 3, Config()))
    for name in "abc":
        kube.add_pod(name, f"10.0.2.{ord(name)}")
        scraper.pages[name] = (
            'active_workers{taskType="get-inventory"} 1.0\ntask_poll_total{taskType="get-inventory"} 9\n'
        )
    ctl.autoscale(cw)
    reason = last_status(kube)["lastDecisionReason"]
    if sdk == "java+sidecar":  # the sidecar's page is read, not the worker's
        assert all(url.endswith(":7701/metrics") for url in scraper.targets.values()), scraper.targets
    if kept:
        assert kube.deployment()["spec"]["replicas"] == kept and "kept 3 for busy workers" in reason, reason
    else:
        assert kube.deployment()["spec"]["replicas"] == 1 and "kept" not in reason, reason


def test_utilization_reads_the_busy_slots_averaged_between_scrapes(world):
    """Four pods whose samples each show 4 of 4 slots busy at the second evaluation, while their counters say
    one slot on average over the 5 s: the fleet goes down to 2 (4 of 16 slots at 80 %); the samples (16/16)
    would take it up to 5."""
    kube, _, scraper, clock, ctl = world
    spec = body(autoscaling=autoscaling(targetUtilization=80, scaleDown={"stabilizationWindowSeconds": 0}))
    kube.apply(builders.deployment(builders.Owner("orders", NS, "uid-1"), spec["spec"], 4, Config()))
    names = ("a", "b", "c", "d")
    for i, name in enumerate(names):
        kube.add_pod(name, f"10.0.0.{i + 1}")
        scraper.metrics[name] = PodMetrics(busy_slots=3, slot_capacity=4, busy_seconds=100.0)
    ctl.autoscale(spec)
    assert kube.deployment()["spec"]["replicas"] == 4, last_status(kube)["lastDecisionReason"]
    clock.now += 5
    for name in names:
        scraper.metrics[name] = PodMetrics(busy_slots=4, slot_capacity=4, busy_seconds=105.0)
    ctl.autoscale(spec)
    reason = last_status(kube)["lastDecisionReason"]
    assert kube.deployment()["spec"]["replicas"] == 2, reason
    assert "busy 4/16" in reason


def test_the_grace_period_follows_the_response_timeouts_unless_the_spec_sets_one(world):
    """No terminationGracePeriodSeconds in the spec: the pods get the longest response timeout of the task
    types plus 5 s. A definition that cannot be read keeps what is deployed (no rollout on a guess)."""
    kube, _, _, _, ctl = world
    ctl.taskdefs.by_name["resize"] = TaskLimits(response_timeout_seconds=300)
    cw = body()
    cw["spec"].pop("terminationGracePeriodSeconds", None)
    ctl.reconcile(cw)

    def grace() -> int:
        return kube.deployment()["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]

    assert grace() == 305
    ctl.taskdefs.by_name["resize"] = TaskLimits(known=False)  # Conductor down at a later step
    ctl.state(NS, "orders").applied.last_full = 0  # a full resync: everything is applied again
    ctl.reconcile(cw, force=False)
    assert grace() == 305
    ctl.taskdefs.by_name["resize"] = TaskLimits(response_timeout_seconds=3600)
    ctl.reconcile(cw, force=False)  # a resync step applies only on drift: a new grace is one
    assert grace() == 600  # the definition changed: the pods follow, up to the cap
    cw["spec"]["terminationGracePeriodSeconds"] = 20
    cw["metadata"]["generation"] = 2
    ctl.reconcile(cw)
    assert grace() == 20


# -- ConductorConnections (the operator sends a Secret only to its connection's server) ---------------


def connection(name: str = "prod", url: str = "https://conductor.example/api", secret: str | None = "orkes-key"):
    spec: dict[str, Any] = {"serverUrl": url}
    if secret:
        spec["authSecretRef"] = {"name": secret, "keyIdKey": "keyId", "keySecretKey": "keySecret"}
    return {"metadata": {"name": name, "namespace": NS, "generation": 1}, "spec": spec}


KEY = {"keyId": base64.b64encode(b"id-1").decode(), "keySecret": base64.b64encode(b"s3cret").decode()}


def env_of(kube: FakeKube) -> dict[str, Any]:
    container = kube.deployment()["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_a_worker_naming_a_connection_gets_its_server_and_secret_and_only_that_server_gets_the_key(world):
    kube, queues, _, _, ctl = world
    kube.objects[("ConductorConnection", NS, "prod")] = connection()
    kube.secrets["orkes-key"] = KEY
    cw = body(conductor={"connectionRef": {"name": "prod"}}, autoscaling=autoscaling())
    ctl.autoscale(cw, force=True)
    env = env_of(kube)
    assert env["CONDUCTOR_SERVER_URL"] == "https://conductor.example/api"
    assert env["CONDUCTOR_AUTH_KEY"] == {"secretKeyRef": {"name": "orkes-key", "key": "keyId"}}
    assert queues.asked == [("https://conductor.example/api", "id-1", "s3cret")]
    assert cond(last_status(kube), "Degraded")["status"] == "False"


def test_an_inline_secret_is_never_sent_nor_given_to_the_pods(world):
    """What a tenant who may not read Secrets would try: their own URL and the namespace's Secret."""
    kube, queues, _, _, ctl = world
    kube.secrets["orkes-key"] = KEY
    cw = body(
        conductor={"serverUrl": "http://attacker.example/api", "authSecretRef": {"name": "orkes-key"}},
        autoscaling=autoscaling(),
    )
    ctl.autoscale(cw, force=True)
    assert queues.asked == [("http://attacker.example/api", None, None)]  # no credentials with the request
    assert "CONDUCTOR_AUTH_KEY" not in env_of(kube) and "CONDUCTOR_AUTH_SECRET" not in env_of(kube)
    status = last_status(kube)
    assert cond(status, "Degraded")["reason"] == "InlineCredentials"
    assert ("Warning", "InlineCredentials") in [(t, r) for t, r, _ in kube.events]


def test_a_missing_connection_blocks_the_worker_until_it_exists(world):
    kube, queues, _, _, ctl = world
    cw = body(conductor={"connectionRef": {"name": "prod"}}, autoscaling=autoscaling())
    ctl.autoscale(cw, force=True)
    assert kube.deployment() is None and queues.calls == 0
    degraded = cond(last_status(kube), "Degraded")
    assert degraded["reason"] == "ConnectionNotFound" and "'prod'" in degraded["message"]
    kube.objects[("ConductorConnection", NS, "prod")] = connection(secret=None)
    ctl.autoscale(cw, force=True)  # within the cache's 10 s: still unknown ...
    assert kube.deployment() is None
    ctl.connection_changed(NS, "prod")  # ... until its watch event clears it
    ctl.autoscale(cw, force=True)
    assert env_of(kube)["CONDUCTOR_SERVER_URL"] == "https://conductor.example/api"
    assert queues.asked == [("https://conductor.example/api", None, None)]


def test_a_connection_check_writes_a_ready_condition_without_the_reply(world, monkeypatch):
    kube, _, _, _, ctl = world
    kube.objects[("ConductorConnection", NS, "prod")] = conn = connection(secret="missing")
    status = ctl.check_connection(conn)
    ready = status["conditions"][0]
    assert (ready["status"], ready["reason"]) == ("False", "SecretUnusable")
    assert kube.objects[("ConductorConnection", NS, "prod")]["status"] == status


def test_a_watched_connection_is_used_without_a_read_and_a_new_spec_wakes_its_workers(world):
    kube, _, _, _, ctl = world
    cw = body(conductor={"connectionRef": {"name": "prod"}}, autoscaling=autoscaling())
    assert ctl.connection_seen(NS, "prod", connection(secret=None)) is True  # first seen: check it now
    ctl.autoscale(cw, force=True)  # FakeKube holds no ConductorConnection: the watch's copy serves
    assert env_of(kube)["CONDUCTOR_SERVER_URL"] == "https://conductor.example/api"
    st = ctl.state(NS, "orders")
    st.wake.clear()
    assert ctl.connection_seen(NS, "prod", connection(secret=None)) is False  # a status write: same generation
    assert not st.wake.is_set()
    moved = connection(url="https://other.example/api", secret=None)
    moved["metadata"]["generation"] = 2
    assert ctl.connection_seen(NS, "prod", moved) is True and st.wake.is_set()
    assert [c["spec"]["serverUrl"] for c in ctl.watched_connections()] == ["https://other.example/api"]
    ctl.connection_seen(NS, "prod", None)  # deleted: read again, and not there
    ctl.autoscale(cw)
    assert cond(last_status(ctl.kube), "Degraded")["reason"] == "ConnectionNotFound"
