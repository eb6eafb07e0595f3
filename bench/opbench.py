"""Shared parts of the operator benchmarks (bench/autoscaler_response.py, bench/operator_scale.py).

Run with the project's venv; the repo root goes on sys.path to import teststack (not installed). Plots are drawn by the
benchmark-only venv (matplotlib is not a project dependency): `plot()` runs this file there.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

CACHE = Path(
    os.environ.get("CWO_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "conductor-worker-operator"
)
BENCH_VENV = CACHE / "bench-venv"


# -- machine and process figures ---------------------------------------------------------------------


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "mem_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_start": loadavg(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def threads(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of the process (all its threads)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def summary(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"n": 0, "min": None, "median": None, "max": None, "mean": None}
    return {
        "n": len(values),
        "min": round(min(values), 3),
        "median": round(statistics.median(values), 3),
        "max": round(max(values), 3),
        "mean": round(statistics.fmean(values), 3),
    }


# -- the local stack ----------------------------------------------------------------------------------


def stack():
    from teststack.config import load

    return load()


def ensure_stack(cfg, node: bool) -> None:
    """Start what is missing (Conductor, API server + controller-manager, the real node); reuse what runs."""
    from teststack import conductor, kube
    from teststack import node as real_node

    if not conductor.healthy(cfg):
        conductor.start(cfg)
    kubeconfig = cfg.kubeconfig if kube.healthy(cfg) else kube.start(cfg)
    if node:
        real_node.start(cfg, kubeconfig)


def private_plane(cfg):
    """etcd + kube-apiserver + kube-controller-manager of this benchmark only (same binaries and CA as the
    shared stack, free ports). Why: another operator running cluster-wide on the shared API server (a
    demo's or an e2e test's Helm install) would manage the benchmark's ConductorWorkers too, and other
    engineers' tests load the shared API server. Returns (cfg, stop)."""
    import dataclasses
    import shutil
    import socket

    from teststack import kube

    def free_port() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]

    def free_pair() -> int:  # etcd uses port and port + 1
        for _ in range(50):
            port = free_port()
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port + 1))
                    return port
                except OSError:
                    continue
        raise RuntimeError("no free port pair")

    cache = Path(tempfile.mkdtemp(prefix="cwo-bench-plane-"))
    (cache / "run").mkdir()
    (cache / f"k8s-{cfg.k8s_version}").symlink_to(cfg.k8s_bin.parent)
    (cache / f"tools-{cfg.tools_version}").symlink_to(cfg.tools_bin.parent)
    shutil.copytree(cfg.run_dir / "pki", cache / "run" / "pki")
    mine = dataclasses.replace(cfg, cache=cache, etcd_port=free_pair(), apiserver_port=free_port())
    kube.start(mine)

    def stop() -> None:
        kube.stop(mine)
        shutil.rmtree(cache, ignore_errors=True)

    return mine, stop


def kubectl(cfg, *args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(cfg.kubectl), f"--kubeconfig={cfg.kubeconfig}", *args],
        capture_output=True,
        text=True,
        check=check,
        input=input,
        timeout=300,
    )


def apply_crd(cfg, timeout: float = 60.0) -> None:
    """Apply the CRD and wait until it is Established. `kubectl wait` fails at once when it does not find
    the object, which a freshly started API server's cache can answer right after the apply: ask again."""
    kubectl(cfg, "apply", "-f", str(REPO / "crds" / "conductorworker.yaml"))
    kubectl(cfg, "apply", "-f", str(REPO / "crds" / "conductorconnection.yaml"))
    deadline = time.monotonic() + timeout
    while True:
        left = max(1, round(deadline - time.monotonic()))  # each wait gets what is left of the one timeout
        proc = kubectl(
            cfg,
            "wait",
            "--for=condition=Established",
            "crd/conductorworkers.conductor.io",
            f"--timeout={left}s",
            check=False,
        )
        if proc.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the ConductorWorker CRD is not Established: {proc.stderr.strip()}")
        time.sleep(1)


def api_client(cfg):
    from kubernetes import config

    return config.new_client_from_config(config_file=str(cfg.kubeconfig))


def new_namespace(api, prefix: str) -> str:
    from kubernetes import client

    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


def delete_namespace(api, name: str, wait: float = 0.0) -> bool:
    from kubernetes import client

    core = client.CoreV1Api(api)
    try:
        core.delete_namespace(name)
    except client.ApiException as exc:
        if exc.status != 404:
            raise
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            core.read_namespace(name)
        except client.ApiException as exc:
            if exc.status == 404:
                return True
        time.sleep(1)
    return wait <= 0


def foreign_operators(api) -> list[str]:
    """Running operator pods of the local stack (e.g. a Helm install by a demo or an e2e test): one that
    watches all namespaces also manages the benchmark's ConductorWorkers, and two operators with their
    own autoscaler histories make replicas flap. The benchmarks record them and wait for them to go."""
    from kubernetes import client

    pods = client.CoreV1Api(api).list_pod_for_all_namespaces(_preload_content=False)
    out = []
    for pod in json.loads(pods.data)["items"]:
        images = [c.get("image", "") for c in pod["spec"].get("containers", [])]
        if (
            any("conductor-worker-operator" in i for i in images)
            and (pod.get("status") or {}).get("phase") == "Running"
        ) and not pod["metadata"].get("deletionTimestamp"):
            out.append(f"{pod['metadata']['namespace']}/{pod['metadata']['name']}")
    return out


def wait_no_foreign_operator(api, timeout: float = 600) -> list[str]:
    deadline = time.monotonic() + timeout
    while (found := foreign_operators(api)) and time.monotonic() < deadline:
        print(f"[bench] waiting for a foreign operator to go: {found}", flush=True)
        time.sleep(10)
    return found


# -- output -------------------------------------------------------------------------------------------


def sleep_task_def(name: str, retry_count: int, response_timeout: int) -> dict[str, Any]:
    """The task definition of the sleep-workers image's task type, for the autoscaler benchmarks."""
    return {
        "name": name,
        "retryCount": retry_count,
        "retryLogic": "FIXED",
        "retryDelaySeconds": 0,
        "timeoutSeconds": 0,
        "responseTimeoutSeconds": response_timeout,
        "ownerEmail": "bench@example.com",
    }


def sleep_workflow_def(name: str, task: str) -> dict[str, Any]:
    """A one-task workflow whose task sleeps for the workflow's input `millis`."""
    return {
        "name": name,
        "version": 1,
        "schemaVersion": 2,
        "ownerEmail": "bench@example.com",
        "timeoutSeconds": 0,
        "tasks": [
            {
                "name": task,
                "taskReferenceName": "t",
                "type": "SIMPLE",
                "inputParameters": {"millis": "${workflow.input.millis}"},
            }
        ],
    }


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")


def save_results(out: Path, name: str, data: dict[str, Any], table: str, plot_kind: str | None) -> None:
    """The JSON, the Markdown table and (plot_kind given) the PNGs of one benchmark run, under out/name.*."""
    json_path = out / f"{name}.json"
    write_json(json_path, data)
    (out / f"{name}.md").write_text(table)
    if plot_kind:
        data["plots"] = [str(x) for x in plot(plot_kind, json_path, out / name)]
        write_json(json_path, data)


def plot(kind: str, json_path: Path, png_prefix: Path) -> list[Path]:
    """Draw the PNGs with the benchmark venv's matplotlib (created on demand, never a project dependency)."""
    py = BENCH_VENV / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "matplotlib"], check=True)
    out = subprocess.run(
        [str(py), str(Path(__file__).resolve()), "plot", kind, str(json_path), str(png_prefix)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=str(CACHE),
    )
    if out.returncode != 0:
        raise RuntimeError(f"plotting failed:\n{out.stdout}\n{out.stderr}")
    return [Path(p) for p in out.stdout.split()]


# -- plotting (runs in the benchmark venv: matplotlib only, no project imports) -----------------------


def _boxes(ax: Any, series: list[list[float]], labels: list[str], goal: float, goal_label: str) -> None:
    """One box per series with every sample drawn over it, and the goal as a dashed line."""
    ax.boxplot(series, showfliers=False)
    for i, s in enumerate(series, start=1):
        ax.scatter([i] * len(s), s, color="black", s=12, zorder=3)
    ax.set_xticks(range(1, len(labels) + 1), labels)
    ax.axhline(goal, color="tab:green", ls="--", lw=1, label=goal_label)


def _save(fig: Any, prefix: Path, suffix: str) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = prefix.parent / f"{prefix.name}_{suffix}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_autoscaler(data: dict[str, Any], prefix: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made: list[Path] = []
    steady = data.get("steady") or []
    if steady:
        fig, axes = plt.subplots(len(steady), 1, figsize=(11, 3.6 * len(steady)), squeeze=False)
        for ax, run in zip(axes[:, 0], steady, strict=True):
            rt = [t / 60 for t, _ in run["replicas_series"]]
            rv = [r for _, r in run["replicas_series"]]
            ax.step(rt, rv, where="post", color="tab:blue", lw=2, label="Deployment replicas")
            ax.set_ylabel("replicas", color="tab:blue")
            ax.set_ylim(0, max([*rv, 1]) + 1)
            ax2 = ax.twinx()
            st = run["status_series"]
            ax2.plot(
                [s["t"] / 60 for s in st], [s["depth"] or 0 for s in st], color="tab:orange", lw=1, label="queue depth"
            )
            ax2.plot(
                [s["t"] / 60 for s in st],
                [s["busy"] or 0 for s in st],
                color="tab:green",
                lw=1,
                alpha=0.7,
                label="busy slots",
            )
            ax2.set_ylabel("queue depth / busy slots")
            if run.get("warmup_s"):
                ax.axvline(run["warmup_s"] / 60, color="grey", ls=":", lw=1)
            ax.set_title(
                f"steady noisy load, polling {run['interval_s']} s, scale-down window {run['window_s']} s: "
                f"{run['changes_counted']} replica changes in {run['minutes']:.1f} min "
                f"({run['changes_per_10min']:.1f} per 10 min)"
            )
            ax.set_xlabel("minutes")
            lines = ax.get_legend_handles_labels()
            lines2 = ax2.get_legend_handles_labels()
            ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="upper left", fontsize=8)
        made.append(_save(fig, prefix, "steady"))

    trials = data.get("trials") or {}
    if trials:
        fig, ax = plt.subplots(figsize=(9, 4.5))
        labels, series = [], []
        for key in sorted(trials):
            t = trials[key]
            labels.append(f"{t['kind']}\npolling {t['interval_s']} s")
            series.append(t["seconds"])
        _boxes(ax, series, labels, 5, "goal: 5 s")
        ax.axhline(15, color="tab:purple", ls=":", lw=1, label="HPA sync period 15 s (reference)")
        ax.axhline(30, color="tab:red", ls=":", lw=1, label="KEDA polling 30 s (reference)")
        ax.set_ylabel("seconds to the Deployment's replicas changing")
        ax.set_title("autoscaler response: backlog -> replicas (10 Hz Deployment poll)")
        ax.legend(fontsize=8)
        made.append(_save(fig, prefix, "response"))
    return made


def _plot_operator(data: dict[str, Any], prefix: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made: list[Path] = []
    runs = data.get("reconcile") or []
    if runs:
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
        for run in runs:
            label = f"{run['n']} CRs" + (f" ({run['label']})" if run.get("label") else "")
            ax1.plot([t for t, _ in run["progress"]], [d for _, d in run["progress"]], label=label)
            ax2.plot([t for t, _ in run["rss_series"]], [r for _, r in run["rss_series"]], label=label)
        ax1.axvline(30, color="tab:green", ls="--", lw=1, label="goal: 1,000 in 30 s")
        ax1.set_xlabel("seconds since the first create")
        ax1.set_ylabel("ConductorWorkers reconciled")
        ax1.set_title("reconcile progress")
        ax1.legend(fontsize=8)
        ax2.set_xlabel("seconds since the first create")
        ax2.set_ylabel("operator RSS (MiB)")
        ax2.set_title("operator resident memory")
        ax2.legend(fontsize=8)
        made.append(_save(fig, prefix, "reconcile"))
        largest = max(runs, key=lambda r: r["n"])
        api = largest.get("apiserver_requests_per_cr_min") or {}
        if api:
            mine = largest.get("operator_requests_per_cr_min") or {}
            keys = list(api)[:12][::-1]
            fig, ax = plt.subplots(figsize=(9, 0.45 * len(keys) + 1.5))
            ys = range(len(keys))
            ax.barh([y + 0.2 for y in ys], [api[k] for k in keys], 0.4, label="API server: all clients")
            ax.barh([y - 0.2 for y in ys], [mine.get(k, 0) for k in keys], 0.4, label="operator steps")
            ax.set_yticks(list(ys), keys)
            ax.set_xlabel("requests per ConductorWorker per minute")
            ax.set_title(f"steady state, {largest['n']} ConductorWorkers, {largest.get('steady_s', '?')} s window")
            ax.legend(fontsize=8)
            made.append(_save(fig, prefix, "requests"))
    scrape = data.get("scrape") or []
    if scrape:
        fig, ax = plt.subplots(figsize=(8, 4))
        labels = [f"{s['endpoints']} endpoints\n{s.get('label') or 'Scraper'}" for s in scrape]
        _boxes(ax, [s["seconds"] for s in scrape], labels, 2, "goal: 2 s")
        ax.set_ylabel("seconds per scrape round")
        ax.set_title("operator scraper: one round over all pod /metrics endpoints")
        ax.legend(fontsize=8)
        made.append(_save(fig, prefix, "scrape"))
    return made


if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == "plot":
    _data = json.loads(Path(sys.argv[3]).read_text())
    _prefix = Path(sys.argv[4])
    _prefix.parent.mkdir(parents=True, exist_ok=True)
    _made = (_plot_autoscaler if sys.argv[2] == "autoscaler" else _plot_operator)(_data, _prefix)
    print(" ".join(str(p) for p in _made))
