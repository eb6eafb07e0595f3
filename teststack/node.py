"""A real node: containerd + runc, CNI on the stack's bridge, kube-scheduler and a kubelet 1.34.

The kubelet runs Pods from the images of `teststack.images` (no registry is reachable: every pull is
pointed at a closed loopback port, and image GC never removes what was loaded). Everything it keeps
lives under the stack's run directory; `stop()` drains the Pods through the kubelet, then sweeps what
a kubelet and containerd leave on a host (shims, mounts, network namespaces, cgroups, iptables
chains, the bridge), so `down` leaves the machine as `up` found it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from teststack import images, kube, netsetup, procs
from teststack.config import StackConfig

CONTAINERD, KUBELET, SCHEDULER = "containerd", "kubelet", "kube-scheduler"
NODE_NAME = "cwo-node"
KUBELET_PORT, KUBELET_HEALTHZ_PORT = 10350, 10348
CGROUP_ROOT = Path("/sys/fs/cgroup")
# Host paths the kubelet, containerd's shims and runc, and libcni write whatever the configured
# directories (device-plugin socket, log symlinks, shim sockets, runc state, the CNI result cache):
# removed on down when up did not find them.
HOST_PATHS = tuple(
    Path(p) for p in ("/var/lib/kubelet", "/var/log/containers", "/var/log/pods", "/run/containerd", "/var/lib/cni")
)


def _dirs(cfg: StackConfig) -> dict[str, Path]:
    run = cfg.run_dir
    return {
        "containerd_state": run / "containerd",
        # Images outlive the stack: containerd's content store is cached, keyed by nothing but content.
        "containerd_root": cfg.cache / "containerd-root",
        "cni_conf": run / "cni" / "net.d",
        "cni_ipam": run / "cni" / "ipam",
        "registry_hosts": run / "containerd-hosts",
        "kubelet_root": run / "kubelet",
        "pod_logs": run / "pod-logs",
    }


def socket(cfg: StackConfig) -> Path:
    return _dirs(cfg)["containerd_state"] / "containerd.sock"


def ctr(cfg: StackConfig) -> list[str]:
    return [_binary("ctr", "containerd"), "--address", str(socket(cfg)), "--namespace", "k8s.io"]


def _binary(name: str, package: str) -> str:
    path = shutil.which(name)
    if not path:
        raise procs.StackError(f"{name} is missing: run `bash scripts/setup.sh` (apt-get install {package})")
    return path


def _containerd_config(cfg: StackConfig) -> Path:
    d = _dirs(cfg)
    hosts = d["registry_hosts"] / "_default"
    hosts.mkdir(parents=True, exist_ok=True)
    # No registry is reachable: any pull goes to a closed loopback port and fails at once.
    (hosts / "hosts.toml").write_text('server = "http://127.0.0.1:9"\n')
    config = d["containerd_state"] / "config.toml"
    config.write_text(
        f"""version = 2
root = "{d["containerd_root"]}"
state = "{d["containerd_state"] / "state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{socket(cfg)}"
[ttrpc]
  address = "{d["containerd_state"] / "containerd.sock.ttrpc"}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d["containerd_root"] / "opt"}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{images.PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{d["cni_conf"]}"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{d["registry_hosts"]}"
"""
    )
    return config


def _kubelet_config(cfg: StackConfig, pki: Path) -> Path:
    d = _dirs(cfg)
    path = cfg.run_dir / "kubelet-config.yaml"
    path.write_text(
        f"""apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {netsetup.BRIDGE_IP}
port: {KUBELET_PORT}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {KUBELET_HEALTHZ_PORT}
tlsCertFile: {pki / "kubelet-serving.crt"}
tlsPrivateKeyFile: {pki / "kubelet-serving.key"}
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: false}}
  x509: {{clientCAFile: {pki / "ca.crt"}}}
authorization: {{mode: AlwaysAllow}}
containerRuntimeEndpoint: unix://{socket(cfg)}
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
podLogsDir: {d["pod_logs"]}
resolvConf: /etc/resolv.conf
# Loaded images cannot be pulled again: image GC never starts.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {{memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}}
serializeImagePulls: false
maxPods: 250
shutdownGracePeriod: 0s
"""
    )
    return path


def _node_pki(cfg: StackConfig) -> Path:
    """The kubelet's client cert (system:node:<name>, for the Node authorizer) and its serving cert."""
    pki = kube.ensure_pki(cfg)
    if not (pki / "kubelet-serving.crt").exists():
        kube.cert(pki, "kubelet-client", f"/O=system:nodes/CN=system:node:{NODE_NAME}", "extendedKeyUsage=clientAuth\n")
        kube.cert(
            pki,
            "kubelet-serving",
            f"/CN={NODE_NAME}",
            f"subjectAltName=IP:{netsetup.BRIDGE_IP},DNS:{NODE_NAME}\nextendedKeyUsage=serverAuth\n",
        )
    return pki


def check_host(
    ports: tuple[int, ...] = (KUBELET_PORT, KUBELET_HEALTHZ_PORT),
    cgroup_root: Path = CGROUP_ROOT,
    filesystems: Path = Path("/proc/filesystems"),
    euid: int | None = None,
) -> None:
    """Fail at once, saying what to do, on what would otherwise show only deep in a kubelet log."""
    if (os.geteuid() if euid is None else euid) != 0:
        raise procs.StackError("the node needs root (containerd, runc, network namespaces, iptables): run as root")
    for port in ports:
        if procs.port_in_use("127.0.0.1", port):
            raise procs.StackError(f"port {port} (the kubelet's) is in use: stop what listens there")
    for ctl in ("memory", "cpu", "pids"):
        if not (cgroup_root / ctl).exists() and not (cgroup_root / "cgroup.controllers").exists():
            raise procs.StackError(f"the kernel lacks the {ctl} cgroup controller the kubelet needs")
    if "overlay" not in filesystems.read_text():
        raise procs.StackError("the kernel lacks overlayfs (containerd's snapshotter): `modprobe overlay`")


def healthy(cfg: StackConfig) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{KUBELET_HEALTHZ_PORT}/healthz", timeout=2) as resp:
            return resp.status == 200 and procs.running_pid(cfg.run_dir, CONTAINERD) is not None
    except OSError:
        return False


def start(cfg: StackConfig, kubeconfig: Path, timeout: float = 120) -> None:
    """Bridge, containerd with the node's images, kube-scheduler and the kubelet; waits for Ready. On a node
    that already runs, only the images: those whose sources changed are built again and loaded (a running
    stack kept serving the operator image of the code it started with)."""
    if healthy(cfg) and procs.running_pid(cfg.run_dir, SCHEDULER):
        built = images.Images(cfg)
        built.load(built.all(), ctr(cfg))
        return
    check_host()
    for name in (KUBELET, SCHEDULER, CONTAINERD):
        procs.stop(cfg.run_dir, name)
    sweep(cfg)  # what an earlier run left if it was killed without `down`
    d = _dirs(cfg)
    for path in d.values():
        path.mkdir(parents=True, exist_ok=True)
    _record_host_paths(cfg)
    netsetup.write_cni_config(d["cni_conf"], d["cni_ipam"])
    netsetup.up(cfg.run_dir, cfg.conductor_port, cfg.apiserver_port)
    runc = _binary("runc", "runc")
    env = {"PATH": f"{Path(runc).parent}:{os.environ.get('PATH', '')}"}
    pid = procs.start(
        cfg.run_dir, CONTAINERD, [_binary("containerd", "containerd"), "--config", str(_containerd_config(cfg))], env
    )
    procs.wait_until(
        CONTAINERD,
        lambda: subprocess.run([*ctr(cfg), "version"], capture_output=True).returncode == 0,
        30,
        cfg.run_dir,
        pid,
    )

    built = images.Images(cfg)
    built.load(built.all(), ctr(cfg))

    pki = _node_pki(cfg)
    node_kubeconfig = kube.write_kubeconfig(cfg, pki, cfg.run_dir / "kubelet.kubeconfig", "kubelet-client")
    pid = procs.start(
        cfg.run_dir,
        SCHEDULER,
        [
            str(cfg.k8s_bin / SCHEDULER),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            "--secure-port=0",
        ],
    )
    procs.wait_until(SCHEDULER, lambda: procs.running_pid(cfg.run_dir, SCHEDULER) is not None, 5, cfg.run_dir, pid)
    pid = procs.start(
        cfg.run_dir,
        KUBELET,
        [
            str(cfg.k8s_bin / KUBELET),
            f"--config={_kubelet_config(cfg, pki)}",
            f"--kubeconfig={node_kubeconfig}",
            f"--root-dir={d['kubelet_root']}",
            f"--cert-dir={cfg.run_dir / 'kubelet-certs'}",
            f"--node-ip={netsetup.BRIDGE_IP}",
            f"--hostname-override={NODE_NAME}",
            "--v=1",
        ],
    )
    procs.wait_until(KUBELET, lambda: healthy(cfg) and _node_ready(kubeconfig), timeout, cfg.run_dir, pid)


def _node_ready(kubeconfig: Path) -> bool:
    from kubernetes import client, config

    with config.new_client_from_config(config_file=str(kubeconfig)) as api:
        node = client.CoreV1Api(api).read_node(NODE_NAME)
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])


# -- teardown ---------------------------------------------------------------------------------------


def _record_host_paths(cfg: StackConfig) -> None:
    """Which kubelet host paths and kubepods cgroups existed before the first up (left alone on down)."""
    record = cfg.run_dir / "host-paths.before"
    if not record.exists():
        record.write_text("\n".join(str(p) for p in HOST_PATHS if p.exists()))
    cgroups = cfg.run_dir / "cgroups.before"
    if not cgroups.exists():
        cgroups.write_text("\n".join(str(p) for p in _qos_cgroups() if p.exists()))


def _qos_cgroups() -> list[Path]:
    """The kubelet's kubepods hierarchy tops (cgroupfs driver), deepest first: they are shared by every
    kubelet of the host, so down removes them only when empty and made by this stack."""
    tops = sorted(CGROUP_ROOT.glob("*/kubepods"))
    return [t / qos for t in tops for qos in ("besteffort", "burstable")] + tops


def bundle_resources(spec: dict) -> tuple[str | None, str | None]:
    """(network namespace path, cgroups path) of one of this containerd's task bundles (its OCI spec)."""
    linux = spec.get("linux") or {}
    netns = next((n.get("path") for n in linux.get("namespaces") or [] if n.get("type") == "network"), None)
    return (netns if netns and netns.startswith(("/var/run/netns/", "/run/netns/")) else None), linux.get("cgroupsPath")


def _record_ours(cfg: StackConfig) -> dict[str, list[str]]:
    """The network namespaces and pod cgroups this stack's containers use, read from its own containerd's
    task bundles and its kubelet's pod directories (on disk: known after a crash too), added to a record
    in run_dir, so that down removes those and nothing of another runtime or kubelet on the host."""
    record = cfg.run_dir / "ours.json"
    ours = json.loads(record.read_text()) if record.exists() else {"netns": [], "pods": []}
    netns, pods = set(ours["netns"]), set(ours["pods"])
    d = _dirs(cfg)
    for bundle in d["containerd_state"].glob("state/io.containerd.runtime.v2.task/k8s.io/*/config.json"):
        with contextlib.suppress(OSError, ValueError):
            path, cgroup = bundle_resources(json.loads(bundle.read_text()))
            if path:
                netns.add(Path(path).name)
            pod = next((part for part in (cgroup or "").split("/") if part.startswith("pod")), None)
            if pod:
                pods.add(pod)
    pod_dirs = d["kubelet_root"] / "pods"
    if pod_dirs.is_dir():
        pods.update(f"pod{p.name}" for p in pod_dirs.iterdir())
    ours = {"netns": sorted(netns), "pods": sorted(pods)}
    record.write_text(json.dumps(ours))
    return ours


def _pod_cgroups(pods: list[str]) -> list[Path]:
    """The cgroup directories of these pods (pod<uid>) in every controller, deepest first."""
    found: list[Path] = []
    for pod in pods:
        for top in (*CGROUP_ROOT.glob(f"*/kubepods/{pod}"), *CGROUP_ROOT.glob(f"*/kubepods/*/{pod}")):
            found += [p for p in top.rglob("*") if p.is_dir()] + [top]
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def _drain(cfg: StackConfig, kubeconfig: Path, timeout: float = 60) -> None:
    """Delete every Pod through the API so the kubelet stops containers and tears down their networks."""
    if not (kube.healthy(cfg) and healthy(cfg)):
        return
    from kubernetes import client, config

    with config.new_client_from_config(config_file=str(kubeconfig)) as api:
        core = client.CoreV1Api(api)
        for pod in core.list_pod_for_all_namespaces().items:
            with contextlib.suppress(client.ApiException):
                core.delete_namespaced_pod(pod.metadata.name, pod.metadata.namespace, grace_period_seconds=1)
        # ReplicaSets recreate Pods, but with the scheduler stopped none is bound to the node again.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(p.spec.node_name for p in core.list_pod_for_all_namespaces().items):
            time.sleep(0.5)


def _processes_mentioning(text: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if text in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(entry.name))
    return [p for p in pids if p != os.getpid()]


def _unmount_under(*roots: Path) -> None:
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    prefixes = [str(r) for r in roots]
    for point in sorted(mounts, key=len, reverse=True):
        point = point.replace("\\040", " ")
        if any(point == p or point.startswith(p + "/") for p in prefixes):
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def _remove_cgroups(cfg: StackConfig, pods: list[str]) -> None:
    """This stack's pod cgroups, then the kubepods tops it made if they are empty (rmdir refuses others)."""
    for path in _pod_cgroups(pods):
        with contextlib.suppress(OSError):
            path.rmdir()
    before = cfg.run_dir / "cgroups.before"
    existed = set(before.read_text().split()) if before.exists() else set()
    for path in _qos_cgroups():
        if str(path) not in existed:
            with contextlib.suppress(OSError):
                path.rmdir()


def _remove_netns(names: list[str]) -> None:
    """This stack's sandboxes' network namespaces (named by its containerd's CRI plugin)."""
    for name in names:
        ns = Path("/run/netns") / name
        if ns.exists():
            subprocess.run(["umount", "-l", str(ns)], capture_output=True, check=False)
            with contextlib.suppress(OSError):
                ns.unlink()


def stop(cfg: StackConfig) -> None:
    """Drain, stop the node's processes, then sweep everything they left on the host."""
    _record_ours(cfg)
    procs.stop(cfg.run_dir, SCHEDULER)
    with contextlib.suppress(Exception):
        _drain(cfg, cfg.kubeconfig)
    procs.stop(cfg.run_dir, KUBELET)
    if procs.running_pid(cfg.run_dir, CONTAINERD):
        with contextlib.suppress(Exception):
            _kill_containers(cfg)
    procs.stop(cfg.run_dir, CONTAINERD)
    sweep(cfg)


def sweep(cfg: StackConfig) -> None:
    """Remove what a node leaves on the host once its processes are gone: also after a run that was
    killed without `down` (its containers keep running without their shims until killed here)."""
    d = _dirs(cfg)
    ours = _record_ours(cfg)
    for pid in _processes_mentioning(str(d["containerd_state"])):  # shims outlive containerd
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _kill_pod_processes(ours["pods"])
    _unmount_under(d["kubelet_root"], d["containerd_state"], d["containerd_root"])
    _remove_netns(ours["netns"])
    _remove_cgroups(cfg, ours["pods"])
    netsetup.down(cfg.run_dir)
    before = (
        (cfg.run_dir / "host-paths.before").read_text().split() if (cfg.run_dir / "host-paths.before").exists() else []
    )
    for path in HOST_PATHS:
        if str(path) not in before and path.exists():
            shutil.rmtree(path, ignore_errors=True)
    for path in (cfg.run_dir / "host-paths.before", cfg.run_dir / "cgroups.before", cfg.run_dir / "ours.json"):
        path.unlink(missing_ok=True)
    shutil.rmtree(d["containerd_state"], ignore_errors=True)
    shutil.rmtree(d["kubelet_root"], ignore_errors=True)
    shutil.rmtree(d["cni_ipam"], ignore_errors=True)


def _kill_pod_processes(pods: list[str]) -> None:
    """SIGKILL every process still in one of this stack's pod cgroups (a container outlives a killed shim)."""
    files = [p / "cgroup.procs" for p in _pod_cgroups(pods)]
    for procs_file in files:
        with contextlib.suppress(OSError):
            for pid in procs_file.read_text().split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(f.read_text().strip() for f in files if f.exists()):
        time.sleep(0.1)


def _kill_containers(cfg: StackConfig) -> None:
    """Containers the drain could not stop (the API server was down): kill and delete them."""
    base = ctr(cfg)
    tasks = subprocess.run([*base, "tasks", "ls", "-q"], capture_output=True, text=True, timeout=30).stdout.split()
    for task in tasks:
        subprocess.run([*base, "tasks", "kill", "-s", "SIGKILL", task], capture_output=True, timeout=30)
        subprocess.run([*base, "tasks", "delete", "-f", task], capture_output=True, timeout=30)
    for container in subprocess.run(
        [*base, "containers", "ls", "-q"], capture_output=True, text=True, timeout=30
    ).stdout.split():
        subprocess.run([*base, "containers", "delete", container], capture_output=True, timeout=30)
