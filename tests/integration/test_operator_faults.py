"""The operator under faults, on the real servers: Conductor unreachable (through the tests' fault proxy),
worker pods whose /metrics answer garbage, hang or drip, the API server restarted, the operator SIGKILLed
mid-scale, and two operator replicas with kopf peering.

Figures (times to fallback, recovery, reconnect, takeover, the replica sequence) are printed with `-s`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from kubernetes import client, config, watch
from prometheus_client.parser import text_string_to_metric_families

from conductor_operator import builders
from helpers import linear_workflow, task_def, unique, wait_for
from teststack import images, kube, procs
from teststack.config import StackConfig
from teststack.faultproxy import FaultProxy, Rule
from teststack.operator_process import OperatorProcess, free_port

pytestmark = [pytest.mark.kube, pytest.mark.conductor]

REPO = Path(__file__).resolve().parents[2]
INTERVAL = 1  # autoscaling.pollingIntervalSeconds
SLACK = 4.0  # one evaluation's own latency on a loaded 2-core machine (Conductor + scrape + apply)
UNRUN_IMAGE = "example.invalid/workers:1"  # no node has it and no registry serves it: pods never run
GROUP, VERSION, PLURAL = "conductor.io", "v1alpha1", "conductorworkers"


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crd(kubectl):
    kubectl(
        "apply",
        "-f",
        str(REPO / "crds" / "conductorworker.yaml"),
        "-f",
        str(REPO / "crds" / "conductorconnection.yaml"),
    )
    for name in ("conductorworkers", "conductorconnections"):
        kubectl("wait", "--for=condition=Established", f"crd/{name}.conductor.io", "--timeout=30s")


def free_port_pair() -> int:
    for _ in range(50):
        port = free_port()
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no two consecutive free ports")


@dataclasses.dataclass
class Plane:
    """A control plane: its StackConfig, kubeconfig, API client and a kubectl runner."""

    cfg: StackConfig
    kubectl_bin: Path
    api: client.ApiClient

    @property
    def kubeconfig(self) -> Path:
        return self.cfg.kubeconfig

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(self.kubectl_bin), f"--kubeconfig={self.kubeconfig}", *args],
            capture_output=True,
            text=True,
            check=check,
            input=input,
            timeout=120,
        )


@pytest.fixture(scope="module")
def plane(stack, kubeconfig, tmp_path_factory) -> Iterator[Plane]:
    """etcd + kube-apiserver + kube-controller-manager of this module only (same binaries and CA as the
    shared stack). Why: restarting an API server must not disturb the tests others run at the same time,
    and an operator other tests run cluster-wide on the shared one (e.g. the chart's, in a pod) would
    reconcile these ConductorWorkers too and fight over their replicas."""
    cache = tmp_path_factory.mktemp("plane")
    (cache / "run").mkdir()
    (cache / f"k8s-{stack.k8s_version}").symlink_to(stack.k8s_bin.parent)
    shutil.copytree(stack.run_dir / "pki", cache / "run" / "pki")
    cfg = dataclasses.replace(stack, cache=cache, etcd_port=free_port_pair(), apiserver_port=free_port())
    try:
        kube.start(cfg)
        p = Plane(cfg, stack.kubectl, config.new_client_from_config(config_file=str(cfg.kubeconfig)))
        p.kubectl(
            "apply",
            "-f",
            str(REPO / "crds" / "conductorworker.yaml"),
            "-f",
            str(REPO / "crds" / "conductorconnection.yaml"),
            "-f",
            str(REPO / "crds" / "kopf-peering.yaml"),
        )
        p.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=30s")
        yield p
        p.api.close()
    finally:
        kube.stop(cfg)


@pytest.fixture
def ns(plane) -> Iterator[str]:
    name = f"f-{uuid.uuid4().hex[:8]}"
    plane.kubectl("create", "namespace", name)
    yield name
    plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


def _operators(kubeconfig: Path, kubectl, namespace: str) -> Iterator[list[OperatorProcess]]:
    """Operators a test starts (appended to the list); at the end the ConductorWorkers are deleted while
    one still runs (its finalizer), then all are stopped."""
    ops: list[OperatorProcess] = []
    yield ops
    if ops and not any(op.proc and op.proc.poll() is None for op in ops):
        ops.append(OperatorProcess(kubeconfig, [namespace], ops[0].log_path.with_name("cleanup.log")).start())
    kubectl("delete", "conductorworkers", "--all", "-n", namespace, "--timeout=90s", check=False)
    for op in ops:
        op.stop()
        print(f"--- {op.log_path.name}\n{op.log_tail(60)}")


@pytest.fixture
def operators(plane, ns) -> Iterator[list[OperatorProcess]]:
    yield from _operators(plane.kubeconfig, plane.kubectl, ns)


@pytest.fixture
def shared_operators(kubeconfig, kubectl, namespace) -> Iterator[list[OperatorProcess]]:
    yield from _operators(kubeconfig, kubectl, namespace)


# -- helpers -------------------------------------------------------------------------------------


def cw_body(name: str, server_url: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ConductorWorker",
        "metadata": {"name": name},
        "spec": {"conductor": {"serverUrl": server_url}, "image": UNRUN_IMAGE, "tasks": [{"name": "noop"}], **spec},
    }


def get_cw(api: client.ApiClient, ns: str, name: str) -> dict[str, Any]:
    return client.CustomObjectsApi(api).get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)


def patch_cw(api: client.ApiClient, ns: str, name: str, spec: dict[str, Any]) -> None:
    client.CustomObjectsApi(api).patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name, {"spec": spec})


def cond(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == type_), {})


def dep_replicas(api: client.ApiClient, ns: str, name: str) -> int | None:
    try:
        return client.AppsV1Api(api).read_namespaced_deployment(name, ns).spec.replicas
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def events(api: client.ApiClient, ns: str, reason: str) -> list[Any]:
    return client.CoreV1Api(api).list_namespaced_event(ns, field_selector=f"reason={reason}").items


def op_metric(op: OperatorProcess, metric: str, /, **labels: str) -> float:
    """The sum of the operator's samples called `metric` with these labels (0 when none)."""
    text = requests.get(op.metrics_url, timeout=5).text
    return sum(
        s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name == metric and all(s.labels.get(k) == v for k, v in labels.items())
    )


def has_series(op: OperatorProcess, metric: str, /, **labels: str) -> bool:
    text = requests.get(op.metrics_url, timeout=5).text
    return any(
        s.name == metric and all(s.labels.get(k) == v for k, v in labels.items())
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    )


def backlog(conductor_client, prefix: str, count: int) -> tuple[str, list[str]]:
    """A task type of this test only with `count` tasks waiting in its queue (no worker polls it)."""
    task = unique(prefix)
    conductor_client.register_task_defs([task_def(task)])
    wf = f"{task}_wf"
    conductor_client.register_workflow(linear_workflow(wf, [(task, "t", {})]))
    with ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(lambda _: conductor_client.start_workflow(wf, {}), range(count)))
    return task, ids


def terminate(conductor_client, ids: list[str]) -> None:
    def one(wid: str) -> None:
        with contextlib.suppress(Exception):
            conductor_client.request("DELETE", f"/workflow/{wid}", params={"reason": "test cleanup"})

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, ids))


class ReplicaRecorder:
    """Every change of a Deployment's spec.replicas, informer-style: one list, then a watch resumed from
    the last resourceVersion seen (a fresh watch would replay a possibly stale cached state).
    changes: [(monotonic time, replicas, generation)]."""

    def __init__(self, api: client.ApiClient, ns: str, name: str) -> None:
        self.apps = client.AppsV1Api(api)
        self.ns, self.name = ns, name
        self.changes: list[tuple[float, int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="replica-recorder")

    def __enter__(self) -> ReplicaRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    @property
    def values(self) -> list[int]:
        return [r for _, r, _ in self.changes]

    def _see(self, dep: Any) -> None:
        if not self.changes or self.changes[-1][1] != dep.spec.replicas:
            self.changes.append((time.monotonic(), dep.spec.replicas, dep.metadata.generation))

    def _run(self) -> None:
        selector = f"metadata.name={self.name}"
        rv = None
        while not self._stop.is_set():
            try:
                if rv is None:
                    listed = self.apps.list_namespaced_deployment(self.ns, field_selector=selector)
                    for dep in listed.items:
                        self._see(dep)
                    rv = listed.metadata.resource_version
                w = watch.Watch()
                for ev in w.stream(
                    self.apps.list_namespaced_deployment,
                    self.ns,
                    field_selector=selector,
                    resource_version=rv,
                    timeout_seconds=5,
                ):
                    if ev["type"] == "ERROR":
                        rv = None  # 410 Gone: list again
                        break
                    rv = ev["object"].metadata.resource_version
                    if ev["type"] != "DELETED":
                        self._see(ev["object"])
                    if self._stop.is_set():
                        w.stop()
                        break
            except client.ApiException as exc:
                if exc.status == 410:
                    rv = None
                self._stop.wait(0.2)
            except Exception:
                self._stop.wait(0.2)


# -- a. Conductor unreachable --------------------------------------------------------------------


def test_conductor_unreachable_falls_back_reports_and_recovers(
    plane, ns, operators, conductor_url, conductor_client, tmp_path
):
    kubectl, k8s_api, namespace, kubeconfig = plane.kubectl, plane.api, ns, plane.kubeconfig
    proxy = FaultProxy(upstream=conductor_url.removesuffix("/api")).start()
    task, ids = backlog(conductor_client, "cwo_unreach", 0)
    try:
        op = OperatorProcess(kubeconfig, [namespace], tmp_path / "operator.log").start()
        operators.append(op)
        body = cw_body(
            "unreach",
            f"{proxy.url}/api",
            tasks=[{"name": task}],
            autoscaling={
                "enabled": True,
                "minReplicas": 1,
                "maxReplicas": 5,
                "fallbackReplicas": 2,
                "targetQueueDepthPerReplica": 10,
                "pollingIntervalSeconds": INTERVAL,
                "scaleDown": {"stabilizationWindowSeconds": 0},
            },
        )
        kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(body))

        def reachable(value: str):
            def check():
                obj = get_cw(k8s_api, namespace, "unreach")
                return cond(obj, "ConductorReachable").get("status") == value and obj

            return check

        wait_for(reachable("True"), 30, "ConductorReachable=True through the proxy")
        wait_for(lambda: dep_replicas(k8s_api, namespace, "unreach") == 1, 15, "1 replica (no backlog)")

        # 1. Black hole: the queue-size request hangs until the operator's client timeout.
        proxy.set_rules(Rule(path=r"^/api/tasks/queue", blackhole=1.0))
        blackholed = time.monotonic()
        wait_for(lambda: dep_replicas(k8s_api, namespace, "unreach") == 2, 30, "fallbackReplicas 2 (black hole)")
        to_fallback = time.monotonic() - blackholed
        # the step scales the Deployment, then writes the status: a read between the two sees the last one
        obj = wait_for(
            lambda: (
                (o := reachable("False")()) and "fallback proposes 2" in o["status"].get("lastDecisionReason", "") and o
            ),
            15,
            "ConductorReachable=False and the fallback in the status",
        )
        c = cond(obj, "ConductorReachable")
        assert c["reason"] == "QueueDepthUnavailable" and "Timeout" in c["message"], c
        warning = wait_for(lambda: events(k8s_api, namespace, "ConductorUnreachable"), 15, "a Warning Event")
        assert warning[0].type == "Warning" and warning[0].involved_object.name == "unreach"
        assert proxy.injected["blackhole"] >= 1

        # 2. Then 5xx: still unreachable, still the fallback; a backlog builds up meanwhile.
        proxy.set_rules(Rule(path=r"^/api/tasks/queue", error5xx=1.0))
        _, more = backlog_into(conductor_client, task, 35)
        ids += more
        obj = wait_for(
            lambda: (
                "HTTP 503" in cond(o := get_cw(k8s_api, namespace, "unreach"), "ConductorReachable")["message"] and o
            ),
            20,
            "the 503 in the ConductorReachable message",
        )
        assert cond(obj, "ConductorReachable")["status"] == "False"
        assert dep_replicas(k8s_api, namespace, "unreach") == 2
        assert proxy.injected["error5xx"] >= 1
        errors = op_metric(op, "conductor_operator_conductor_errors_total", namespace=namespace, name="unreach")
        assert errors >= 2, errors
        assert len(events(k8s_api, namespace, "ConductorUnreachable")) == 1  # one Event per transition

        # 3. Unblocked: reachable again and back to normal decisions (backlog 35 / 10 per replica -> 4).
        proxy.set_rules()
        unblocked = time.monotonic()
        obj = wait_for(reachable("True"), 20, "ConductorReachable=True again")
        to_reachable = time.monotonic() - unblocked
        wait_for(lambda: dep_replicas(k8s_api, namespace, "unreach") == 4, 20, "4 replicas for a backlog of 35")
        to_recovered = time.monotonic() - unblocked
        obj = wait_for(
            lambda: (o := get_cw(k8s_api, namespace, "unreach"))["status"].get("totalQueueDepth") == 35 and o,
            15,
            "status.totalQueueDepth 35",
        )
        assert "queue proposes 4" in obj["status"]["lastDecisionReason"], obj["status"]
        recovered = wait_for(lambda: events(k8s_api, namespace, "ConductorReachable"), 15, "a Normal Event")
        assert recovered[0].type == "Normal"
        assert op.proc.poll() is None
        print(
            f"\nFIGURES conductor unreachable: fallback after {to_fallback:.1f}s of black hole; "
            f"reachable {to_reachable:.1f}s and 4 replicas {to_recovered:.1f}s after unblocking; "
            f"faults injected {dict(proxy.injected)}"
        )
    finally:
        proxy.stop()
        terminate(conductor_client, ids)


def backlog_into(conductor_client, task: str, count: int) -> tuple[str, list[str]]:
    wf = f"{task}_wf"
    with ThreadPoolExecutor(4) as pool:
        return task, list(pool.map(lambda _: conductor_client.start_workflow(wf, {}), range(count)))


# -- b. /metrics garbage, hanging, dripping ------------------------------------------------------


class BadMetrics:
    """A raw TCP 'metrics endpoint' on ip:port that misbehaves: `garbage` (200 with unparsable text),
    `hang` (reads the request, never answers) or `drip` (headers, then one byte every 0.2 s, forever)."""

    def __init__(self, ip: str, port: int, mode: str) -> None:
        self.mode = mode
        self.sock = socket.create_server((ip, port))
        self.lock = threading.Lock()
        self.open = self.accepted = 0
        self.stopping = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with self.lock:
            self.open += 1
            self.accepted += 1
        try:
            conn.settimeout(0.5)
            conn.recv(65536)
            if self.mode == "garbage":
                body = b"worker_busy_slots{{{ not prometheus \x00\xff\n" * 10
                head = f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
                conn.sendall(head.encode() + b"Connection: close\r\n\r\n" + body)
            elif self.mode == "hang":
                while not self.stopping.is_set():  # until the client gives up and closes
                    try:
                        if conn.recv(1) == b"":
                            break
                    except TimeoutError:
                        continue
            else:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n")
                while not self.stopping.is_set():
                    conn.sendall(b"#")
                    time.sleep(0.2)
        except OSError:
            pass
        finally:
            conn.close()
            with self.lock:
                self.open -= 1

    def close(self) -> None:
        self.stopping.set()
        self.sock.close()


def bind_bad_servers(modes: dict[str, str]) -> tuple[int, dict[str, BadMetrics]]:
    """The same free port on each fake pod IP (the ConductorWorker's metrics.port is one for all pods)."""
    for _ in range(20):
        port = free_port("0.0.0.0")
        servers: dict[str, BadMetrics] = {}
        try:
            for ip, mode in modes.items():
                servers[ip] = BadMetrics(ip, port, mode)
            return port, servers
        except OSError:
            for s in servers.values():
                s.close()
    raise RuntimeError("no port free on all fake pod IPs")


def test_bad_pod_metrics_are_timed_out_counted_and_do_not_stop_the_loop(
    crd, node, stack, shared_operators, kubectl, k8s_api, namespace, conductor_client, kubeconfig, tmp_path
):
    """On the shared control plane: the worker pod must run (the real node)."""
    operators = shared_operators
    fakes = {"127.0.0.251": "garbage", "127.0.0.252": "hang", "127.0.0.253": "drip", "127.0.0.254": "drip"}
    port, servers = bind_bad_servers(fakes)
    try:
        task = unique("cwo_scrape")
        conductor_client.register_task_defs([task_def(task)])
        op = OperatorProcess(kubeconfig, [namespace], tmp_path / "operator.log").start()
        operators.append(op)
        body = cw_body(
            "scrapes",
            stack.pod_conductor_url,
            image=images.TEST_WORKERS_IMAGE,
            imagePullPolicy="Never",
            modules=["sleep_workers"],
            tasks=[{"name": task, "concurrency": 3, "pollTimeoutMs": 500}],
            terminationGracePeriodSeconds=5,
            metrics={"port": port},
            template={"env": [{"name": "CWO_SLEEP_TASKS", "value": task}]},
            autoscaling={"enabled": True, "minReplicas": 1, "maxReplicas": 1, "pollingIntervalSeconds": INTERVAL},
        )
        kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(body))

        def capacity(value: int):
            return lambda: (
                (o := get_cw(k8s_api, namespace, "scrapes")).get("status", {}).get("slotCapacity") == value and o
            )

        wait_for(capacity(3), 60, "the real worker pod scraped (slotCapacity 3)")
        labels = {"namespace": namespace, "name": "scrapes"}

        # Pods of the ConductorWorker (its pod template's labels, no pod-template-hash: no ReplicaSet
        # adopts them) whose status says Running on the fake IPs, as a kubelet would report them. A
        # scheduling gate keeps them off the real node, so no kubelet ever reports on them.
        core = client.CoreV1Api(k8s_api)
        template = client.AppsV1Api(k8s_api).read_namespaced_deployment("scrapes", namespace).spec.template
        pod_labels = {k: v for k, v in template.metadata.labels.items() if k != "pod-template-hash"}
        assert builders.selector_labels("scrapes").items() <= pod_labels.items()
        for ip, mode in fakes.items():
            pod_name = f"fake-{mode}-{ip.rsplit('.', 1)[1]}"
            pod = {
                "metadata": {"name": pod_name, "labels": pod_labels},
                "spec": {
                    "containers": [{"name": "main", "image": UNRUN_IMAGE}],
                    "schedulingGates": [{"name": "conductor.io/fake-pod"}],
                },
            }
            core.create_namespaced_pod(namespace, pod)
            core.patch_namespaced_pod_status(
                pod_name, namespace, {"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}}
            )
        errors0 = op_metric(op, "conductor_operator_scrape_errors_total", **labels)

        # Every fake is counted as a scrape error, in every evaluation.
        wait_for(
            lambda: op_metric(op, "conductor_operator_scrape_errors_total", **labels) >= errors0 + 2 * len(fakes),
            30,
            "scrape errors of two evaluations counted",
        )
        # The loop keeps its pace: an evaluation costs one interval plus about one scrape timeout (2 s), not
        # one timeout per bad pod.
        decisions1, paced = op_metric(op, "conductor_operator_scale_decisions_total", **labels), time.monotonic()
        wait_for(
            lambda: op_metric(op, "conductor_operator_scale_decisions_total", **labels) >= decisions1 + 3,
            3 * (INTERVAL + 2 + 1) + SLACK,
            "3 more autoscaler evaluations with 4 bad pods",
        )
        pace = (time.monotonic() - paced) / 3
        # The real pod is still scraped, the operator is alive and has not crashed.
        obj = wait_for(capacity(3), 10, "slotCapacity still 3 (the real pod)")
        assert obj["status"]["busySlots"] == 0
        assert op.proc.poll() is None
        assert requests.get(f"http://127.0.0.1:{op.liveness_port}/healthz", timeout=5).ok
        # Every scrape is cut off: no connection to a bad pod stays open (no scrape thread held by it).
        for ip, server in servers.items():
            assert server.accepted >= 2, (ip, server.mode, server.accepted)
        drips = [s for s in servers.values() if s.mode == "drip"]
        wait_for(lambda: all(s.open <= 1 for s in drips), 10, "drip connections closed by the operator")
        assert sum(s.accepted for s in drips) >= 4
        print(
            f"\nFIGURES bad /metrics: {len(fakes)} bad pods, one evaluation every {pace:.1f}s, "
            f"{op_metric(op, 'conductor_operator_scrape_errors_total', **labels) - errors0:.0f} scrape errors counted, "
            f"connections accepted {[(s.mode, s.accepted) for s in servers.values()]}"
        )
        for ip, mode in fakes.items():
            core.delete_namespaced_pod(f"fake-{mode}-{ip.rsplit('.', 1)[1]}", namespace, grace_period_seconds=0)
    finally:
        for s in servers.values():
            s.close()


# -- d. operator SIGKILLed mid-scale --------------------------------------------------------------


def test_operator_killed_mid_scale_resumes_without_flapping(plane, ns, operators, conductor_client, tmp_path):
    kubectl, k8s_api, namespace, kubeconfig = plane.kubectl, plane.api, ns, plane.kubeconfig
    step_period = 3  # scaleUp: one pod per 3 s, so the scale-up from 1 to 5 takes several evaluations
    task, ids = backlog(conductor_client, "cwo_kill", 0)
    try:
        unbuffered = {"PYTHONUNBUFFERED": "1"}  # its log must survive the SIGKILL
        op = OperatorProcess(kubeconfig, [namespace], tmp_path / "operator-1.log", env=unbuffered).start()
        operators.append(op)
        body = cw_body(
            "killed",
            conductor_client.base_url,
            tasks=[{"name": task}],
            autoscaling={
                "enabled": True,
                "minReplicas": 1,
                "maxReplicas": 5,
                "targetQueueDepthPerReplica": 10,
                "pollingIntervalSeconds": INTERVAL,
                "scaleUp": {
                    "stabilizationWindowSeconds": 0,
                    "policies": [{"type": "Pods", "value": 1, "periodSeconds": step_period}],
                },
            },
        )
        kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(body))
        wait_for(lambda: dep_replicas(k8s_api, namespace, "killed") == 1, 30, "1 replica (no backlog)")
        with ReplicaRecorder(k8s_api, namespace, "killed") as rec:
            wait_for(lambda: rec.values == [1], 10, "the recorder's first view")
            ids += backlog_into(conductor_client, task, 50)[1]  # backlog 50 -> 5 replicas
            wait_for(lambda: 3 in rec.values, 30, "the scale-up reaching 3", interval=0.05)
            op.proc.kill()  # SIGKILL, mid-scale
            op.proc.wait(10)
            killed = time.monotonic()
            at_kill = dep_replicas(k8s_api, namespace, "killed")
            op2 = OperatorProcess(kubeconfig, [namespace], tmp_path / "operator-2.log", env=unbuffered).start()
            operators.append(op2)
            live = time.monotonic()
            wait_for(lambda: 4 in rec.values, INTERVAL + 2 * SLACK, "the next step after the restart", interval=0.05)
            first_step = next(t for t, r, _ in rec.changes if r == 4) - live  # < 0: before /healthz answered
            wait_for(lambda: 5 in rec.values, step_period + INTERVAL + 2 * SLACK, "5 replicas", interval=0.05)
            # Hold: nothing moves once converged (three more evaluations).
            settled = len(rec.changes)
            wait_for(
                lambda: (
                    op_metric(op2, "conductor_operator_scale_decisions_total", namespace=namespace, direction="none")
                    >= 3
                ),
                3 * (INTERVAL + SLACK),
                "three evaluations at 5",
            )
            values = rec.values
            assert len(rec.changes) == settled, rec.changes
        assert values == [1, 2, 3, 4, 5], f"replicas flapped: {rec.changes}"
        assert at_kill == 3
        assert first_step <= INTERVAL + SLACK, f"first step {first_step:.1f}s after the restarted operator was live"
        scaled = [e.message for e in events(k8s_api, namespace, "Scaled")]
        assert scaled and all(int(m.split()[2]) < int(m.split()[4].rstrip(":")) for m in scaled), (
            scaled
        )  # "Scaled from A to B: ..." only upwards
        log = op2.log_path.read_text(errors="replace")
        assert "Traceback" not in log, op2.log_tail(80)
        steps = [f"{r}@{t - rec.changes[0][0]:.1f}s" for t, r, _ in rec.changes]
        print(
            f"\nFIGURES kill mid-scale: replicas {steps}; killed at 3, restarted live after "
            f"{live - killed:.1f}s, first step {first_step + live - killed:.1f}s after the kill"
        )
    finally:
        terminate(conductor_client, ids)


# -- e. two operator replicas with peering -------------------------------------------------------


def test_two_operator_replicas_only_one_acts_and_the_other_takes_over(plane, ns, operators, tmp_path):
    kubectl, k8s_api, namespace, kubeconfig = plane.kubectl, plane.api, ns, plane.kubeconfig
    peering = "cwo-peering"
    kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps({"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": peering}}),
    )
    lifetime = {"CWO_PEERING_LIFETIME": "20"}  # the standby takes over within 20 s, not kopf's 60
    low = OperatorProcess(kubeconfig, [namespace], tmp_path / "operator-low.log", lifetime, peering, priority=10)
    operators.append(low.start())
    high = OperatorProcess(kubeconfig, [namespace], tmp_path / "operator-high.log", lifetime, peering, priority=20)
    operators.append(high.start())
    wait_for(lambda: "Pausing operations in favour of" in low.log_tail(200), 30, "the low-priority replica pausing")

    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(cw_body("peered", "http://127.0.0.1:1/api")))
    wait_for(lambda: dep_replicas(k8s_api, namespace, "peered") == 1, 30, "the Deployment")
    patch_cw(k8s_api, namespace, "peered", {"replicas": 2})
    wait_for(lambda: dep_replicas(k8s_api, namespace, "peered") == 2, 20, "replicas 2")
    labels = {"namespace": namespace, "name": "peered"}
    wait_for(
        lambda: op_metric(high, "conductor_operator_reconciles_total", **labels) >= 2, 10, "the active one's applies"
    )
    assert not has_series(low, "conductor_operator_reconciles_total", **labels), "the paused replica acted"
    assert not has_series(low, "conductor_operator_current_replicas", **labels), "the paused replica wrote status"
    assert "peered" not in low.log_path.read_text(errors="replace")

    # The active replica crashes: the other resumes once the dead one's peering record expires.
    resumed = low.log_path.read_text(errors="replace").count("Resuming operations after the pause")
    high.proc.kill()
    high.proc.wait(10)
    killed = time.monotonic()
    patch_cw(k8s_api, namespace, "peered", {"replicas": 3})
    wait_for(lambda: dep_replicas(k8s_api, namespace, "peered") == 3, 90, "the standby replica applying replicas 3")
    takeover = time.monotonic() - killed
    assert takeover < 20 + 15, f"the standby took {takeover:.0f}s with a 20 s peering lifetime"
    log = low.log_path.read_text(errors="replace")
    assert log.count("Resuming operations after the pause") > resumed, low.log_tail(80)
    wait_for(lambda: op_metric(low, "conductor_operator_reconciles_total", **labels) >= 1, 10, "the standby's applies")
    obj = wait_for(
        lambda: (o := get_cw(k8s_api, namespace, "peered")).get("status", {}).get("desiredReplicas") == 3 and o,
        20,
        "status written by the standby",
    )
    assert cond(obj, "Degraded")["status"] == "False"
    print(f"\nFIGURES peering: standby took over {takeover:.1f}s after SIGKILL of the active replica (lifetime 20s)")


# -- c. API server restarted ---------------------------------------------------------------------


def test_apiserver_restart_operator_reconnects_and_converges(plane, ns, operators, conductor_url, tmp_path):
    """Last in the module: it restarts the module's API server (the shared one is left alone)."""
    cfg, api = plane.cfg, plane.api
    op = OperatorProcess(cfg.kubeconfig, [ns], tmp_path / "operator.log").start()
    operators.append(op)
    plane.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(cw_body("steady", conductor_url)))
    wait_for(lambda: dep_replicas(api, ns, "steady") == 1, 30, "the Deployment with 1 replica")
    generation = get_cw(api, ns, "steady")["metadata"]["generation"]
    wait_for(
        lambda: get_cw(api, ns, "steady").get("status", {}).get("observedGeneration") == generation,
        20,
        "status observed",
    )

    downtime = kube.restart_apiserver(cfg)
    back = time.monotonic()
    assert procs.running_pid(cfg.run_dir, kube.ETCD), "etcd kept running"
    assert dep_replicas(api, ns, "steady") == 1, "the objects survived the restart (etcd kept)"
    assert op.proc.poll() is None, op.log_tail()

    # A spec change made after the restart reaches the Deployment: the watch reconnected.
    patch_cw(api, ns, "steady", {"replicas": 3, "tasks": [{"name": "noop", "concurrency": 5}]})

    def converged():
        d = client.AppsV1Api(api).read_namespaced_deployment("steady", ns)
        env = {e.name: e.value for e in d.spec.template.spec.containers[0].env}
        return d.spec.replicas == 3 and env.get("CONDUCTOR_WORKER_NOOP_THREAD_COUNT") == "5"

    wait_for(converged, 60, "the post-restart spec change applied", interval=0.2)
    reconnect = time.monotonic() - back
    obj = wait_for(
        lambda: (
            (o := get_cw(api, ns, "steady")).get("status", {}).get("observedGeneration") == o["metadata"]["generation"]
            and o["status"].get("desiredReplicas") == 3
            and o
        ),
        30,
        "the status of the new generation",
    )
    assert cond(obj, "Degraded")["status"] == "False"
    assert op.proc.poll() is None, op.log_tail()
    print(f"\nFIGURES API server restart: down {downtime:.1f}s; change applied {reconnect:.1f}s after it was back")
