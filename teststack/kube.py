"""A real Kubernetes control plane on loopback: etcd, kube-apiserver (RBAC on), kube-controller-manager.

Flags follow controller-runtime's envtest, but the ServiceAccount admission plugin stays on and
kube-controller-manager runs, so ReplicaSets, Pods, default ServiceAccounts, tokens and garbage
collection behave as in a cluster; `teststack.node` adds the scheduler and a real kubelet.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

from teststack import procs
from teststack.config import StackConfig
from teststack.netsetup import KUBERNETES_VIP, SERVICE_CIDR

ETCD, APISERVER, CONTROLLER_MANAGER = "etcd", "kube-apiserver", "kube-controller-manager"
ETCD_CLIENT = "etcd-apiserver-client"  # the one client etcd accepts
ISSUER = "https://kubernetes.default.svc.cluster.local"
FRONT_PROXY_CLIENT = "front-proxy-client"  # the CN aggregated API servers accept proxied requests from


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def cert(pki: Path, name: str, subject: str, ext: str, ca: str = "ca") -> None:
    """A key and a certificate signed by the stack's CA (or another CA of the directory)."""
    (pki / f"{name}.ext").write_text(ext)
    _openssl(
        "req",
        "-new",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        f"{name}.key",
        "-subj",
        subject,
        "-out",
        f"{name}.csr",
        cwd=pki,
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        f"{ca}.crt",
        "-CAkey",
        f"{ca}.key",
        "-CAcreateserial",
        "-days",
        "3650",
        "-extfile",
        f"{name}.ext",
        "-out",
        f"{name}.crt",
        cwd=pki,
    )


def ensure_pki(cfg: StackConfig) -> Path:
    """CA, serving cert, admin client cert (system:masters), the service-account key pair and the
    aggregation layer's front-proxy CA and client cert (each generated if missing)."""
    pki = cfg.run_dir / "pki"
    if all((pki / f"{name}.crt").exists() for name in ("admin", FRONT_PROXY_CLIENT, ETCD_CLIENT)):
        return pki
    if not shutil.which("openssl"):
        raise procs.StackError("openssl is missing: run `bash scripts/setup.sh` (apt-get install openssl)")
    pki.mkdir(parents=True, exist_ok=True)
    # Two processes starting the stack at once (test sessions) must not interleave their openssl runs.
    with (pki / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (pki / "admin.crt").exists():
            _base_pki(pki)
        if not (pki / f"{FRONT_PROXY_CLIENT}.crt").exists():
            _front_proxy_pki(pki)
        if not (pki / f"{ETCD_CLIENT}.crt").exists():
            _etcd_pki(pki)
    return pki


def _ca(pki: Path, name: str, subject: str) -> None:
    """A self-signed CA, <name>.key and <name>.crt, valid for ten years."""
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.crt",
        "-days", "3650", "-subj", subject, cwd=pki,
    )  # fmt: skip


def _base_pki(pki: Path) -> None:
    _ca(pki, "ca", "/CN=cwo-local-ca")
    cert(
        pki,
        "apiserver",
        "/CN=kube-apiserver",
        f"subjectAltName=IP:127.0.0.1,IP:{KUBERNETES_VIP},DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
        "DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n",
    )
    cert(pki, "admin", "/O=system:masters/CN=cwo-admin", "extendedKeyUsage=clientAuth\n")
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=pki)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)


def _front_proxy_pki(pki: Path) -> None:
    """The client cert the API server presents when it proxies to an aggregated API (e.g. KEDA's
    external metrics); extension servers trust it through the requestheader CA, kept apart from the
    client CA so that this cert cannot act as a user, as kubeadm does. Written after the base PKI, so a
    stack started before the aggregation layer gets it on its next start."""
    _ca(pki, "front-proxy-ca", "/CN=cwo-front-proxy-ca")
    cert(
        pki,
        FRONT_PROXY_CLIENT,
        f"/CN={FRONT_PROXY_CLIENT}",
        "extendedKeyUsage=clientAuth\n",
        ca="front-proxy-ca",
    )


def _etcd_pki(pki: Path) -> None:
    """etcd's own CA, its serving (and peer) cert and the API server's client cert: etcd answers only a
    client with a cert of this CA, so no other local user or process reads or writes the cluster's data.
    A CA apart from the cluster's, as kubeadm does, so that no Kubernetes client cert opens etcd."""
    _ca(pki, "etcd-ca", "/CN=cwo-etcd-ca")
    cert(
        pki,
        "etcd-server",
        "/CN=cwo-etcd",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
        ca="etcd-ca",
    )
    cert(pki, ETCD_CLIENT, f"/CN={ETCD_CLIENT}", "extendedKeyUsage=clientAuth\n", ca="etcd-ca")


def _etcd_context(pki: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki / "etcd-ca.crt"))
    ctx.load_cert_chain(str(pki / f"{ETCD_CLIENT}.crt"), str(pki / f"{ETCD_CLIENT}.key"))
    return ctx


def write_kubeconfig(cfg: StackConfig, pki: Path, path: Path | None = None, user: str = "admin") -> Path:
    """A kubeconfig for the local API server with a client certificate of the stack's CA."""
    path = path or cfg.kubeconfig
    path.write_text(
        f"""apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: {cfg.apiserver_url}
    certificate-authority: {pki / "ca.crt"}
users:
- name: {user}
  user:
    client-certificate: {pki / f"{user}.crt"}
    client-key: {pki / f"{user}.key"}
contexts:
- name: local
  context: {{cluster: local, user: {user}, namespace: default}}
current-context: local
"""
    )
    return path


def _ssl_context(pki: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    return ctx


def _get(url: str, ctx: ssl.SSLContext | None = None) -> bool:
    with urllib.request.urlopen(url, timeout=3, context=ctx) as resp:
        return resp.status == 200


def healthy(cfg: StackConfig) -> bool:
    pki = cfg.run_dir / "pki"
    try:
        return _get(f"{cfg.apiserver_url}/readyz", _ssl_context(pki))
    except Exception:
        return False


def _binary(cfg: StackConfig, name: str) -> str:
    path = cfg.k8s_bin / name
    if not path.is_file():
        raise procs.StackError(f"{name} missing at {path}: run `bash scripts/setup.sh` (builds it with Go)")
    return str(path)


# What the API server's audit log keeps: the requests of ServiceAccounts (the operator in a pod, KEDA),
# their verb, resource and answer only (Metadata level: no bodies, so no Secret values). The tests compare
# the verbs the operator was seen using with the ones its chart grants (audit_requests).
AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    userGroups: ["system:serviceaccounts"]
  - level: None
"""


def audit_log(cfg: StackConfig) -> Path:
    return cfg.run_dir / "audit.log"


def audit_requests(cfg: StackConfig, username: str) -> list[dict]:
    """The audit events (ResponseComplete) of one user, oldest first: verb, objectRef, responseStatus."""
    path = audit_log(cfg)
    found: list[dict] = []
    for name in sorted(path.parent.glob(path.name + "*"), key=lambda p: p.stat().st_mtime):
        for line in name.read_text(errors="replace").splitlines():
            if username not in line:
                continue
            event = json.loads(line)
            if event.get("stage") == "ResponseComplete" and (event.get("user") or {}).get("username") == username:
                found.append(event)
    return found


def _apiserver_argv(cfg: StackConfig, binary: str, pki: Path) -> list[str]:
    run = cfg.run_dir
    policy = run / "audit-policy.yaml"
    policy.write_text(AUDIT_POLICY)
    return [
        binary,
        f"--etcd-servers=https://127.0.0.1:{cfg.etcd_port}",
        f"--etcd-cafile={pki / 'etcd-ca.crt'}",
        f"--etcd-certfile={pki / f'{ETCD_CLIENT}.crt'}",
        f"--etcd-keyfile={pki / f'{ETCD_CLIENT}.key'}",
        f"--secure-port={cfg.apiserver_port}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--cert-dir={run / 'apiserver-certs'}",
        f"--tls-cert-file={pki / 'apiserver.crt'}",
        f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--allow-privileged=true",
        # Node + NodeRestriction: the kubelet reads only what its Pods need, as in a cluster.
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        f"--kubelet-client-certificate={pki / 'admin.crt'}",
        f"--kubelet-client-key={pki / 'admin.key'}",
        f"--kubelet-certificate-authority={pki / 'ca.crt'}",
        "--kubelet-preferred-address-types=InternalIP",
        f"--service-account-issuer={ISSUER}",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        "--enable-priority-and-fairness=false",
        "--endpoint-reconciler-type=none",
        # The aggregation layer (APIServices such as KEDA's external metrics): the API server proxies
        # with the front-proxy cert and passes the user in these headers. No kube-proxy runs, so it
        # sends to the Service's endpoint address instead of its ClusterIP.
        f"--requestheader-client-ca-file={pki / 'front-proxy-ca.crt'}",
        f"--requestheader-allowed-names={FRONT_PROXY_CLIENT}",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-username-headers=X-Remote-User",
        f"--proxy-client-cert-file={pki / f'{FRONT_PROXY_CLIENT}.crt'}",
        f"--proxy-client-key-file={pki / f'{FRONT_PROXY_CLIENT}.key'}",
        "--enable-aggregator-routing=true",
        f"--audit-policy-file={policy}",
        f"--audit-log-path={audit_log(cfg)}",
        "--audit-log-maxsize=100",
        "--audit-log-maxbackup=2",
    ]


def start(cfg: StackConfig, timeout: float = 120) -> Path:
    """Start the control plane unless it already answers; return the kubeconfig path."""
    binaries = {n: _binary(cfg, n) for n in (ETCD, APISERVER, CONTROLLER_MANAGER)}
    pki = ensure_pki(cfg)
    kubeconfig = write_kubeconfig(cfg, pki)
    if healthy(cfg) and procs.running_pid(cfg.run_dir, CONTROLLER_MANAGER):
        return kubeconfig
    stop(cfg)
    run = cfg.run_dir
    etcd_url = f"https://127.0.0.1:{cfg.etcd_port}"
    data = run / "etcd-data"
    shutil.rmtree(data, ignore_errors=True)
    pid = procs.start(
        run,
        ETCD,
        [
            binaries[ETCD],
            "--data-dir",
            str(data),
            "--listen-client-urls",
            etcd_url,
            "--advertise-client-urls",
            etcd_url,
            "--listen-peer-urls",
            f"https://127.0.0.1:{cfg.etcd_port + 1}",
            "--initial-advertise-peer-urls",
            f"https://127.0.0.1:{cfg.etcd_port + 1}",
            "--initial-cluster",
            f"default=https://127.0.0.1:{cfg.etcd_port + 1}",
            # TLS with client certificates on both ports: without them any local user owns the cluster.
            "--cert-file",
            str(pki / "etcd-server.crt"),
            "--key-file",
            str(pki / "etcd-server.key"),
            "--trusted-ca-file",
            str(pki / "etcd-ca.crt"),
            "--client-cert-auth",
            "--peer-cert-file",
            str(pki / "etcd-server.crt"),
            "--peer-key-file",
            str(pki / "etcd-server.key"),
            "--peer-trusted-ca-file",
            str(pki / "etcd-ca.crt"),
            "--peer-client-cert-auth",
            "--unsafe-no-fsync",
            "--log-level",
            "warn",
        ],
    )
    procs.wait_until(ETCD, lambda: _get(f"{etcd_url}/health", _etcd_context(pki)), 30, run, pid)

    pid = procs.start(run, APISERVER, _apiserver_argv(cfg, binaries[APISERVER], pki))
    procs.wait_until(APISERVER, lambda: healthy(cfg), timeout, run, pid)

    pid = procs.start(
        run,
        CONTROLLER_MANAGER,
        [
            binaries[CONTROLLER_MANAGER],
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            "--controllers=*",
            "--leader-elect=false",
            "--secure-port=0",
            "--use-service-account-credentials=false",
            "--concurrent-gc-syncs=5",
            "--node-monitor-grace-period=1h",
        ],
    )
    procs.wait_until(CONTROLLER_MANAGER, lambda: procs.running_pid(run, CONTROLLER_MANAGER) is not None, 5, run, pid)
    return kubeconfig


def stop(cfg: StackConfig) -> None:
    for name in (CONTROLLER_MANAGER, APISERVER, ETCD):
        procs.stop(cfg.run_dir, name)


def restart_apiserver(cfg: StackConfig, timeout: float = 120) -> float:
    """Stop kube-apiserver alone (SIGTERM) and start it again with the same flags; etcd, its data and
    kube-controller-manager keep running. Returns the seconds the API server was down."""
    binary = _binary(cfg, APISERVER)
    pki = ensure_pki(cfg)
    down = time.monotonic()
    procs.stop(cfg.run_dir, APISERVER)
    pid = procs.start(cfg.run_dir, APISERVER, _apiserver_argv(cfg, binary, pki))
    procs.wait_until(APISERVER, lambda: healthy(cfg), timeout, cfg.run_dir, pid)
    return time.monotonic() - down
