"""Reconciliation and autoscaling steps for one ConductorWorker (I/O glue between kopf and the pure parts:
builders for the children, autoscaler for the decision, status for what the user reads; Secret reads in
kube, the pod-deletion-cost side effect of a scale-down in deletion_cost).

Why a per-object State with a lock: each step runs on an executor thread, and a step of a daemon kopf
stopped (peering pause, deletion) may still be running when the next daemon's first step starts; both
apply the children and must not interleave. Why server-side apply on every
change: one field manager owns exactly the fields the builders produce, so a hand edit of those fields is
put back and everything else (e.g. fields of other controllers) is left alone.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import requests
from kubernetes.client.exceptions import ApiException

from conductor_operator import builders, connections, opmetrics
from conductor_operator.autoscaler import History, Observation, config_from_spec, decide
from conductor_operator.busy_average import Sample, averaged
from conductor_operator.config import Config
from conductor_operator.deletion_cost import protect_busy_pods
from conductor_operator.kube import Kube, auth_secret, conductor_credentials, now_iso
from conductor_operator.observe import QueueDepthSource, Scraper, ScrapeResult, pod_targets, queue_key, serving
from conductor_operator.readiness import PendingTaskSource, Readiness, readiness
from conductor_operator.servers import ServerClients
from conductor_operator.status import (
    QUEUE_ONLY,
    SERVICE_MONITOR_CRD,
    Evaluation,
    MetricsVerdict,
    Problem,
    assemble_status,
    child_failure,
    deployment_problems,
    metrics_verdict,
    problem_events,
    public_reason,
    spec_problems,
)
from conductor_operator.taskdefs import TaskDefSource, TaskLimits, pod_caps
from conductor_operator.watched import Cached
from worker_runtime.client import ConductorError

log = logging.getLogger(__name__)
# Every child is applied again this often even when nothing seems changed: the Service, PDB and ServiceMonitor
# are not watched, so a hand edit of them is put back within this time (the Deployment's at once: watched).
FULL_RESYNC_SECONDS = 300.0
CONNECTION_TTL_SECONDS = 10.0  # a ConductorConnection is read again after this (a watch event clears it sooner)


@dataclass
class Applied:
    """What the operator last applied of the children: whether the next step must apply them again."""

    generation: int | None = None  # the Deployment's generation after our last apply
    hash: str | None = None  # the spec hash of that Deployment
    # ((CR generation, grace period), spec hash of the Deployment it wants)
    wanted_hash: tuple[tuple[int | None, int | None], str] | None = None
    last_full: float = 0.0  # when every child was last applied
    problems: tuple[Problem, ...] = ()  # children the API server refused at the last apply
    pdb: bool | None = None  # whether our PodDisruptionBudget exists (None: unknown, e.g. after a restart)
    service: bool | None = None  # whether our Service exists (deleted while metrics.enabled is false)
    reconciled_generation: int | None = None  # the ConductorWorker generation the last full reconcile applied


@dataclass
class Scaling:
    """The autoscaler's memory between evaluations."""

    history: History | None = None  # None until the first evaluation, which seeds it (see decide)
    desired: int | None = None
    metrics: MetricsVerdict | None = None  # the last MetricsAvailable verdict (kept while no pod runs)
    reachable: bool | None = None  # whether the last evaluation could read Conductor (Events on a change)
    last: Evaluation | None = None  # the last evaluation, for status writes between evaluations
    queued: int | None = None  # the queues' total size at the last evaluation (the activation watch's baseline)
    busy_samples: dict[str, Sample] = field(default_factory=dict)  # each pod's slot-seconds at the last scrape


@dataclass
class Shown:
    """What the user was last shown, so that only changes are written or announced."""

    problems: tuple[str, ...] = ()  # reasons of the last Degraded problems (Events on a change)
    status: dict[str, Any] = field(default_factory=dict)
    rollout: dict[str, Any] | None = None  # the Deployment status the last status was built from
    wake_on_rollout: bool = False  # no autoscaling: a Deployment status change wakes the loop at once


@dataclass
class State:
    """What the operator remembers about one ConductorWorker between steps (lost on restart: resume
    re-reads the Deployment and the status, and the autoscaler seeds its history from the current count)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    wake: asyncio.Event = field(default_factory=asyncio.Event)  # set and awaited on kopf's event loop only
    applied: Applied = field(default_factory=Applied)
    scaling: Scaling = field(default_factory=Scaling)
    shown: Shown = field(default_factory=Shown)
    connection: str | None = None  # the ConductorConnection it names (a change of it wakes the loop)
    connection_problem: Problem | None = None  # why spec.conductor cannot be used as written


def spec_queues(spec: dict[str, Any]) -> list[tuple[str, str | None]]:
    """The (task type, domain) queues a ConductorWorker serves."""
    return [(t["name"], t.get("domain") or None) for t in spec.get("tasks") or []]


@dataclass(frozen=True)
class Observed:
    """One evaluation's reads: Conductor's queues (None: unreachable, error says why), what of them a pod
    could start now, the task definitions' pod caps, and the pods with their scrape."""

    depth: dict[str, int] | None
    readiness: Readiness | None
    caps: dict[str, int]
    error: str
    note: str  # why waiting tasks could not be told apart ("" when they could)
    pods: list[dict[str, Any]]
    scrape: ScrapeResult


class Controller:
    def __init__(
        self,
        kube: Kube,
        config: Config | None = None,
        queues: QueueDepthSource | None = None,
        scraper: Scraper | None = None,
        clock: Callable[[], float] = time.time,
        taskdefs: TaskDefSource | None = None,
        pending: PendingTaskSource | None = None,
    ) -> None:
        """config: the operator's settings (defaults when None); clock: wall time of the autoscaler's
        history and of the resync interval (tests pass a fake)."""
        self.kube = kube
        self.config = config or Config()
        self.queues = queues or QueueDepthSource()
        self.scraper = scraper or Scraper()
        self.taskdefs = taskdefs or TaskDefSource()
        self.pending = pending or PendingTaskSource()
        self.clock = clock
        self._states: dict[tuple[str, str], State] = {}
        self._lock = threading.Lock()
        self._connections: dict[tuple[str, str], tuple[float, dict[str, Any] | None]] = {}  # read by GET
        self._watched: dict[tuple[str, str], dict[str, Any]] = {}  # as the watch delivers them (handlers)
        self._probes = ServerClients(5.0)  # the connections' checks

    def state(self, namespace: str, name: str) -> State:
        with self._lock:
            return self._states.setdefault((namespace, name), State())

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._states.pop((namespace, name), None)
        opmetrics.forget(namespace, name)

    def wake(self, namespace: str, name: str, generation: int | None, rollout: dict[str, Any] | None = None) -> None:
        """A managed Deployment changed: wake the object's loop if someone else changed its spec, or, without
        autoscaling, if its status moved from the one the ConductorWorker's status shows (pods became ready).

        Why: the loop of an idle ConductorWorker then needs no short resync interval to keep its status
        fresh; an autoscaling one already steps every polling interval."""
        st = self._known(namespace, name)
        if st is None:
            return
        drifted = generation is not None and generation != st.applied.generation
        rolled = (
            st.shown.wake_on_rollout
            and rollout is not None
            and st.shown.rollout is not None
            and rollout != st.shown.rollout
        )
        if drifted or rolled:
            st.wake.set()

    def spec_changed(self, namespace: str, name: str, generation: int | None) -> None:
        """A ConductorWorker event: wake its loop when the generation is not the one last reconciled (a new
        spec), so the loop reconciles at once; our own status writes do not move the generation. Before
        the first full step has ended there is nothing to wake: that step is the reconcile (and the loop
        does not pause when the generation moved during a step)."""
        st = self._known(namespace, name)
        if (
            st is not None
            and st.applied.reconciled_generation is not None
            and generation != st.applied.reconciled_generation
        ):
            st.wake.set()

    def wake_now(self, namespace: str, name: str) -> None:
        """Wake the object's loop whatever changed (its Deployment was deleted)."""
        st = self._known(namespace, name)
        if st is not None:
            st.wake.set()

    def connection_changed(self, namespace: str, name: str) -> None:
        """A ConductorConnection changed or went: forget it and wake the loops of the workers naming it."""
        with self._lock:
            self._connections.pop((namespace, name), None)
            waiting = [st for (ns, _), st in self._states.items() if ns == namespace and st.connection == name]
        for st in waiting:
            st.wake.set()

    def connection_seen(self, namespace: str, name: str, body: dict[str, Any] | None) -> bool:
        """The watch's view of a ConductorConnection (None: deleted). A new spec (not our own status writes)
        wakes the workers naming it. True when the spec is new to this process (to check it now)."""
        key = (namespace, name)
        with self._lock:
            known = self._watched.pop(key, None)
            if body is not None:
                self._watched[key] = body
        fresh = body is not None and (
            known is None or known["metadata"].get("generation") != body["metadata"].get("generation")
        )
        if fresh or body is None:
            self.connection_changed(namespace, name)
        return fresh

    def watched_connections(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._watched.values())

    def _connection(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The ConductorConnection: the watch's copy, else read at most every CONNECTION_TTL_SECONDS (a
        change of it clears that)."""
        key = (namespace, name)
        with self._lock:
            watched = self._watched.get(key)
            cached = self._connections.get(key)
        if watched is not None:
            return watched
        if cached is not None and time.monotonic() - cached[0] < CONNECTION_TTL_SECONDS:
            return cached[1]
        found = self.kube.get(f"{builders.GROUP}/{builders.VERSION}", connections.KIND, namespace, name)
        with self._lock:
            self._connections[key] = (time.monotonic(), found)
        return found

    def _resolve(self, body: dict[str, Any], st: State) -> connections.Resolution:
        """The ConductorWorker with spec.conductor from its ConductorConnection (connections.resolve)."""
        name = connections.connection_name(body.get("spec") or {})
        st.connection = name
        found = self._connection(body["metadata"]["namespace"], name) if name else None
        resolution = connections.resolve(body, found)
        st.connection_problem = resolution.problem
        return resolution

    def check_connection(self, body: dict[str, Any]) -> dict[str, Any]:
        """Check a ConductorConnection (its Ready condition) and write its status; returns the status."""
        meta, spec = body["metadata"], body.get("spec") or {}
        url = spec.get("serverUrl") or ""
        key_id = key_secret = None
        unusable = None
        ref = spec.get("authSecretRef")
        if ref:
            try:
                key_id, key_secret = conductor_credentials(self.kube, {"conductor": spec}, meta["namespace"])
            except KeyError as exc:
                unusable = f"{exc.args[0]} (authSecretRef)" if exc.args else "the Secret cannot be used"
        _, client = self._probes.get(url, key_id, key_secret)
        ready = connections.check(
            lambda: client.request("GET", "/tasks/queue/sizes", params={"taskType": "conductor-connection-check"}),
            unusable,
        )
        status = connections.status(body.get("status"), ready, meta.get("generation"))
        self.kube.patch_status(meta["namespace"], meta["name"], status, kind=connections.KIND)
        return status

    def _known(self, namespace: str, name: str) -> State | None:
        """The object's state if a step ever ran for it (events of other Deployments create none)."""
        with self._lock:
            return self._states.get((namespace, name))

    # -- replicas ------------------------------------------------------------------------------------

    def _replicas(self, spec: dict[str, Any], st: State, deployment: dict[str, Any] | None) -> int:
        """spec.replicas without autoscaling; with it, the last decision (or the Deployment's count after
        a restart), clamped to the current bounds."""
        if not builders.autoscaling_enabled(spec):
            st.scaling.desired = None
            st.scaling.history = None  # re-enabled later, the autoscaler starts from the count it finds, as new
            return builders.fixed_replicas(spec)
        cfg = config_from_spec(spec.get("autoscaling") or {})
        if st.scaling.desired is None:
            existing = ((deployment or {}).get("spec") or {}).get("replicas")
            st.scaling.desired = int(existing) if existing is not None else cfg.min_replicas
        st.scaling.desired = max(cfg.min_replicas, min(cfg.max_replicas, st.scaling.desired))
        return st.scaling.desired

    # -- children --------------------------------------------------------------------------------

    def _child(self, failures: list[Problem], verb: str, kind: str, name: str, call: Callable[[], Any]) -> Any:
        """One write of a child; an API refusal becomes a Problem (Degraded + Warning Event) instead of
        stopping the other children. Returns None when it failed."""
        try:
            return call()
        except ApiException as exc:
            failures.append(child_failure(verb, kind, name, exc))
            log.warning("%s %s %s failed: %s", verb, kind, name, failures[-1].message)
            return None

    def _converge(
        self,
        failures: list[Problem],
        exists: bool | None,
        manifest: dict[str, Any] | None,
        api_version: str,
        kind: str,
        owner: builders.Owner,
    ) -> bool | None:
        """Apply a child when wanted (manifest given), else delete it unless known to be gone; returns
        whether it exists now (None: unknown), unchanged when the API server refused the write."""
        if manifest is not None:
            return (
                True if self._child(failures, "apply", kind, owner.name, lambda: self.kube.apply(manifest)) else exists
            )
        if exists is False:
            return False
        delete = lambda: self.kube.delete(api_version, kind, owner.namespace, owner.name)  # noqa: E731
        return False if self._child(failures, "delete", kind, owner.name, delete) is not None else exists

    def apply_children(
        self, body: dict[str, Any], st: State, deployment: dict[str, Any] | None, grace: int | None
    ) -> dict[str, Any] | None:
        """Apply Deployment, Service, ServiceMonitor and PDB; returns the applied Deployment (the one
        read before, when its apply failed). grace: the step's _grace."""
        owner = builders.Owner.from_body(body)
        spec = body["spec"]
        failures: list[Problem] = []
        if not (body.get("status") or {}).get("observedGeneration"):
            # Never reconciled: no child of ours exists yet, and a DELETE of one would only answer 404.
            st.applied.service = False if st.applied.service is None else st.applied.service
            st.applied.pdb = False if st.applied.pdb is None else st.applied.pdb
            fresh = True
        else:
            fresh = False
        replicas = self._replicas(spec, st, deployment)
        dep_manifest = builders.deployment(owner, spec, replicas, self.config, grace)
        applied = self._child(failures, "apply", "Deployment", owner.name, lambda: self.kube.apply(dep_manifest))
        if applied is None:
            changed = False
            st.applied.generation = None  # applied again at the next step
        else:
            changed = deployment is None or applied["metadata"].get("generation") != deployment["metadata"].get(
                "generation"
            )
            st.applied.generation = applied["metadata"].get("generation")
            st.applied.hash = dep_manifest["metadata"]["annotations"][builders.HASH_ANNOTATION]
        service = builders.service(owner, spec) if builders.service_wanted(spec) else None
        st.applied.service = self._converge(failures, st.applied.service, service, "v1", "Service", owner)
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
            elif not fresh:
                self._child(
                    failures,
                    "delete",
                    "ServiceMonitor",
                    owner.name,
                    lambda: self.kube.delete("monitoring.coreos.com/v1", "ServiceMonitor", owner.namespace, owner.name),
                )
        # Deleted whenever not wanted (disabled, or one replica) unless we know it is gone: the
        # Deployment does not change when only podDisruptionBudget.enabled does.
        pdb = builders.pod_disruption_budget(owner, spec) if builders.pdb_wanted(spec, replicas) else None
        st.applied.pdb = self._converge(failures, st.applied.pdb, pdb, "policy/v1", "PodDisruptionBudget", owner)
        st.applied.problems = tuple(failures)
        st.applied.last_full = self.clock()
        opmetrics.RECONCILES.labels(owner.namespace, owner.name, "changed" if changed else "unchanged").inc()
        if applied is None:
            return deployment
        if changed and deployment is not None:
            self.kube.event(body, "Normal", "Updated", f"Deployment {owner.name} updated (replicas {replicas})")
        elif deployment is None:
            self.kube.event(body, "Normal", "Created", f"Deployment {owner.name} created with {replicas} replicas")
        return applied

    def _reconciled(self, body: dict[str, Any], st: State) -> None:
        """A full step of this generation is done: said once in the log (a user's `kubectl logs` shows each
        new spec taken), remembered so the loop does not do it again."""
        meta = body["metadata"]
        st.applied.reconciled_generation = meta.get("generation")
        refused = ", ".join(p.reason for p in st.applied.problems)
        log.info(
            "%s/%s: generation %s reconciled%s",
            meta["namespace"],
            meta["name"],
            st.applied.reconciled_generation,
            f" ({refused})" if refused else "",
        )

    def _needs_apply(
        self, body: dict[str, Any], st: State, deployment: dict[str, Any] | None, grace: int | None
    ) -> bool:
        if deployment is None or st.applied.generation is None or st.applied.problems:
            return True  # missing, or a child was refused last time: try again at every step
        if deployment["metadata"].get("generation") != st.applied.generation:
            return True  # someone else changed the spec: put our fields back
        wanted = self._wanted_hash(body, st, grace)
        if (deployment["metadata"].get("annotations") or {}).get(builders.HASH_ANNOTATION) != wanted:
            return True
        return self.clock() - st.applied.last_full > FULL_RESYNC_SECONDS

    def _wanted_hash(self, body: dict[str, Any], st: State, grace: int | None) -> str:
        """The spec hash of the Deployment the ConductorWorker wants, built once per CR generation and grace."""
        key = (body["metadata"].get("generation"), grace)
        if st.applied.wanted_hash is None or st.applied.wanted_hash[0] != key:
            owner = builders.Owner.from_body(body)
            manifest = builders.deployment(owner, body["spec"], None, self.config, grace)
            st.applied.wanted_hash = (key, manifest["metadata"]["annotations"][builders.HASH_ANNOTATION])
        return st.applied.wanted_hash[1]

    def _grace(self, body: dict[str, Any], deployment: dict[str, Any] | None) -> int | None:
        """The pods' grace period when the spec sets none: covers the task types' responseTimeoutSeconds
        (builders.default_grace). While a definition cannot be read the deployed value stays (a guess would
        roll every pod twice); None: the spec sets it, or nothing is known yet (the builder's default)."""
        spec = body["spec"]
        if spec.get("terminationGracePeriodSeconds"):
            return None
        try:
            key_id, key_secret = conductor_credentials(self.kube, spec, body["metadata"]["namespace"])
            limits = self.taskdefs.limits(spec["conductor"]["serverUrl"], builders.task_names(spec), key_id, key_secret)
        except (ConductorError, requests.RequestException, ValueError, KeyError):
            limits = None
        if limits is None or not all(lim.known for lim in limits.values()):
            deployed = (((deployment or {}).get("spec") or {}).get("template") or {}).get("spec") or {}
            grace = deployed.get("terminationGracePeriodSeconds")
            return int(grace) if grace else None
        return builders.default_grace(lim.response_timeout_seconds for lim in limits.values())

    def _deployment(self, ns: str, name: str, st: State, cached: Cached | None) -> dict[str, Any] | None:
        """The Deployment from the watch cache, or from the API server when there is no cache or it has not
        seen our last apply yet (a watch event lags the apply by a moment)."""
        if cached is not None:
            seen = cached.deployment
            if seen is None and st.applied.generation is None:
                return None  # not watched and not applied by this process: it does not exist
            if seen is not None and int(seen["metadata"].get("generation") or 0) >= (st.applied.generation or 0):
                return seen
        return self.kube.get("apps/v1", "Deployment", ns, name)

    # -- entry points ----------------------------------------------------------------------------

    def reconcile(self, body: dict[str, Any], force: bool = True, cached: Cached | None = None) -> None:
        """Children + status: in full (force) for a generation not reconciled yet, else the loop's resync
        step without autoscaling, which applies only on drift. cached: the watches' view of the children
        (None: read them from the API server)."""
        meta = body["metadata"]
        st = self.state(meta["namespace"], meta["name"])
        with st.lock:
            deployment = self._deployment(meta["namespace"], meta["name"], st, cached)
            resolution = self._resolve(body, st)
            body = resolution.body
            if resolution.blocking:  # no server to point the pods at: status only, a full step again next time
                self._write_status(body, st, deployment, None)
                return
            grace = self._grace(body, deployment)  # once per step: it reads the task definitions
            if force or self._needs_apply(body, st, deployment, grace):
                deployment = self.apply_children(body, st, deployment, grace)
            self._write_status(body, st, deployment, None)
            if force:
                self._reconciled(body, st)

    def autoscale(self, body: dict[str, Any], cached: Cached | None = None, force: bool = False) -> None:
        """One autoscaler evaluation: observe, decide, scale the Deployment, write status. cached: the
        watches' view of the Deployment and pods (None: read them from the API server); force: apply the
        children first whatever they look like (a generation not reconciled yet)."""
        meta, spec = body["metadata"], body["spec"]
        ns, name = meta["namespace"], meta["name"]
        st = self.state(ns, name)
        with st.lock:
            deployment = self._deployment(ns, name, st, cached)
            resolution = self._resolve(body, st)
            body, spec = resolution.body, resolution.body["spec"]
            if resolution.blocking:  # no server to ask or to point the pods at: the replicas stay as they are
                self._write_status(body, st, deployment, None)
                return
            grace = self._grace(body, deployment)  # once per step: it reads the task definitions
            if force or self._needs_apply(body, st, deployment, grace):
                deployment = self.apply_children(body, st, deployment, grace)
            cfg = config_from_spec(spec.get("autoscaling") or {})
            interval = float((spec.get("autoscaling") or {}).get("pollingIntervalSeconds") or 5)
            observed = self._observe(body, interval, cached)
            current = (
                st.scaling.desired if st.scaling.desired is not None else int(deployment["spec"].get("replicas") or 0)
            )
            pods, scrape = observed.pods, observed.scrape
            now = self.clock()
            scrape, st.scaling.busy_samples = averaged(scrape, st.scaling.busy_samples, now)
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
                st.scaling.metrics = verdict
            obs = Observation(
                now=now,
                current_replicas=current,
                queue_depth=observed.readiness.ready if observed.readiness is not None else None,
                busy_slots=fleet.mean_busy_slots,  # averaged since the last scrape (busy_average.py)
                slot_capacity=fleet.slot_capacity,
                busy_pods=len(fleet.busy_pods),
                scraped_pods=len(fleet.metered),  # pods without busy slots are not utilization samples
                scrape_errors=len(fleet.errors),
                task_caps=observed.caps,
                waiting=observed.readiness.total_waiting if observed.readiness is not None else 0,
                # The runtime finishes what it holds on SIGTERM, another SDK's pod through its sidecar's drain;
                # a pod of another SDK without the sidecar may not.
                drains=builders.drains(spec),
            )
            decision = decide(cfg, obs, st.scaling.history)
            st.scaling.history = decision.history
            st.scaling.queued = sum(observed.depth.values()) if observed.depth is not None else None
            reason = decision.reason
            if st.scaling.metrics is not None and st.scaling.metrics[0] is False:  # "busy 0/0" would read as idle pods
                reason += f" [{QUEUE_ONLY}: {st.scaling.metrics[1]}]"
            if observed.note:
                reason += f" [{observed.note}]"
            direction = "none"
            if decision.desired != current:
                direction = "up" if decision.desired > current else "down"
                if direction == "down" and scrape.busy_pods:
                    protect_busy_pods(self.kube, ns, pods, scrape)
                st.scaling.desired = decision.desired
                deployment = self.apply_children(body, st, deployment, grace)
                self.kube.event(body, "Normal", "Scaled", f"Scaled from {current} to {decision.desired}: {reason}")
                log.info("%s/%s scaled %s -> %s: %s", ns, name, current, decision.desired, reason)
            opmetrics.DECISIONS.labels(ns, name, direction).inc()
            opmetrics.DESIRED.labels(ns, name).set(decision.desired)
            opmetrics.BUSY.labels(ns, name).set(fleet.busy_slots)
            opmetrics.CAPACITY.labels(ns, name).set(fleet.slot_capacity)
            for queue, depth in (observed.depth or {}).items():
                opmetrics.QUEUE_DEPTH.labels(ns, name, queue).set(depth)
            for queue, ready in (observed.readiness.ready if observed.readiness is not None else {}).items():
                opmetrics.READY_TASKS.labels(ns, name, queue).set(ready)
            if scrape.errors:
                opmetrics.SCRAPE_ERRORS.labels(ns, name).inc(len(scrape.errors))
            auto = Evaluation(
                depth=observed.depth,
                ready=sum(observed.readiness.ready.values()) if observed.readiness is not None else None,
                error=observed.error,
                busy=fleet.busy_slots,
                capacity=fleet.slot_capacity,
                reason=reason,
                scaled=decision.scaled,
                metrics=st.scaling.metrics,
            )
            self._write_status(body, st, deployment, auto)
            if force:
                self._reconciled(body, st)

    def activation_due(self, body: dict[str, Any]) -> bool:
        """Between evaluations of a fleet at zero: whether its queues hold more than at the last evaluation
        (and more than the activation threshold), so the next evaluation should run now. Reads only the
        shared queue sizes; the evaluation decides whether those tasks are ready (a task waiting out a
        callback changes nothing here and waits for the regular interval)."""
        meta = body["metadata"]
        st = self.state(meta["namespace"], meta["name"])
        if st.scaling.desired != 0 or st.scaling.queued is None:
            return False
        resolution = self._resolve(body, st)
        if resolution.blocking:
            return False
        spec = resolution.body["spec"]
        period = max(0.5, self.config.activation_poll_seconds)
        queues = spec_queues(spec)
        try:
            key_id, key_secret = conductor_credentials(self.kube, spec, meta["namespace"])
            depth = self.queues.depths(spec["conductor"]["serverUrl"], queues, period * 0.9, key_id, key_secret)
        except (ConductorError, requests.RequestException, ValueError, KeyError):
            return False  # the evaluation at the interval reports it
        total = sum(depth.values())
        threshold = config_from_spec(spec.get("autoscaling") or {}).activation_queue_depth
        return total > threshold and total != st.scaling.queued

    # -- observation -----------------------------------------------------------------------------

    def _observe(self, body: dict[str, Any], interval: float, cached: Cached | None) -> Observed:
        meta, spec = body["metadata"], body["spec"]
        ns, name = meta["namespace"], meta["name"]
        conductor = spec.get("conductor") or {}
        queues = spec_queues(spec)
        depth: dict[str, int] | None = None
        ready: Readiness | None = None
        caps: dict[str, int] = {}
        error = note = ""
        try:
            key_id, key_secret = conductor_credentials(self.kube, spec, ns)
            depth = self.queues.depths(conductor["serverUrl"], queues, interval * 0.9, key_id, key_secret)
        except (ConductorError, requests.RequestException, ValueError, KeyError) as exc:
            error = f"{type(exc).__name__}: {public_reason(exc)}"[:300]
            opmetrics.CONDUCTOR_ERRORS.labels(ns, name).inc()
            log.warning("%s/%s: queue depth unavailable: %s", ns, name, error)
        else:
            limits: dict[str, TaskLimits] = {}
            try:  # limits only cap; without them the queue depth still scales the fleet
                limits = self.taskdefs.limits(conductor["serverUrl"], [q for q, _ in queues], key_id, key_secret)
                caps = pod_caps(spec.get("tasks") or [], limits)
            except (ConductorError, requests.RequestException, ValueError) as exc:
                log.info("%s/%s: task definitions unavailable: %s", ns, name, exc)
            ready, note = self._readiness(conductor["serverUrl"], queues, depth, limits, interval, key_id, key_secret)
        pods = cached.pods if cached is not None else self.kube.list("v1", "Pod", ns, builders.selector_string(name))
        if builders.metrics_enabled(spec):
            targets = pod_targets(pods, builders.scrape_port(spec), builders.scrape_path(spec))
            scrape = self.scraper.scrape(targets, builders.task_slots(spec))
        else:  # nothing to read: queue depth alone (status says so)
            scrape = ScrapeResult({}, {})
        return Observed(depth, ready, caps, error, note, pods, scrape)

    def _readiness(
        self,
        url: str,
        queues: list[tuple[str, str | None]],
        depth: dict[str, int],
        limits: dict[str, TaskLimits],
        interval: float,
        key_id: str | None,
        key_secret: str | None,
    ) -> tuple[Readiness, str]:
        """The queued tasks a pod could start within one interval (readiness.py), and a note when the
        server would not tell them apart (then every queued task counts, as the plain queue size)."""
        types = {queue_key(t, d): t for t, d in queues}
        nonempty = sorted({types[q] for q, n in depth.items() if n > 0})
        note = ""
        try:
            scans = self.pending.scans(url, nonempty, interval * 0.9, key_id, key_secret) if nonempty else {}
        except (ConductorError, requests.RequestException, ValueError) as exc:
            log.info("pending tasks of %s unavailable: %s", url, exc)
            scans, note = {}, "waiting tasks not told apart: pending-task list unavailable"
        refused = self.pending.refused(url, key_id, key_secret)
        if refused is not None and nonempty:
            note = f"waiting tasks not told apart: GET /admin/task refused (HTTP {refused})"
        exec_limits = {n: lim.concurrent_exec_limit for n, lim in limits.items() if lim.concurrent_exec_limit}
        return readiness(depth, scans, types, exec_limits, self.clock() * 1000.0, interval), note

    # -- status ----------------------------------------------------------------------------------

    def _write_status(
        self, body: dict[str, Any], st: State, deployment: dict[str, Any] | None, auto: Evaluation | None
    ) -> None:
        """Assemble the status (status.assemble_status), post the Events a change deserves, and patch it
        only when something other than a timestamp changed."""
        meta, spec = body["metadata"], body["spec"]
        ns, name = meta["namespace"], meta["name"]
        autoscaling = builders.autoscaling_enabled(spec)
        st.shown.wake_on_rollout = not autoscaling
        st.shown.rollout = dict((deployment or {}).get("status") or {})
        if auto is None and autoscaling and st.scaling.last is not None:
            auto = replace(st.scaling.last, scaled=False)
        elif auto is not None:
            st.scaling.last = auto
        problems = (
            ([st.connection_problem] if st.connection_problem is not None else [])
            + spec_problems(spec, auth_secret(self.kube, spec, ns), self.kube.crd_installed(SERVICE_MONITOR_CRD))
            + list(st.applied.problems)
            + deployment_problems(deployment)
        )
        for type_, reason, message in problem_events(st.shown.problems, problems):
            self.kube.event(body, type_, reason, message)
        st.shown.problems = tuple(p.reason for p in problems)
        desired = (
            st.scaling.desired if autoscaling and st.scaling.desired is not None else builders.fixed_replicas(spec)
        )
        status = assemble_status(
            body,
            desired=desired,
            deployment=deployment,
            problems=problems,
            auto=auto,
            spec_hash=st.applied.hash,
            last_active=st.scaling.history.last_active if st.scaling.history is not None else None,
            now=now_iso(),
        )
        opmetrics.CURRENT.labels(ns, name).set(status["replicas"])
        if not autoscaling:
            opmetrics.DESIRED.labels(ns, name).set(desired)
        if auto is not None:
            reachable = auto.depth is not None
            if st.scaling.reachable is not None and reachable != st.scaling.reachable:
                self.kube.event(
                    body,
                    "Normal" if reachable else "Warning",
                    "ConductorReachable" if reachable else "ConductorUnreachable",
                    "queue sizes read again" if reachable else auto.error,
                )
            st.scaling.reachable = reachable
        comparable = {k: v for k, v in status.items() if k != "conditions"}
        comparable["conditions"] = [dict(c) for c in status["conditions"]]
        if comparable == st.shown.status:
            return
        self.kube.patch_status(ns, name, status)
        st.shown.status = comparable
