"""A local node agent for tests and the demo: runs Pods of the local API server as local processes.

There is no kubelet on this machine. This agent does the part of a kubelet the product needs:
it registers a Node, binds Pods whose image it knows to it, runs each as a process (the
worker-runtime image -> `conductor-worker`, the operator image -> `conductor-operator`) with the
Pod's env, args and a ServiceAccount token from the TokenRequest API (so RBAC applies for real),
gives each Pod its own loopback address (127.0.0.N) as podIP, reports Running/Ready from the
readiness probe, and on deletion sends SIGTERM, waits the grace period, then removes the Pod.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

log = logging.getLogger("nodeagent")

NODE_NAME = "cwo-local-node"
REPO_ROOT = Path(__file__).resolve().parent.parent
# image repository -> (entrypoint, default CMD, image ENV), as the project's Dockerfile targets define
# them; the worker image's /workers directory is stood in for by the repo's example workers.
IMAGES = {
    "conductor-worker-runtime": (
        ["conductor-worker"],
        ["run"],
        {"CONDUCTOR_WORKER_PATH": str(REPO_ROOT / "examples" / "workers")},
    ),
    "conductor-worker-operator": (["conductor-operator"], [], {}),
}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def image_command(image: str) -> tuple[list[str], list[str], dict[str, str]] | None:
    """The (entrypoint, cmd) of a known image, matched by repository name without registry and tag."""
    repo = image.rsplit("/", 1)[-1].split("@", 1)[0].split(":", 1)[0]
    return IMAGES.get(repo)


@dataclass
class PodProcess:
    uid: str
    namespace: str
    name: str
    ip: str
    proc: subprocess.Popen
    readiness: dict[str, Any] | None
    workdir: Path
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    ready: bool = False
    restarts: int = 0
    restart_at: float | None = None
    terminating: bool = False
    started: str = field(default_factory=_now)


class NodeAgent:
    def __init__(self, kubeconfig: str, workdir: Path, bin_dir: Path | None = None) -> None:
        self.api_client = config.new_client_from_config(config_file=kubeconfig)
        self.core = client.CoreV1Api(self.api_client)
        self.server = self.api_client.configuration.host
        self.ca_file = self.api_client.configuration.ssl_ca_cert
        self.workdir = workdir
        self.bin_dir = bin_dir or Path(sys.executable).parent
        self.pods: dict[str, PodProcess] = {}
        self.claimed: set[str] = set()  # pod uids being started or run, so no event starts one twice
        self.free_ips = [f"127.0.0.{n}" for n in range(10, 250)]
        self.lock = threading.RLock()
        self.stopping = threading.Event()

    # -- node ------------------------------------------------------------------------------------

    def register_node(self) -> None:
        body = client.V1Node(metadata=client.V1ObjectMeta(name=NODE_NAME, labels={"kubernetes.io/hostname": NODE_NAME}))
        with contextlib.suppress(ApiException):
            self.core.create_node(body)
        self._node_heartbeat()

    def _node_heartbeat(self) -> None:
        now = _now()
        status = {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "LocalAgentReady",
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": now,
                }
            ],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "capacity": {"cpu": "64", "memory": "256Gi", "pods": "250"},
            "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "250"},
        }
        self.core.patch_node_status(NODE_NAME, {"status": status})

    # -- pods ------------------------------------------------------------------------------------

    def _env(self, pod: Any, container: Any, ip: str) -> dict[str, str]:
        ns = pod.metadata.namespace
        env: dict[str, str] = {}
        for source in container.env_from or []:
            prefix = source.prefix or ""
            if source.secret_ref:
                secret = self.core.read_namespaced_secret(source.secret_ref.name, ns)
                env |= {prefix + k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
            if source.config_map_ref:
                cm = self.core.read_namespaced_config_map(source.config_map_ref.name, ns)
                env |= {prefix + k: v for k, v in (cm.data or {}).items()}
        fields = {
            "metadata.name": pod.metadata.name,
            "metadata.namespace": ns,
            "status.podIP": ip,
            "spec.serviceAccountName": pod.spec.service_account_name or "default",
            "spec.nodeName": NODE_NAME,
            "status.hostIP": "127.0.0.1",
        }
        for var in container.env or []:
            if var.value_from is None:
                env[var.name] = _expand(var.value or "", env)
            elif var.value_from.secret_key_ref:
                ref = var.value_from.secret_key_ref
                try:
                    data = self.core.read_namespaced_secret(ref.name, ns).data or {}
                    env[var.name] = base64.b64decode(data[ref.key]).decode()
                except (ApiException, KeyError):
                    if not ref.optional:
                        raise
            elif var.value_from.config_map_key_ref:
                ref = var.value_from.config_map_key_ref
                env[var.name] = (self.core.read_namespaced_config_map(ref.name, ns).data or {}).get(ref.key, "")
            elif var.value_from.field_ref:
                env[var.name] = fields.get(var.value_from.field_ref.field_path, "")
        return env

    def _service_account_kubeconfig(self, pod: Any, directory: Path) -> Path:
        """A kubeconfig with a bound ServiceAccount token, as a kubelet would project one."""
        sa = pod.spec.service_account_name or "default"
        request = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(
                audiences=[],
                expiration_seconds=3600 * 24,
                bound_object_ref=client.V1BoundObjectReference(
                    kind="Pod", api_version="v1", name=pod.metadata.name, uid=pod.metadata.uid
                ),
            )
        )
        token = self.core.create_namespaced_service_account_token(sa, pod.metadata.namespace, request).status.token
        path = directory / "kubeconfig"
        path.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters: [{{name: local, cluster: {{server: '{self.server}', certificate-authority: '{self.ca_file}'}}}}]\n"
            f"users: [{{name: sa, user: {{token: '{token}'}}}}]\n"
            f"contexts: [{{name: sa, context: {{cluster: local, user: sa, namespace: {pod.metadata.namespace}}}}}]\n"
            "current-context: sa\n"
        )
        path.chmod(0o600)
        return path

    def _start(self, pod: Any) -> None:
        container = pod.spec.containers[0]
        known = image_command(container.image)
        if known is None:
            return
        with self.lock:
            if pod.metadata.uid in self.pods or not self.free_ips:
                self.claimed.discard(pod.metadata.uid)
                return
            ip = self.free_ips.pop(0)
        entry, cmd, image_env = known
        argv = list(container.command or entry) + list(container.args or ([] if container.command else cmd))
        argv[0] = str(self.bin_dir / argv[0]) if (self.bin_dir / argv[0]).exists() else argv[0]
        workdir = self.workdir / f"{pod.metadata.namespace}_{pod.metadata.name}"
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            self._bind(pod)
            env = self._env(pod, container, ip)
            kubeconfig = self._service_account_kubeconfig(pod, workdir)
        except ApiException as exc:
            log.warning("cannot start pod %s/%s: %s", pod.metadata.namespace, pod.metadata.name, exc.reason)
            with self.lock:
                self.free_ips.insert(0, ip)
                self.claimed.discard(pod.metadata.uid)
            return
        base_env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "PYTHONPATH", "TMPDIR")}
        env = {
            **base_env,
            **image_env,
            **env,
            "HOSTNAME": pod.metadata.name,
            "KUBECONFIG": str(kubeconfig),
            "PYTHONUNBUFFERED": "1",
            **_network_env(env, ip),
        }
        proc = _spawn(argv, env, workdir)
        probe = container.readiness_probe.to_dict() if container.readiness_probe else None
        pp = PodProcess(
            pod.metadata.uid, pod.metadata.namespace, pod.metadata.name, ip, proc, probe, workdir, argv=argv, env=env
        )
        pp.ports = {p.name: p.container_port for p in (container.ports or []) if p.name}  # type: ignore[attr-defined]
        with self.lock:
            self.pods[pod.metadata.uid] = pp
        log.info("started %s/%s as pid %d on %s: %s", pp.namespace, pp.name, proc.pid, ip, " ".join(argv))
        self._report(pp)

    def _bind(self, pod: Any) -> None:
        if pod.spec.node_name:
            return
        target = client.V1ObjectReference(kind="Node", name=NODE_NAME, api_version="v1")
        body = client.V1Binding(metadata=client.V1ObjectMeta(name=pod.metadata.name), target=target)
        # the generated client cannot parse the Status this returns; the binding is made all the same
        with contextlib.suppress(ValueError):
            self.core.create_namespaced_binding(pod.metadata.namespace, body, _preload_content=False)

    def _report(self, pp: PodProcess) -> None:
        running = pp.proc.poll() is None
        now = _now()
        ready = "True" if (running and pp.ready) else "False"
        state = (
            {"running": {"startedAt": pp.started}}
            if running
            else {
                "terminated": {
                    "exitCode": pp.proc.returncode,
                    "reason": "Completed" if pp.proc.returncode == 0 else "Error",
                }
            }
        )
        status = {
            "phase": "Running",
            "podIP": pp.ip,
            "podIPs": [{"ip": pp.ip}],
            "hostIP": "127.0.0.1",
            "startTime": pp.started,
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": pp.started},
                {"type": "Initialized", "status": "True", "lastTransitionTime": pp.started},
                {"type": "ContainersReady", "status": ready, "lastTransitionTime": now},
                {"type": "Ready", "status": ready, "lastTransitionTime": now},
            ],
            "containerStatuses": [
                {
                    "name": "main",
                    "ready": ready == "True",
                    "restartCount": pp.restarts,
                    "image": "local",
                    "imageID": "local",
                    "state": state,
                    "started": running,
                }
            ],
        }
        with contextlib.suppress(ApiException):
            self.core.patch_namespaced_pod_status(pp.name, pp.namespace, {"status": status})

    def _probe(self, pp: PodProcess) -> bool:
        if pp.proc.poll() is not None:
            return False
        probe = pp.readiness or {}
        http = probe.get("http_get")
        if not http:
            return True
        port = http["port"]
        port = pp.ports.get(port, port) if isinstance(port, str) else port  # type: ignore[attr-defined]
        try:
            return requests.get(f"http://{pp.ip}:{port}{http.get('path') or '/'}", timeout=1).status_code < 400
        except requests.RequestException:
            return False

    def _terminate(self, pp: PodProcess, grace: int) -> None:
        """SIGTERM, wait the grace period, SIGKILL; then remove the Pod as the kubelet does."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pp.proc.pid, signal.SIGTERM)
        try:
            pp.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            log.warning("%s/%s did not stop within %ds: SIGKILL", pp.namespace, pp.name, grace)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pp.proc.pid, signal.SIGKILL)
            pp.proc.wait()
        log.info("%s/%s exited with %s", pp.namespace, pp.name, pp.proc.returncode)
        with contextlib.suppress(ApiException):
            self.core.delete_namespaced_pod(
                pp.name,
                pp.namespace,
                body=client.V1DeleteOptions(grace_period_seconds=0, preconditions=client.V1Preconditions(uid=pp.uid)),
            )
        with self.lock:
            self.pods.pop(pp.uid, None)
            self.claimed.discard(pp.uid)
            self.free_ips.append(pp.ip)

    # -- loops -----------------------------------------------------------------------------------

    def _on_pod(self, event_type: str, pod: Any) -> None:
        uid = pod.metadata.uid
        with self.lock:
            pp = self.pods.get(uid)
        if event_type == "DELETED":
            if pp and not pp.terminating:
                pp.terminating = True
                threading.Thread(target=self._terminate, args=(pp, 0), daemon=True).start()
            return
        if pod.metadata.deletion_timestamp:
            if pp and not pp.terminating:
                pp.terminating = True
                grace = pod.metadata.deletion_grace_period_seconds
                grace = pod.spec.termination_grace_period_seconds if grace is None else grace
                threading.Thread(target=self._terminate, args=(pp, int(grace or 30)), daemon=True).start()
            elif pp is None and pod.spec.node_name == NODE_NAME:
                with contextlib.suppress(ApiException):
                    self.core.delete_namespaced_pod(pod.metadata.name, pod.metadata.namespace, grace_period_seconds=0)
            return
        # Pending pods, and pods of this node left without a process by an agent restart (as a
        # kubelet restarts the containers of its pods).
        if pp is None and (pod.spec.node_name in (None, NODE_NAME)) and pod.status.phase not in ("Succeeded", "Failed"):
            with self.lock:
                if uid in self.claimed:
                    return
                self.claimed.add(uid)
            threading.Thread(target=self._start, args=(pod,), daemon=True).start()

    def _watch_pods(self) -> None:
        while not self.stopping.is_set():
            try:
                pods = self.core.list_pod_for_all_namespaces()
                for pod in pods.items:
                    self._on_pod("ADDED", pod)
                w = watch.Watch()
                for event in w.stream(
                    self.core.list_pod_for_all_namespaces,
                    resource_version=pods.metadata.resource_version,
                    timeout_seconds=60,
                ):
                    if self.stopping.is_set():
                        w.stop()
                        break
                    self._on_pod(event["type"], event["object"])
            except Exception as exc:  # the API server may restart in fault tests: list and watch again
                log.warning("pod watch interrupted: %s", exc)
                self.stopping.wait(1)

    def _supervise(self) -> None:
        while not self.stopping.wait(0.5):
            try:
                self._supervise_once()
            except Exception:
                log.exception("supervision round failed")

    _last_heartbeat = 0.0

    def _supervise_once(self) -> None:
        if True:
            if time.monotonic() - self._last_heartbeat > 20:
                with contextlib.suppress(Exception):
                    self._node_heartbeat()
                self._last_heartbeat = time.monotonic()
            with self.lock:
                current = [p for p in self.pods.values() if not p.terminating]
            for pp in current:
                exited = pp.proc.poll() is not None
                ready = self._probe(pp)
                if ready != pp.ready or (exited and pp.restart_at is None):
                    pp.ready = ready
                    self._report(pp)
                if exited:
                    log.warning(
                        "%s/%s exited with %s; not restarting (see %s)",
                        pp.namespace,
                        pp.name,
                        pp.proc.returncode,
                        pp.workdir / "container.log",
                    )
                    pp.terminating = True

    def run(self) -> None:
        self.register_node()
        threads = [
            threading.Thread(target=self._watch_pods, daemon=True, name="watch"),
            threading.Thread(target=self._supervise, daemon=True, name="supervise"),
        ]
        for t in threads:
            t.start()
        signal.signal(signal.SIGTERM, lambda *_: self.stopping.set())
        signal.signal(signal.SIGINT, lambda *_: self.stopping.set())
        while not self.stopping.wait(1):
            pass
        self.shutdown()

    def shutdown(self) -> None:
        self.stopping.set()
        with self.lock:
            remaining = list(self.pods.values())
        for pp in remaining:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pp.proc.pid, signal.SIGTERM)
        for pp in remaining:
            try:
                pp.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pp.proc.pid, signal.SIGKILL)


def _network_env(env: dict[str, str], ip: str) -> dict[str, str]:
    """What a Pod's own network namespace gives for free: listening on 0.0.0.0 means the pod IP."""
    liveness = env.get("CWO_LIVENESS", "http://0.0.0.0:8081/healthz").replace("0.0.0.0", ip)
    return {"POD_IP": ip, "CONDUCTOR_WORKER_METRICS_HOST": ip, "CWO_METRICS_HOST": ip, "CWO_LIVENESS": liveness}


def _spawn(argv: list[str], env: dict[str, str], workdir: Path) -> subprocess.Popen:
    with (workdir / "container.log").open("ab") as logfile:
        return subprocess.Popen(
            argv,
            env=env,
            cwd=workdir,
            stdout=logfile,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def _expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion of env values."""
    for key, val in env.items():
        value = value.replace(f"$({key})", val)
    return value


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    kubeconfig = os.environ["KUBECONFIG"]
    workdir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd() / "pods"
    shutil.rmtree(workdir, ignore_errors=True)
    NodeAgent(kubeconfig, workdir).run()


if __name__ == "__main__":
    main()


AGENT = "node-agent"


def start_background(cfg: Any) -> None:
    """Run the agent as a stack process (pid file, log in the run dir), unless it already runs."""
    from teststack import procs

    if procs.running_pid(cfg.run_dir, AGENT):
        return
    root = str(Path(__file__).resolve().parent.parent)
    code = f"import sys; sys.path.append({root!r}); from teststack.nodeagent import main; main()"
    procs.start(
        cfg.run_dir,
        AGENT,
        [sys.executable, "-P", "-c", code, str(cfg.run_dir / "pods")],
        env={"KUBECONFIG": str(cfg.kubeconfig)},
    )


def stop_background(cfg: Any) -> None:
    from teststack import procs

    procs.stop(cfg.run_dir, AGENT, grace=40)
