"""Run the real operator as a subprocess for tests and benchmarks (`python -m conductor_operator.main`).

Why a subprocess rather than kopf in a thread: kopf owns signal handling and an event loop per process;
a child process is stopped cleanly with SIGTERM and cannot leak handlers into the test process.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class OperatorProcess:
    """`conductor-operator --namespace NS --standalone` against a kubeconfig, logging to a file."""

    def __init__(
        self,
        kubeconfig: str | Path,
        namespaces: list[str],
        log_path: str | Path,
        env: dict[str, str] | None = None,
        peering: str | None = None,
        priority: int | None = None,
    ) -> None:
        self.kubeconfig = str(kubeconfig)
        self.namespaces = namespaces
        self.log_path = Path(log_path)
        self.env = env or {}
        self.peering = peering  # a KopfPeering name instead of --standalone (replicas that see each other)
        self.priority = priority
        self.liveness_port = free_port()
        self.metrics_port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self, timeout: float = 30.0) -> OperatorProcess:
        argv = [sys.executable, "-m", "conductor_operator.main", "--verbose"]
        argv += ["--peering", self.peering] if self.peering else ["--standalone"]
        if self.priority is not None:
            argv += ["--priority", str(self.priority)]
        for ns in self.namespaces:
            argv += ["--namespace", ns]
        argv += [
            "--liveness",
            f"http://127.0.0.1:{self.liveness_port}/healthz",
            "--metrics-port",
            str(self.metrics_port),
            "--metrics-host",
            "127.0.0.1",
        ]
        env = {**os.environ, "KUBECONFIG": self.kubeconfig, "CWO_RESYNC_SECONDS": "2", **self.env}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"operator exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if requests.get(f"http://127.0.0.1:{self.liveness_port}/healthz", timeout=1).ok:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"operator not live within {timeout}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def __enter__(self) -> OperatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
