"""Shared pieces of the benchmarks: the Conductor REST calls, the contenders' command lines, the
process-tree sampler (CPU and memory from /proc via psutil), statistics, machine facts, output files.

Runs in the benchmark-only virtualenv (requests, psutil, matplotlib); it imports nothing of the project.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import requests

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
CACHE = Path(
    os.environ.get("CWO_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "conductor-worker-operator"
)


def now_ms() -> float:
    """Wall clock in epoch ms: the same clock as the server's task timestamps (same machine)."""
    return time.time() * 1000.0


# -- the server -------------------------------------------------------------------------------------


class Server:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=32)
        self.session.mount("http://", adapter)

    def _req(self, method: str, path: str, **kw: Any) -> requests.Response:
        resp = self.session.request(method, f"{self.url}{path}", timeout=60, **kw)
        resp.raise_for_status()
        return resp

    # The endpoints a worker calls; the server counts its requests per endpoint in its own metrics.
    WORKER_URIS = (
        "/api/tasks/poll/batch/{tasktype}",
        "/api/tasks/poll/{tasktype}",
        "/api/tasks",
        "/api/tasks/update-v2",
    )

    def worker_requests(self) -> int | None:
        """Requests the server has answered on the worker endpoints (polls, updates, update-v2; any
        status), from Spring's `http_server_requests_seconds_count` at /actuator/prometheus: counted by
        the server, so every contender is measured the same way. None if the server does not expose it."""
        base = self.url.removesuffix("/api")
        try:
            text = self.session.get(f"{base}/actuator/prometheus", timeout=30).text
        except requests.RequestException:
            return None
        total, seen = 0.0, False
        for line in text.splitlines():
            if not line.startswith("http_server_requests_seconds_count{"):
                continue
            labels, _, value = line.rpartition(" ")
            uri = labels.partition('uri="')[2].partition('"')[0]
            if uri in self.WORKER_URIS:
                total += float(value)
                seen = True
        return int(total) if seen or "http_server_requests" in text else None

    def version(self) -> str:
        try:
            cp = self._req("GET", "/admin/config").json().get("java.class.path", "")
            return Path(cp).name.removeprefix("conductor-server-").removesuffix("-boot.jar") or "unknown"
        except (requests.RequestException, ValueError):
            return "unknown"

    def define(self, task_names: list[str], workflow: str | None = None) -> None:
        defs = [
            {
                "name": t,
                "retryCount": 0,
                "timeoutSeconds": 0,
                "responseTimeoutSeconds": 600,
                "ownerEmail": "bench@example.com",
            }
            for t in task_names
        ]
        self._req("POST", "/metadata/taskdefs", json=defs)
        for t in task_names:
            self._req("PUT", "/metadata/workflow", json=[self.workflow_def(workflow or f"{t}_wf", t)])

    @staticmethod
    def workflow_def(name: str, task: str) -> dict[str, Any]:
        return {
            "name": name,
            "version": 1,
            "schemaVersion": 2,
            "ownerEmail": "bench@example.com",
            "timeoutSeconds": 0,
            "tasks": [{"name": task, "taskReferenceName": "t", "type": "SIMPLE"}],
        }

    def undefine(self, task_names: list[str]) -> None:
        for t in task_names:
            for path in (f"/metadata/workflow/{t}_wf/1", f"/metadata/taskdefs/{t}"):
                with contextlib.suppress(requests.RequestException):
                    self._req("DELETE", path)

    def start_workflows(self, workflow: str, n: int, threads: int = 8) -> list[str]:
        def start(_: int) -> str:
            return self._req("POST", f"/workflow/{workflow}", json={}).text

        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(start, range(n)))

    def start_paced(self, workflow: str, n: int, rate: float) -> list[str]:
        ids = []
        t0 = time.monotonic()
        for i in range(n):
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            ids.append(self._req("POST", f"/workflow/{workflow}", json={}).text)
        return ids

    def running(self, workflow: str) -> list[str]:
        return self._req("GET", f"/workflow/running/{workflow}", params={"version": 1}).json()

    def queue_size(self, task: str) -> int:
        return int(self._req("GET", "/tasks/queue/size", params={"taskType": task}).json())

    def workflows(self, ids: list[str], threads: int = 8) -> list[dict[str, Any]]:
        def get(wid: str) -> dict[str, Any]:
            return self._req("GET", f"/workflow/{wid}", params={"includeTasks": "true"}).json()

        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(get, ids))

    def remove(self, ids: list[str], threads: int = 8) -> None:
        def rm(wid: str) -> None:
            with contextlib.suppress(requests.RequestException):
                self._req("DELETE", f"/workflow/{wid}/remove", params={"archiveWorkflow": "false"})

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(rm, ids))


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:6]}"


# -- the contenders ---------------------------------------------------------------------------------


@dataclass
class Pythons:
    runtime: Path = CACHE / "venv" / "bin" / "python"
    sdk: Path = CACHE / "sdk-venv" / "bin" / "python"
    bench: Path = Path(sys.executable)
    ceiling_go: Path = CACHE / "bench-bin" / "ceiling-go"  # built by scripts/bench.sh
    sdk_go: Path = CACHE / "bench-bin" / "sdk-go"  # bench/sdk_go, built by scripts/bench.sh
    hop_go: Path = CACHE / "bench-bin" / "hop-go"  # bench/hop_go, built by scripts/bench.sh


def command(contender: str, py: Pythons, server_url: str, threads: int, extra: list[str] | None = None) -> list[str]:
    """The contender's command line; the task types come from BENCH_TASKS in its environment."""
    if contender == "runtime-t100":  # the runtime with the SDK's 100 ms server-side poll wait
        return [*command("runtime", py, server_url, threads), "--poll-timeout-ms", "100"]
    if contender == "runtime-v2":  # reports with update-v2 and runs the task it hands back
        return [*command("runtime", py, server_url, threads), "--update-v2"]
    if contender == "runtime-v1":  # reports with POST /tasks only (a poll per batch of tasks)
        return [*command("runtime", py, server_url, threads), "--no-update-v2"]
    if contender == "runtime":
        cli = py.runtime.parent / "conductor-worker"
        return [
            str(cli),
            "run",
            "--path",
            str(BENCH_DIR),
            "--module",
            "bench_workers",
            "--server-url",
            server_url,
            "--thread-count",
            str(threads),
            "--poll-interval-ms",
            "100",
            "--metrics-port",
            "-1",
            "--worker-id",
            "bench-runtime",
            "--log-level",
            "WARNING",
            *(extra or []),
        ]
    if contender in ("sdk", "sdk-thread"):
        return [
            str(py.sdk),
            str(BENCH_DIR / "sdk_worker.py"),
            "--server-url",
            server_url,
            "--threads",
            str(threads),
        ]
    if contender in ("ceiling", "ceiling-v2"):
        cmd = [
            str(py.bench),
            str(BENCH_DIR / "ceiling.py"),
            "--server-url",
            server_url,
            "--threads",
            str(threads),
        ]
        return [*cmd, "--update-v2"] if contender == "ceiling-v2" else cmd
    if contender == "ceiling-go":  # the compiled bare update-v2 loop: the client's cost near zero
        return [str(py.ceiling_go), "--server-url", server_url, "--threads", str(threads), "--update-v2"]
    if contender == "sdk-go":  # conductor-go's TaskRunner (bench/sdk_go), talking to the server itself
        return [str(py.sdk_go), "--threads", str(threads)]
    if contender == "sdk-go+sidecar":  # the same worker through `conductor-worker sidecar`, as in a pod
        sidecar = [
            str(py.runtime.parent / "conductor-worker"),
            "sidecar",
            "--server-url",
            server_url,
            "--port",
            "$SIDECAR_PORT",
            "--metrics-port",
            "$SIDECAR_METRICS_PORT",
            "--log-level",
            "WARNING",
        ]
        script = " ".join(a if a.startswith("$") else shlex.quote(a) for a in sidecar)
        return _beside_sdk_go(script, py, server_url, threads)
    if contender == "sdk-go+hop-go":  # the same worker through a bare Go reverse proxy: the hop's own price
        hop = f"{shlex.quote(str(py.hop_go))} --server-url {shlex.quote(server_url)} --listen 127.0.0.1:$SIDECAR_PORT"
        return _beside_sdk_go(hop, py, server_url, threads)
    raise ValueError(contender)


def _beside_sdk_go(proxy: str, py: Pythons, server_url: str, threads: int) -> list[str]:
    """sh starts the proxy, waits for its port, then becomes the Go worker (the proxy is its child)."""
    wait = f'{shlex.quote(str(py.bench))} -c {shlex.quote(_WAIT_FOR_PORT)} "$SIDECAR_PORT"'
    worker = " ".join(shlex.quote(a) for a in command("sdk-go", py, server_url, threads))
    return ["sh", "-c", f"{proxy} & {wait} && exec {worker}"]


# Blocks until the sidecar listens (the worker's first polls would otherwise be refused).
_WAIT_FOR_PORT = (
    "import socket,sys,time\n"
    "for _ in range(200):\n"
    "    try: socket.create_connection(('127.0.0.1', int(sys.argv[1])), 0.1).close(); break\n"
    "    except OSError: time.sleep(0.05)\n"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(
    contender: str, py: Pythons, server_url: str, threads: int, tasks: dict[str, str], log: Path
) -> subprocess.Popen:
    env = dict(os.environ)
    env["BENCH_TASKS"] = ",".join(f"{name}:{kind}" for name, kind in tasks.items())
    env["CONDUCTOR_LOG_LEVEL"] = "WARNING"
    if contender == "sdk-thread":
        env["CONDUCTOR_WORKER_ISOLATION"] = "thread"
    else:
        env.pop("CONDUCTOR_WORKER_ISOLATION", None)
    if contender == "sdk-go":
        env["CONDUCTOR_SERVER_URL"] = server_url
    if contender in ("sdk-go+sidecar", "sdk-go+hop-go"):
        env["SIDECAR_PORT"], env["SIDECAR_METRICS_PORT"] = str(_free_port()), str(_free_port())
        env["CONDUCTOR_SERVER_URL"] = f"http://127.0.0.1:{env['SIDECAR_PORT']}/api"
        env["CONDUCTOR_SIDECAR_TASKS"] = json.dumps([{"name": name, "concurrency": threads} for name in tasks])
    log.parent.mkdir(parents=True, exist_ok=True)
    out = log.open("ab")
    return subprocess.Popen(
        command(contender, py, server_url, threads),
        env=env,
        cwd=str(BENCH_DIR),
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def terminate(proc: subprocess.Popen, grace: float = 15.0) -> None:
    """SIGTERM the contender, wait, then SIGKILL whatever of its own process tree is left."""
    try:
        tree = [proc.pid, *(c.pid for c in psutil.Process(proc.pid).children(recursive=True))]
    except psutil.NoSuchProcess:
        tree = [proc.pid]
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        pass
    for pid in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


# -- the process-tree sampler -----------------------------------------------------------------------


@dataclass
class Sample:
    t_ms: float
    cpu_s: float  # user + system seconds of every process of the tree seen so far
    rss: int  # bytes, summed over the live processes
    procs: int


@dataclass
class TreeSampler:
    """Samples a process and its descendants every `interval` seconds, in a thread.

    CPU is cumulative per pid (the last value seen is kept for processes that exit), so the sum never
    goes backwards. With `full=True` it also sums PSS and USS (/proc/<pid>/smaps_rollup), slower.
    """

    pid: int
    interval: float = 0.1
    full: bool = False
    samples: list[Sample] = field(default_factory=list)
    pss: list[int] = field(default_factory=list)
    uss: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._cpu: dict[int, float] = {}
        self._procs: dict[int, psutil.Process] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> TreeSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _tree(self) -> list[psutil.Process]:
        try:
            root = self._procs.setdefault(self.pid, psutil.Process(self.pid))
            found = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []
        # keep the Process objects (their identity guards against pid reuse)
        return [self._procs.setdefault(p.pid, p) for p in found]

    def sample(self) -> Sample | None:
        rss = pss = uss = 0
        procs = self._tree()
        for p in procs:
            try:
                ct = p.cpu_times()
                self._cpu[p.pid] = ct.user + ct.system
                if self.full:
                    mem = p.memory_full_info()
                    rss += mem.rss
                    pss += getattr(mem, "pss", 0)
                    uss += mem.uss
                else:
                    rss += p.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        if not procs:
            return None
        s = Sample(now_ms(), sum(self._cpu.values()), rss, len(procs))
        self.samples.append(s)
        if self.full:
            self.pss.append(pss)
            self.uss.append(uss)
        return s

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def cpu_at(self, t_ms: float) -> float:
        """Cumulative CPU seconds at the first sample at or after t_ms (the last one if none)."""
        for s in self.samples:
            if s.t_ms >= t_ms:
                return s.cpu_s
        return self.samples[-1].cpu_s if self.samples else 0.0

    @property
    def peak_rss(self) -> int:
        return max((s.rss for s in self.samples), default=0)


def server_processes(server_url: str) -> list[psutil.Process]:
    """The process listening on the server's port (the Conductor JVM) and the local processes it holds
    connections to (its redis-server): what the server spends per task, next to the client's CPU."""
    from urllib.parse import urlparse

    port = urlparse(server_url).port or 80
    listeners = {c.laddr.port: c.pid for c in psutil.net_connections("tcp") if c.status == "LISTEN" and c.pid}
    if port not in listeners:
        return []
    server = psutil.Process(listeners[port])
    stores = {listeners[c.raddr.port] for c in server.net_connections("tcp") if c.raddr and c.raddr.port in listeners}
    return [server, *(psutil.Process(pid) for pid in stores - {server.pid})]


class FixedSampler(TreeSampler):
    """A TreeSampler over a fixed set of processes (the server's), not one process's tree."""

    def __init__(self, procs: list[psutil.Process], interval: float = 0.1) -> None:
        super().__init__(procs[0].pid if procs else 0, interval)
        self._fixed = procs

    def _tree(self) -> list[psutil.Process]:
        return list(self._fixed)


# -- statistics and output --------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def spread(values: list[float]) -> dict[str, float | None]:
    vals = [v for v in values if v is not None]
    if not vals:
        return {"min": None, "median": None, "max": None}
    return {"min": min(vals), "median": statistics.median(vals), "max": max(vals)}


def machine(server: Server) -> dict[str, Any]:
    cpu_model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model,
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "conductor_server": server.version(),
        "loadavg_at_start": [round(x, 2) for x in load],
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)
