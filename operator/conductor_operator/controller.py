"""Reconciliation and autoscaling steps for one ConductorWorker (I/O glue between kopf and the pure parts).

Why a per-object State with a lock: kopf runs the create/update handler and the object's daemon in
different threads; both apply the children and must not interleave. Why server-side apply on every
change: one field manager owns exactly the fields the builders produce, so a hand edit of those fields is
put back and everything else (e.g. fields of other controllers) is left alone.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests
from kubernetes.client.exceptions import ApiException

from conductor_operator import builders, opmetrics
from conductor_operator.autoscaler import History, Observation, config_from_spec, decide
from conductor_operator.config import Config
from conductor_operator.kube import Kube, now_iso
from conductor_operator.observe import QueueDepthSource, Scraper, ScrapeResult, pod_targets
from conductor_operator.status import (
    QUEUE_ONLY,
    SERVICE_MONITOR_CRD,
    Problem,
    child_failure,
    condition,
    deployment_problems,
    metrics_verdict,
    queue_depth_status,
    queue_keys,
    ready_condition_args,
    replica_counts,
    spec_problems,
    utilization_text,
)
from conductor_operator.taskdefs import TaskDefSource, pod_caps
from worker_runtime.client import ConductorError

log = logging.getLogger(__name__)
FULL_RESYNC_SECONDS = 60.0


def serving(scrape: ScrapeResult, pods: list[dict[str, Any]]) -> ScrapeResult:
    """The scrape without Terminating pods: they are leaving (the HPA ignores deleted pods too), so their
    slots must not count for utilization, busy pods or scale to zero. Busy protection still sees them."""
    leaving = {p["metadata"]["name"] for p in pods if p["metadata"].get("deletionTimestamp")}
    if not leaving:
        return scrape
    return ScrapeResult(
        {n: m for n, m in scrape.pods.items() if n not in leaving},
        {n: e for n, e in scrape.errors.items() if n not in leaving},
    )


@dataclass
class State:
    """What the operator remembers about one ConductorWorker between steps (lost on restart: resume
    re-reads the Deployment and the status, and the autoscaler seeds its history from the current count)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    wake: threading.Event = field(default_factory=threading.Event)
    history: History | None = None  # None until the first evaluation, which seeds it (see decide)
    desired: int | None = None
    applied_generation: int | None = None  # the Deployment's generation after our last apply
    applied_hash: str | None = None
    last_full_apply: float = 0.0
    problems: tuple[str, ...] = ()
    apply_problems: tuple[Problem, ...] = ()  # children the API server refused at the last apply
    pdb: bool | None = None  # whether our PodDisruptionBudget exists (None: unknown, e.g. after a restart)
    service: bool | None = None  # whether our Service exists (deleted while metrics.enabled is false)
    metrics: tuple[bool, str, str] | None = None  # the last MetricsAvailable verdict (kept while no pod runs)
    reachable: bool | None = None
    last_status: dict[str, Any] = field(default_factory=dict)
    last_auto: dict[str, Any] | None = None  # the last autoscaler evaluation, for status writes between them


@dataclass
class Observed:
    """The autoscaler's latest view, kept for the status."""

    queue_depth: dict[str, int] | None = None
    busy: int = 0
    capacity: int = 0
    reason: str = ""
    error: str = ""


class Controller:
    def __init__(
        self,
        kube: Kube,
        config: Config | None = None,
        queues: QueueDepthSource | None = None,
        scraper: Scraper | None = None,
        clock: Callable[[], float] = time.time,
        taskdefs: TaskDefSource | None = None,
    ) -> None:
        """config: the operator's settings (defaults when None); clock: wall time of the autoscaler's
        history and of the resync interval (tests pass a fake)."""
        self.kube = kube
        self.config = config or Config()
        self.queues = queues or QueueDepthSource()
        self.scraper = scraper or Scraper()
        self.taskdefs = taskdefs or TaskDefSource()
        self.clock = clock
        self._states: dict[tuple[str, str], State] = {}
        self._lock = threading.Lock()

    def state(self, namespace: str, name: str) -> State:
        with self._lock:
            return self._states.setdefault((namespace, name), State())

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._states.pop((namespace, name), None)
        opmetrics.forget(namespace, name)

    def wake(self, namespace: str, name: str, generation: int | None) -> None:
        """A managed Deployment changed: wake the object's loop if someone else changed its spec."""
        with self._lock:
            st = self._states.get((namespace, name))
        if st is not None and generation is not None and generation != st.applied_generation:
            st.wake.set()

    # -- replicas ------------------------------------------------------------------------------------

    def _replicas(self, spec: dict[str, Any], st: State, deployment: dict[str, Any] | None) -> int:
        """spec.replicas without autoscaling; with it, the last decision (or the Deployment's count after
        a restart), clamped to the current bounds."""
        if not builders.autoscaling_enabled(spec):
            st.desired = None
            st.history = None  # re-enabled later, the autoscaler starts from the count it finds, as new
            return builders.fixed_replicas(spec)
        cfg = config_from_spec(spec.get("autoscaling") or {})
        if st.desired is None:
            existing = ((deployment or {}).get("spec") or {}).get("replicas")
            st.desired = int(existing) if existing is not None else cfg.min_replicas
        st.desired = max(cfg.min_replicas, min(cfg.max_replicas, st.desired))
        return st.desired

    # -- children --------------------------------------------------------------------------------

    def _secret(self, spec: dict[str, Any], namespace: str) -> dict[str, str] | None:
        ref = (spec.get("conductor") or {}).get("authSecretRef")
        return self.kube.secret_data(namespace, ref["name"]) if ref else None

    def _child(self, failures: list[Problem], verb: str, kind: str, name: str, call: Callable[[], Any]) -> Any:
        """One write of a child; an API refusal becomes a Problem (Degraded + Warning Event) instead of
        stopping the other children. Returns None when it failed."""
        try:
            return call()
        except ApiException as exc:
            failures.append(child_failure(verb, kind, name, exc))
            log.warning("%s %s %s failed: %s", verb, kind, name, failures[-1].message)
            return None

    def apply_children(
        self, body: dict[str, Any], st: State, deployment: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        """Apply Deployment, Service, ServiceMonitor and PDB; returns the applied Deployment (the one
        read before, when its apply failed)."""
        owner = builders.Owner.from_body(body)
        spec = body["spec"]
        failures: list[Problem] = []
        replicas = self._replicas(spec, st, deployment)
        dep_manifest = builders.deployment(owner, spec, replicas, self.config)
        applied = self._child(failures, "apply", "Deployment", owner.name, lambda: self.kube.apply(dep_manifest))
        if applied is None:
            changed = False
            st.applied_generation = None  # applied again at the next step
        else:
            changed = deployment is None or applied["metadata"].get("generation") != deployment["metadata"].get(
                "generation"
            )
            st.applied_generation = applied["metadata"].get("generation")
            st.applied_hash = dep_manifest["metadata"]["annotations"][builders.HASH_ANNOTATION]
        if builders.service_wanted(spec):
            if self._child(
                failures, "apply", "Service", owner.name, lambda: self.kube.apply(builders.service(owner, spec))
            ):
                st.service = True
        elif st.service is not False:
            gone = self._child(
                failures,
                "delete",
                "Service",
                owner.name,
                lambda: self.kube.delete("v1", "Service", owner.namespace, owner.name),
            )
            if gone is not None:
                st.service = False
        sm_crd = self.kube.crd_installed(SERVICE_MONITOR_CRD)
        if sm_crd:
            if builders.service_monitor_wanted(spec):
                self._child(
                    failures,
                    "apply",
                    "ServiceMonitor",
                    owner.name,
                    lambda: self.kube.apply(builders.service_monitor(owner, spec)),
                )
            else:
                self._child(
                    failures,
                    "delete",
                    "ServiceMonitor",
                    owner.name,
                    lambda: self.kube.delete("monitoring.coreos.com/v1", "ServiceMonitor", owner.namespace, owner.name),
                )
        # Deleted whenever not wanted (disabled, or one replica) unless we know it is gone: the
        # Deployment does not change when only podDisruptionBudget.enabled does.
        if builders.pdb_wanted(spec, replicas):
            pdb = builders.pod_disruption_budget(owner, spec)
            if self._child(failures, "apply", "PodDisruptionBudget", owner.name, lambda: self.kube.apply(pdb)):
                st.pdb = True
        elif st.pdb is not False:
            gone = self._child(
                failures,
                "delete",
                "PodDisruptionBudget",
                owner.name,
                lambda: self.kube.delete("policy/v1", "PodDisruptionBudget", owner.namespace, owner.name),
            )
            if gone is not None:
                st.pdb = False
        st.apply_problems = tuple(failures)
        st.last_full_apply = self.clock()
        opmetrics.RECONCILES.labels(owner.namespace, owner.name, "changed" if changed else "unchanged").inc()
        if applied is None:
            return deployment
        if changed and deployment is not None:
            self.kube.event(body, "Normal", "Updated", f"Deployment {owner.name} updated (replicas {replicas})")
        elif deployment is None:
            self.kube.event(body, "Normal", "Created", f"Deployment {owner.name} created with {replicas} replicas")
        return applied

    def _needs_apply(self, body: dict[str, Any], st: State, deployment: dict[str, Any] | None) -> bool:
        if deployment is None or st.applied_generation is None or st.apply_problems:
            return True  # missing, or a child was refused last time: try again at every step
        if deployment["metadata"].get("generation") != st.applied_generation:
            return True  # someone else changed the spec: put our fields back
        want = builders.deployment(builders.Owner.from_body(body), body["spec"], None, self.config)["metadata"][
            "annotations"
        ][builders.HASH_ANNOTATION]
        if (deployment["metadata"].get("annotations") or {}).get(builders.HASH_ANNOTATION) != want:
            return True
        return self.clock() - st.last_full_apply > FULL_RESYNC_SECONDS

    # -- entry points ----------------------------------------------------------------------------

    def reconcile(self, body: dict[str, Any], force: bool = True) -> None:
        """create/update/resume, and each loop step without autoscaling: children + status."""
        meta = body["metadata"]
        st = self.state(meta["namespace"], meta["name"])
        with st.lock:
            deployment = self.kube.get("apps/v1", "Deployment", meta["namespace"], meta["name"])
            if force or self._needs_apply(body, st, deployment):
                deployment = self.apply_children(body, st, deployment)
            self._write_status(body, st, deployment, None)

    def autoscale(self, body: dict[str, Any]) -> None:
        """One autoscaler evaluation: observe, decide, scale the Deployment, write status."""
        meta, spec = body["metadata"], body["spec"]
        ns, name = meta["namespace"], meta["name"]
        st = self.state(ns, name)
        with st.lock:
            deployment = self.kube.get("apps/v1", "Deployment", ns, name)
            if self._needs_apply(body, st, deployment):
                deployment = self.apply_children(body, st, deployment)
            cfg = config_from_spec(spec.get("autoscaling") or {})
            interval = float((spec.get("autoscaling") or {}).get("pollingIntervalSeconds") or 5)
            observed = self._observe(body, interval)
            current = st.desired if st.desired is not None else int(deployment["spec"].get("replicas") or 0)
            pods = observed.pop("pods")
            scrape = observed.pop("scrape")
            caps = observed.pop("caps")
            fleet = serving(scrape, pods)
            verdict = metrics_verdict(
                builders.metrics_enabled(spec),
                len(fleet.metered),
                len(fleet.unmetered),
                fleet.errors,
                fleet.dialects,
                builders.sdk(spec),
            )
            if verdict is not None:
                st.metrics = verdict
            obs = Observation(
                now=self.clock(),
                current_replicas=current,
                queue_depth=observed["depth"],
                busy_slots=fleet.busy_slots,
                slot_capacity=fleet.slot_capacity,
                busy_pods=len(fleet.busy_pods),
                scraped_pods=len(fleet.metered),  # pods without busy slots are not utilization samples
                scrape_errors=len(fleet.errors),
                task_caps=caps,
            )
            decision = decide(cfg, obs, st.history)
            st.history = decision.history
            reason = decision.reason
            if st.metrics is not None and st.metrics[0] is False:  # "busy 0/0" would read as idle pods
                reason += f" [{QUEUE_ONLY}: {st.metrics[1]}]"
            direction = "none"
            if decision.desired != current:
                direction = "up" if decision.desired > current else "down"
                if direction == "down" and scrape.busy_pods:
                    self._protect_busy_pods(ns, pods, scrape)
                st.desired = decision.desired
                deployment = self.apply_children(body, st, deployment)
                self.kube.event(body, "Normal", "Scaled", f"Scaled from {current} to {decision.desired}: {reason}")
                log.info("%s/%s scaled %s -> %s: %s", ns, name, current, decision.desired, reason)
            opmetrics.DECISIONS.labels(ns, name, direction).inc()
            opmetrics.DESIRED.labels(ns, name).set(decision.desired)
            opmetrics.BUSY.labels(ns, name).set(fleet.busy_slots)
            opmetrics.CAPACITY.labels(ns, name).set(fleet.slot_capacity)
            for queue, depth in (observed["depth"] or {}).items():
                opmetrics.QUEUE_DEPTH.labels(ns, name, queue).set(depth)
            if scrape.errors:
                opmetrics.SCRAPE_ERRORS.labels(ns, name).inc(len(scrape.errors))
            auto = {
                "depth": observed["depth"],
                "error": observed["error"],
                "busy": fleet.busy_slots,
                "capacity": fleet.slot_capacity,
                "reason": reason,
                "scaled": decision.scaled,
                "metrics": st.metrics,
            }
            self._write_status(body, st, deployment, auto)

    # -- observation -----------------------------------------------------------------------------

    def _observe(self, body: dict[str, Any], interval: float) -> dict[str, Any]:
        meta, spec = body["metadata"], body["spec"]
        ns, name = meta["namespace"], meta["name"]
        conductor = spec.get("conductor") or {}
        queues = [(t["name"], t.get("domain") or None) for t in spec.get("tasks") or []]
        depth: dict[str, int] | None = None
        caps: dict[str, int] = {}
        error = ""
        try:
            key_id, key_secret = self._credentials(spec, ns)
            depth = self.queues.depths(conductor["serverUrl"], queues, interval * 0.9, key_id, key_secret)
        except (ConductorError, requests.RequestException, ValueError, KeyError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
            opmetrics.CONDUCTOR_ERRORS.labels(ns, name).inc()
            log.warning("%s/%s: queue depth unavailable: %s", ns, name, error)
        else:
            try:  # limits only cap; without them the queue depth still scales the fleet
                limits = self.taskdefs.limits(conductor["serverUrl"], [q for q, _ in queues], key_id, key_secret)
                caps = pod_caps(spec.get("tasks") or [], limits)
            except (ConductorError, requests.RequestException, ValueError) as exc:
                log.info("%s/%s: task definitions unavailable: %s", ns, name, exc)
        pods = self.kube.list("v1", "Pod", ns, builders.selector_string(name))
        if builders.metrics_enabled(spec):
            targets = pod_targets(pods, builders.metrics_port(spec), builders.metrics_path(spec))
            scrape = self.scraper.scrape(targets, builders.task_slots(spec))
        else:  # nothing to read: queue depth alone (status says so)
            scrape = ScrapeResult({}, {})
        return {"depth": depth, "caps": caps, "error": error, "pods": pods, "scrape": scrape}

    def _credentials(self, spec: dict[str, Any], namespace: str) -> tuple[str | None, str | None]:
        ref = (spec.get("conductor") or {}).get("authSecretRef")
        if not ref:
            return None, None
        data = self.kube.secret_data(namespace, ref["name"])
        if data is None:
            raise KeyError(f"Secret {ref['name']!r} not found")
        id_key, secret_key = ref.get("keyIdKey") or "keyId", ref.get("keySecretKey") or "keySecret"
        return base64.b64decode(data[id_key]).decode(), base64.b64decode(data[secret_key]).decode()

    def _protect_busy_pods(self, namespace: str, pods: list[dict[str, Any]], scrape: Any) -> None:
        """Mark idle pods cheaper to delete, so the ReplicaSet removes them before busy ones."""
        for pod in pods:
            pname = pod["metadata"]["name"]
            cost = "0" if pname not in scrape.pods else str(min(1000000, 100 * scrape.pods[pname].busy_slots))
            annotations = pod["metadata"].get("annotations") or {}
            if annotations.get("controller.kubernetes.io/pod-deletion-cost") != cost:
                try:
                    self.kube.merge_patch(
                        "v1",
                        "Pod",
                        namespace,
                        pname,
                        {"metadata": {"annotations": {"controller.kubernetes.io/pod-deletion-cost": cost}}},
                    )
                except Exception as exc:
                    log.debug("pod-deletion-cost on %s: %s", pname, exc)

    # -- status ----------------------------------------------------------------------------------

    def _write_status(
        self, body: dict[str, Any], st: State, deployment: dict[str, Any] | None, auto: dict[str, Any] | None
    ) -> None:
        meta, spec = body["metadata"], body["spec"]
        ns, name = meta["namespace"], meta["name"]
        generation = meta.get("generation")
        previous = ((body.get("status") or {}).get("conditions")) or []
        if auto is None and builders.autoscaling_enabled(spec) and st.last_auto is not None:
            auto = {**st.last_auto, "scaled": False}
        elif auto is not None:
            st.last_auto = auto
        now = now_iso()
        problems = (
            spec_problems(spec, self._secret(spec, ns), self.kube.crd_installed(SERVICE_MONITOR_CRD))
            + list(st.apply_problems)
            + deployment_problems(deployment)
        )
        keys = tuple(p.reason for p in problems)
        if keys != st.problems:
            for p in problems:
                if p.reason not in st.problems:
                    self.kube.event(body, "Warning", p.reason, p.message)
            if st.problems and not problems:
                self.kube.event(body, "Normal", "Recovered", "no configuration problem left")
            st.problems = keys
        desired = (
            st.desired
            if builders.autoscaling_enabled(spec) and st.desired is not None
            else builders.fixed_replicas(spec)
        )
        replicas, ready, _ = replica_counts(deployment)
        opmetrics.CURRENT.labels(ns, name).set(replicas)
        if not builders.autoscaling_enabled(spec):
            opmetrics.DESIRED.labels(ns, name).set(desired)
        conds = [
            condition(
                "Degraded",
                bool(problems),
                problems[0].reason if problems else "AsExpected",
                "; ".join(p.message for p in problems) or "no problem found",
                now,
                generation,
                previous,
            ),
        ]
        ok, reason, message = ready_condition_args(desired, deployment, bool(problems))
        conds.append(condition("Ready", ok, reason, message, now, generation, previous))
        conds.append(
            condition(
                "Active",
                desired > 0,
                "HasReplicas" if desired > 0 else "ScaledToZero",
                f"{desired} replicas wanted",
                now,
                generation,
                previous,
            )
        )
        status: dict[str, Any] = {
            "observedGeneration": generation,
            "replicas": replicas,
            "readyReplicas": ready,
            "desiredReplicas": desired,
            "selector": builders.selector_string(name),
            "taskNames": ",".join(builders.task_names(spec)),
            "specHash": st.applied_hash,
        }
        if auto is not None:
            reachable = auto["depth"] is not None
            conds.append(
                condition(
                    "ConductorReachable",
                    reachable,
                    "QueueDepthRead" if reachable else "QueueDepthUnavailable",
                    "queue sizes read" if reachable else auto["error"],
                    now,
                    generation,
                    previous,
                )
            )
            if st.reachable is not None and reachable != st.reachable:
                self.kube.event(
                    body,
                    "Normal" if reachable else "Warning",
                    "ConductorReachable" if reachable else "ConductorUnreachable",
                    "queue sizes read again" if reachable else auto["error"],
                )
            st.reachable = reachable
            verdict = auto.get("metrics")
            if verdict is None:
                verdict = (None, "NoPodsScraped", "no running pod to read /metrics from yet")
            conds.append(condition("MetricsAvailable", *verdict, now, generation, previous))
            status["lastDecisionReason"] = auto["reason"][:1000]
            metered = verdict[0] is True
            status["busySlots"] = auto["busy"] if metered else None
            status["slotCapacity"] = auto["capacity"] if metered else None
            status["utilization"] = utilization_text(auto["busy"], auto["capacity"]) if metered else None
            depth, total = queue_depth_status(
                (body.get("status") or {}).get("queueDepth"), auto["depth"], queue_keys(spec)
            )
            if depth is not None:
                status["queueDepth"] = depth
            if total is not None:
                status["totalQueueDepth"] = total
            if auto["scaled"]:
                status["lastScaleTime"] = now
            if st.history is not None and st.history.last_active is not None:
                status["lastActiveTime"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(st.history.last_active))
        else:
            status["lastDecisionReason"] = (
                "autoscaling disabled: spec.replicas"
                if not builders.autoscaling_enabled(spec)
                else "waiting for first evaluation"
            )
            if not builders.autoscaling_enabled(spec):
                # Without the autoscaler the operator does not ask Conductor: do not show stale numbers.
                status.update({"queueDepth": None, "totalQueueDepth": None, "utilization": None})
        status["conditions"] = conds
        comparable = {k: v for k, v in status.items() if k != "conditions"}
        comparable["conditions"] = [dict(c) for c in conds]
        if comparable == st.last_status:
            return
        self.kube.patch_status(ns, name, status)
        st.last_status = comparable
