"""kopf handlers, kept thin: they hand plain dicts to the Controller.

- create/update/resume: apply the children and write the status;
- one daemon per ConductorWorker: the autoscaler loop (every autoscaling.pollingIntervalSeconds) or,
  without autoscaling, a resync loop (drift correction and status);
- events of the managed Deployments wake the owner's loop at once when someone else changed them.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf
from kubernetes import client, config

from conductor_operator import builders
from conductor_operator.config import Config
from conductor_operator.controller import Controller
from conductor_operator.kube import Kube

log = logging.getLogger(__name__)
_controller: Controller | None = None
_executor: ThreadPoolExecutor | None = None  # the threads the per-object loops run their blocking steps on


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


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """kopf's settings and the Controller from the Config main put in the memo (defaults without one)."""
    global _controller, _executor
    cfg: Config = memo.get("config") or Config()
    settings.persistence.finalizer = f"{builders.GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=builders.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=builders.GROUP, key="last-handled-configuration"
    )
    settings.watching.server_timeout = cfg.watch_server_timeout
    settings.watching.client_timeout = cfg.watch_server_timeout + 30
    settings.watching.connect_timeout = 30
    settings.posting.level = logging.WARNING  # our own Events say what happened; kopf's only on trouble
    settings.execution.max_workers = cfg.max_workers
    _executor = ThreadPoolExecutor(cfg.max_workers, thread_name_prefix="cw-step")
    _controller = Controller(Kube(load_api_client(cfg)), cfg)


@kopf.on.cleanup()
def cleanup(**_: Any) -> None:
    if _controller is not None:
        _controller.scraper.close()
        _controller.queues.close()
        _controller.taskdefs.close()


@kopf.on.create(builders.GROUP, builders.VERSION, builders.PLURAL)
@kopf.on.update(builders.GROUP, builders.VERSION, builders.PLURAL)
@kopf.on.resume(builders.GROUP, builders.VERSION, builders.PLURAL)
def reconcile(body: kopf.Body, **_: Any) -> None:
    controller().reconcile(plain(body))


@kopf.on.delete(builders.GROUP, builders.VERSION, builders.PLURAL, optional=True)
def forget(name: str, namespace: str, **_: Any) -> None:
    # The children carry owner references: kube-controller-manager's garbage collector deletes them.
    controller().forget(namespace, name)


@kopf.daemon(builders.GROUP, builders.VERSION, builders.PLURAL, id="loop", cancellation_timeout=5.0)
async def loop(stopped: kopf.DaemonStopped, body: kopf.Body, name: str, namespace: str, **_: Any) -> None:
    """Async, so a thousand ConductorWorkers do not each hold one of kopf's threads for life (a sync
    daemon does, and past max_workers objects no other handler ran); each step runs on a thread."""
    ctl = controller()
    state = ctl.state(namespace, name)
    running = asyncio.get_running_loop()
    while not stopped:
        spec = body.get("spec") or {}
        autoscaling = builders.autoscaling_enabled(spec)
        interval = (
            float((spec.get("autoscaling") or {}).get("pollingIntervalSeconds") or 5)
            if autoscaling
            else ctl.config.resync_seconds
        )
        step = ctl.autoscale if autoscaling else functools.partial(ctl.reconcile, force=False)
        try:
            await running.run_in_executor(_executor, step, plain(body))
        except Exception as exc:  # the loop must survive anything; the next round tries again
            log.exception("%s/%s: loop step failed: %s", namespace, name, exc)
            interval = min(interval, 5.0)
        deadline = time.monotonic() + interval
        while not stopped and time.monotonic() < deadline:
            if state.wake.is_set():  # set by deployment_changed: someone else edited our Deployment
                state.wake.clear()
                break
            await asyncio.sleep(min(0.25, max(0.0, deadline - time.monotonic())))


@kopf.on.event("apps", "v1", "deployments", labels={"app.kubernetes.io/managed-by": builders.MANAGER})
def deployment_changed(body: kopf.Body, namespace: str, **_: Any) -> None:
    for ref in body.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("kind") == builders.KIND and ref.get("controller") and _controller is not None:
            _controller.wake(namespace, ref["name"], body.get("metadata", {}).get("generation"))
