"""KEDA 2.21 on the local stack: the autoscaler a Conductor user would otherwise deploy, for benchmarks.

keda-operator and keda-adapter (KEDA's external-metrics API server) run as host processes with the
admin kubeconfig, as the control plane does; `scripts/build-keda.sh` builds them (only
`scripts/bench.sh autoscalers` needs them). The operator drives each ScaledObject's HPA and scales
0 <-> 1 itself; the HPA in kube-controller-manager reads the trigger's value through the aggregation
layer: kube-apiserver -> APIService v1beta1.external.metrics.k8s.io -> Service keda/keda-metrics-apiserver
-> its EndpointSlice -> the adapter.

Where the adapter listens: the API server is started with --enable-aggregator-routing (no kube-proxy
runs), so it connects to the address in the Service's EndpointSlice, and the API refuses loopback
addresses there. The adapter therefore binds one address of this host that is not loopback: the node
bridge's (`netsetup.BRIDGE_IP`, which exists while the node is up and never routes off the host), or,
without a node, the host's first global IPv4 address. It binds that one address, not all of them; the
API server checks its certificate against the Service's DNS name, not the address.

One certificate of the stack's CA (server and client use) serves the adapter and both ends of the
operator <-> adapter gRPC channel, which KEDA secures with mutual TLS (ca.crt, tls.crt, tls.key in one
directory, as KEDA's own cert rotation would write them; rotation stays off).
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from teststack import kube, netsetup, procs
from teststack.config import REPO_ROOT, StackConfig

OPERATOR, ADAPTER = "keda-operator", "keda-adapter"
NAMESPACE = "keda"
SERVICE = "keda-metrics-apiserver"
APISERVICE = "v1beta1.external.metrics.k8s.io"
MANAGED_BY = "teststack.keda"  # label of the EndpointSlice this module writes (no controller owns it)


def version() -> str:
    for line in (REPO_ROOT / "scripts" / "versions.env").read_text().splitlines():
        if line.startswith("KEDA_VERSION="):
            return line.partition("=")[2].strip()
    raise procs.StackError("KEDA_VERSION is missing from scripts/versions.env")


def home(cfg: StackConfig) -> Path:
    """Binaries and CRDs, as scripts/build-keda.sh leaves them."""
    return cfg.cache / f"keda-{version()}"


@dataclass(frozen=True)
class Ports:
    """KEDA's ports, 20 above the stack's API server port, so that stacks with other ports do not clash."""

    operator_metrics: int
    operator_probe: int
    grpc: int
    adapter: int
    adapter_metrics: int

    @classmethod
    def of(cls, cfg: StackConfig) -> Ports:
        base = cfg.apiserver_port + 20
        return cls(base, base + 1, base + 2, base + 3, base + 4)


def adapter_host() -> str:
    """A non-loopback address of this host for the adapter (see the module's docstring)."""
    out = subprocess.run(
        ["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True, check=False
    ).stdout
    return pick_address(out)


def pick_address(ip_addr_output: str) -> str:
    """The bridge's address if `ip -4 -o addr show scope global` lists it, else the first one listed."""
    addresses = [f[3].split("/")[0] for f in (line.split() for line in ip_addr_output.splitlines()) if len(f) > 3]
    if netsetup.BRIDGE_IP in addresses:
        return netsetup.BRIDGE_IP
    if not addresses:
        raise procs.StackError("KEDA's adapter needs a non-loopback IPv4 address on this host; start the node")
    return addresses[0]


def kubectl(cfg: StackConfig, *args: str, stdin: str | None = None, check: bool = True) -> str:
    proc = subprocess.run(
        [str(cfg.kubectl), f"--kubeconfig={cfg.kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if check and proc.returncode != 0:
        raise procs.StackError(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def _certs(cfg: StackConfig) -> Path:
    """ca.crt, tls.crt and tls.key for both KEDA processes, signed by the stack's CA."""
    pki = kube.ensure_pki(cfg)
    certs = cfg.run_dir / "keda-certs"
    if not (pki / "keda.crt").exists():
        dns = [f"{name}.{NAMESPACE}.svc" for name in (SERVICE, OPERATOR)]
        dns += [f"{name}.cluster.local" for name in dns]
        san = ",".join(["IP:127.0.0.1", *(f"DNS:{d}" for d in dns)])
        kube.cert(pki, "keda", "/CN=keda", f"subjectAltName={san}\nextendedKeyUsage=serverAuth,clientAuth\n")
    certs.mkdir(parents=True, exist_ok=True)
    for src, dst in (("ca.crt", "ca.crt"), ("keda.crt", "tls.crt"), ("keda.key", "tls.key")):
        shutil.copyfile(pki / src, certs / dst)
    return certs


def _env(kubeconfig: Path) -> dict[str, str]:
    """What KEDA's Deployments set from the downward API: watch every namespace, live in `keda`."""
    return {
        "KUBECONFIG": str(kubeconfig),
        "WATCH_NAMESPACE": "",
        "POD_NAMESPACE": NAMESPACE,
        "KEDA_CLUSTER_OBJECT_NAMESPACE": NAMESPACE,
    }


def _operator_argv(binary: Path, certs: Path, ports: Ports) -> list[str]:
    return [
        str(binary),
        f"--metrics-bind-address=127.0.0.1:{ports.operator_metrics}",
        f"--health-probe-bind-address=127.0.0.1:{ports.operator_probe}",
        f"--metrics-service-bind-address=127.0.0.1:{ports.grpc}",
        f"--cert-dir={certs}",
        "--zap-log-level=info",
        "--zap-encoder=console",
    ]


def _adapter_argv(binary: Path, certs: Path, ports: Ports, host: str, kubeconfig: Path) -> list[str]:
    return [
        str(binary),
        f"--bind-address={host}",
        f"--secure-port={ports.adapter}",
        f"--cert-dir={certs}",
        f"--tls-cert-file={certs / 'tls.crt'}",
        f"--tls-private-key-file={certs / 'tls.key'}",
        f"--client-ca-file={certs / 'ca.crt'}",
        f"--lister-kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--metrics-service-address=127.0.0.1:{ports.grpc}",
        f"--port={ports.adapter_metrics}",
        "--zap-log-level=info",
    ]


def _registration(cfg: StackConfig, host: str, ports: Ports) -> list[dict[str, Any]]:
    """Namespace, a selector-less Service with its hand-written EndpointSlice, and the APIService."""
    ca = base64.b64encode((cfg.run_dir / "pki" / "ca.crt").read_bytes()).decode()
    labels = {"app.kubernetes.io/name": SERVICE, "app.kubernetes.io/managed-by": MANAGED_BY}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": SERVICE, "namespace": NAMESPACE, "labels": labels},
            "spec": {"ports": [{"name": "https", "port": 443, "targetPort": ports.adapter, "protocol": "TCP"}]},
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{SERVICE}-host",
                "namespace": NAMESPACE,
                "labels": {
                    **labels,
                    "kubernetes.io/service-name": SERVICE,
                    "endpointslice.kubernetes.io/managed-by": MANAGED_BY,
                },
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [host], "conditions": {"ready": True}}],
            "ports": [{"name": "https", "port": ports.adapter, "protocol": "TCP"}],
        },
        {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": APISERVICE, "labels": labels},
            "spec": {
                "service": {"name": SERVICE, "namespace": NAMESPACE, "port": 443},
                "group": "external.metrics.k8s.io",
                "version": "v1beta1",
                "caBundle": ca,
                "groupPriorityMinimum": 100,
                "versionPriority": 100,
            },
        },
    ]


def _apply(cfg: StackConfig, objects: list[dict[str, Any]]) -> None:
    doc = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    kubectl(cfg, "apply", "--server-side", "--force-conflicts", "--field-manager=teststack-keda", "-f", "-", stdin=doc)


def _install_crds(cfg: StackConfig) -> None:
    crds = home(cfg) / "crds"
    # Server-side: ScaledJob's CRD is larger than client-side apply's last-applied annotation may be.
    kubectl(cfg, "apply", "--server-side", "--force-conflicts", "--field-manager=teststack-keda", "-f", str(crds))
    kubectl(cfg, "wait", "--for=condition=Established", "--timeout=60s", "-f", str(crds))


def _apiservice_available(cfg: StackConfig) -> bool:
    out = kubectl(
        cfg,
        "get",
        "apiservice",
        APISERVICE,
        "-o",
        'jsonpath={.status.conditions[?(@.type=="Available")].status}',
        check=False,
    )
    return out.strip() == "True"


def _operator_ready(ports: Ports) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{ports.operator_probe}/readyz", timeout=2) as resp:
        return resp.status == 200


def healthy(cfg: StackConfig) -> bool:
    """Both processes run, the operator is ready and the API server reaches the adapter."""
    if not (procs.running_pid(cfg.run_dir, OPERATOR) and procs.running_pid(cfg.run_dir, ADAPTER)):
        return False
    try:
        return _operator_ready(Ports.of(cfg)) and _apiservice_available(cfg)
    except Exception:
        return False


def start(cfg: StackConfig, kubeconfig: Path, timeout: float = 120) -> None:
    """Install the CRDs, start both processes and register the adapter; returns once the APIService
    is Available. A no-op when KEDA already runs healthy on this stack."""
    binaries = {name: home(cfg) / "bin" / name for name in (OPERATOR, ADAPTER)}
    for path in binaries.values():
        if not path.is_file():
            raise procs.StackError(f"{path} is missing: run `bash scripts/build-keda.sh` (about 10 min)")
    if healthy(cfg):
        return
    stop_processes(cfg)
    ports = Ports.of(cfg)
    host = adapter_host()
    certs = _certs(cfg)
    _install_crds(cfg)
    _namespace_gone_or_active(cfg)
    run = cfg.run_dir
    env = _env(kubeconfig)
    pid = procs.start(run, OPERATOR, _operator_argv(binaries[OPERATOR], certs, ports), env=env)
    procs.wait_until(OPERATOR, lambda: _operator_ready(ports), timeout, run, pid)
    argv = _adapter_argv(binaries[ADAPTER], certs, ports, host, kubeconfig)
    pid = procs.start(run, ADAPTER, argv, env=env)
    _apply(cfg, _registration(cfg, host, ports))
    procs.wait_until(ADAPTER, lambda: _apiservice_available(cfg), timeout, run, pid)


def stop_processes(cfg: StackConfig) -> None:
    for name in (ADAPTER, OPERATOR):
        procs.stop(cfg.run_dir, name)


def stop(cfg: StackConfig) -> None:
    """Delete every ScaledObject and ScaledJob while the operator still runs (it removes their HPAs and
    finalizers), unregister the adapter (an APIService without a server breaks API discovery for every
    client), delete the `keda` namespace (its Service and EndpointSlice) and wait for it, then stop
    both processes. KEDA's CRDs stay."""
    if kube.healthy(cfg):
        if procs.running_pid(cfg.run_dir, OPERATOR):
            # KEDA's finalizer on each would hold it, and its namespace, forever once the operator is gone.
            for kind in ("scaledobjects.keda.sh", "scaledjobs.keda.sh"):
                kubectl(cfg, "delete", kind, "--all", "--all-namespaces", "--timeout=60s", check=False)
        kubectl(cfg, "delete", "apiservice", APISERVICE, "--ignore-not-found", check=False)
        kubectl(cfg, "delete", "namespace", NAMESPACE, "--ignore-not-found", "--timeout=90s", check=False)
    stop_processes(cfg)


def _namespace_gone_or_active(cfg: StackConfig, timeout: float = 90) -> None:
    """A `keda` namespace still terminating (a stop just before) would delete the Service and the
    EndpointSlice start() writes into it, and the APIService would go unavailable a moment later."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        phase = kubectl(cfg, "get", "namespace", NAMESPACE, "-o", "jsonpath={.status.phase}", check=False).strip()
        if phase != "Terminating":
            return
        time.sleep(1)
    raise procs.StackError(f"namespace {NAMESPACE} is still terminating after {timeout:.0f}s")
