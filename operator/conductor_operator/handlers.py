"""kopf handlers, kept thin: they hand plain dicts to the Controller, whose blocking steps run on threads.

- one daemon per ConductorWorker does everything: its first step reconciles (children and status: the
  create and the resume), later steps run the autoscaler (every autoscaling.pollingIntervalSeconds) or,
  without autoscaling, a resync (drift correction and status), reading the Deployment and the pods from
  kopf indexes (watches) instead of the API server;
- a new spec (metadata.generation moved) wakes the loop, which reconciles at once. Why not kopf's
  create/update handlers: kopf stores a diff base in an annotation after each of them, one more write of
  the ConductorWorker per change (and a deep copy of its body per watch event) that nothing here needs;
- a change of a managed Deployment by someone else wakes the owner's loop at once (worker_deployments).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import random
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf
from kubernetes import client, config

from conductor_operator import builders, connections
from conductor_operator.config import Config
from conductor_operator.controller import Controller
from conductor_operator.kube import Kube
from conductor_operator.watched import MANAGED, owner_key, slim_deployment, slim_pod, snapshot

log = logging.getLogger(__name__)
_controller: Controller | None = None
_executor: ThreadPoolExecutor | None = None  # the threads the per-object loops run their blocking steps on
_checker: asyncio.Task | None = None


def controller() -> Controller:
    if _controller is None:
        raise kopf.TemporaryError("operator not started yet", delay=1)
    return _controller


def load_api_client(cfg: Config) -> client.ApiClient:
    """In-cluster credentials when running in a pod, else the kubeconfig (cfg.kubeconfig).

    The connection pool matches kopf's worker threads, or urllib3 discards connections under load."""
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(config_file=cfg.kubeconfig, client_configuration=configuration)
    configuration.connection_pool_maxsize = cfg.max_workers + 4
    return client.ApiClient(configuration)


def plain(body: Any) -> dict[str, Any]:
    """kopf's Body is a live view; the controller gets a detached plain copy."""
    return json.loads(json.dumps(body, default=dict))


class NoDiffBase(kopf.DiffBaseStorage):
    """No diff base: this operator has no change handlers (the loop compares generations itself), and
    kopf's default builds one per watch event of every watched resource, a deep copy of the whole body
    (a Deployment's managedFields included), only to find no handler that wants the diff."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """kopf's settings and the Controller from the Config main put in the memo (defaults without one)."""
    global _controller, _executor, _checker
    cfg: Config = memo.get("config") or Config()
    # The daemons' finalizer: kopf stops an object's loop before the object goes.
    settings.persistence.finalizer = f"{builders.GROUP}/finalizer"
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.peering.lifetime = cfg.peering_lifetime
    settings.watching.server_timeout = cfg.watch_server_timeout
    settings.watching.client_timeout = cfg.watch_server_timeout + 30
    settings.watching.connect_timeout = 30
    settings.posting.level = logging.WARNING  # our own Events say what happened; kopf's only on trouble
    settings.execution.max_workers = cfg.max_workers
    _executor = ThreadPoolExecutor(cfg.max_workers, thread_name_prefix="cw-step")
    _controller = Controller(Kube(load_api_client(cfg), secret_ttl=cfg.secret_ttl_seconds), cfg)
    _checker = asyncio.get_running_loop().create_task(_check_connections_forever())


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    if _checker is not None:
        _checker.cancel()
    if _controller is not None:
        _controller.scraper.close()
        _controller.queues.close()
        _controller.taskdefs.close()
        _controller.pending.close()


@kopf.index("apps", "v1", "deployments", labels=MANAGED)
async def worker_deployments(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    """The managed Deployments by (namespace, name): a Deployment is named after its ConductorWorker.

    Also wakes the owner's loop at once when someone else changed the Deployment's spec (its generation is
    not the one of our last apply) or, without autoscaling, its rollout status moved: one handler per
    watch event, not two. Async (no I/O): a sync handler would cost a thread hop per event."""
    slim = slim_deployment(body)
    if _controller is not None:
        _controller.wake(namespace, name, slim["metadata"]["generation"], slim["status"])
    return {(namespace, name): slim}


@kopf.on.event("apps", "v1", "deployments", labels=MANAGED, when=lambda type, **_: type == "DELETED")
async def deployment_deleted(namespace: str, name: str, **_: Any) -> None:
    """Someone deleted a managed Deployment: its ConductorWorker's loop puts it back at once (the index
    handler is not called for deletions, and the resync interval may be long)."""
    if _controller is not None:
        _controller.wake_now(namespace, name)


@kopf.index("v1", "pods", labels=MANAGED)
async def worker_pods(body: kopf.Body, **_: Any) -> dict[Any, Any]:
    """The worker pods by (namespace, ConductorWorker name)."""
    key = owner_key(body)
    return {key: slim_pod(body)} if key else {}


async def _step(call: Any, *args: Any, **kwargs: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(_executor, functools.partial(call, *args, **kwargs))


@kopf.index(builders.GROUP, builders.VERSION, builders.PLURAL)
async def worker_generations(namespace: str, name: str, body: kopf.Body, **_: Any) -> None:
    """Indexes nothing: it wakes the object's loop when the generation moved (a new spec). An index
    handler, not kopf.on.event: kopf logs every on.event call at INFO, one line per watch event."""
    if _controller is not None:
        _controller.spec_changed(namespace, name, (body.get("metadata") or {}).get("generation"))


@kopf.index(builders.GROUP, builders.VERSION, connections.PLURAL)
async def connection_changes(namespace: str, name: str, body: kopf.Body, **_: Any) -> None:
    """Indexes nothing: a created or changed ConductorConnection wakes the loops of the workers naming it, and
    a new spec is checked at once (our own status writes leave observedGeneration equal: no check loop)."""
    if _controller is None:
        return
    connection = plain(body)
    fresh = _controller.connection_seen(namespace, name, connection)
    moved = (connection.get("status") or {}).get("observedGeneration") != connection["metadata"].get("generation")
    if fresh or moved:
        asyncio.get_running_loop().create_task(_check(connection))


@kopf.on.event(builders.GROUP, builders.VERSION, connections.PLURAL, when=lambda type, **_: type == "DELETED")
async def connection_deleted(namespace: str, name: str, **_: Any) -> None:
    if _controller is not None:
        _controller.connection_seen(namespace, name, None)


async def _check(connection: dict[str, Any]) -> None:
    try:
        status = await _step(controller().check_connection, connection)
        connection["status"] = status
    except Exception as exc:  # the next round tries again
        meta = connection["metadata"]
        log.warning("%s/%s: connection check failed: %s", meta["namespace"], meta["name"], exc)


async def _check_connections_forever() -> None:
    """Every CHECK_SECONDS: can each server be reached with its connection's credentials? The answer is the
    connection's Ready condition (`kubectl get conductorconnections`). Not a kopf timer: a timer puts a
    finalizer on every connection, which an uninstalled operator would leave stuck."""
    while True:
        await asyncio.sleep(connections.CHECK_SECONDS)
        for connection in controller().watched_connections():
            await _check(connection)


@kopf.on.event(builders.GROUP, builders.VERSION, builders.PLURAL, when=lambda type, **_: type == "DELETED")
async def worker_deleted(namespace: str, name: str, **_: Any) -> None:
    """A deleted ConductorWorker is forgotten (its children carry owner references: kube-controller-manager's
    garbage collector deletes them)."""
    if _controller is not None:
        _controller.forget(namespace, name)


async def _pause(stopped: kopf.DaemonStopped, wake: asyncio.Event, seconds: float) -> None:
    """Sleep until the interval ends, the daemon stops or someone else changed the Deployment."""
    waiters = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stopped.wait())]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    wake.clear()


async def _pause_at_zero(
    ctl: Controller, stopped: kopf.DaemonStopped, wake: asyncio.Event, seconds: float, body: kopf.Body
) -> None:
    """The pause of a fleet at zero: in short periods, each ending early when its queues grew (activation
    within about a second instead of up to one polling interval)."""
    period = ctl.config.activation_poll_seconds
    deadline = asyncio.get_running_loop().time() + seconds
    while not stopped:
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            return
        woken = wake.is_set()
        await _pause(stopped, wake, min(period, left))  # clears the wake: a set one returns at once
        if woken or stopped or left <= period:
            return
        if await _step(ctl.activation_due, plain(body)):
            return


@kopf.daemon(builders.GROUP, builders.VERSION, builders.PLURAL, id="loop", cancellation_timeout=5.0)
async def loop(
    stopped: kopf.DaemonStopped,
    body: kopf.Body,
    name: str,
    namespace: str,
    worker_deployments: kopf.Index,
    worker_pods: kopf.Index,
    **_: Any,
) -> None:
    """Async, so a thousand ConductorWorkers do not each hold one of kopf's threads for life (a sync
    daemon does, and past max_workers objects no other handler ran); each step runs on a thread.

    A step reconciles in full when the object's generation is not the one last reconciled (the first
    step after a create or an operator restart, or a new spec), else it autoscales or resyncs. Without
    autoscaling, the first pause is a random part of the interval, so a thousand loops started together
    do not tick together."""
    ctl = controller()
    state = ctl.state(namespace, name)
    first = True
    while not stopped:
        spec = body.get("spec") or {}
        autoscaling = builders.autoscaling_enabled(spec)
        interval = (
            float((spec.get("autoscaling") or {}).get("pollingIntervalSeconds") or 5)
            if autoscaling
            else ctl.config.resync_seconds
        )
        generation = (body.get("metadata") or {}).get("generation")
        fresh = state.applied.reconciled_generation != generation
        cached = snapshot(worker_deployments, worker_pods, namespace, name)
        try:
            if autoscaling:
                await _step(ctl.autoscale, plain(body), cached=cached, force=fresh)
            else:
                await _step(ctl.reconcile, plain(body), force=fresh, cached=cached)
        except Exception as exc:  # the loop must survive anything; the next round tries again
            log.exception("%s/%s: loop step failed: %s", namespace, name, exc)
            interval = min(interval, 5.0)
        if first and not autoscaling:
            interval *= random.uniform(0.5, 1.0)
        first = False
        if (body.get("metadata") or {}).get("generation") == generation:  # else a new spec came meanwhile
            if autoscaling and state.scaling.desired == 0 and ctl.config.activation_poll_seconds > 0:
                await _pause_at_zero(ctl, stopped, state.wake, interval, body)
            else:
                await _pause(stopped, state.wake, interval)
