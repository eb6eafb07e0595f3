"""The sidecar's HTTP side: the proxy on the pod's loopback, and the run loop of `conductor-worker sidecar`.

The proxy listens on 127.0.0.1 only: it adds the pod's credentials to what it forwards, so no other pod
may use it. /metrics, the probes and /drain are on the metrics port (all addresses, for Prometheus and
the kubelet); /drain answers only the pod itself and the node, where the kubelet runs the worker
container's preStop hook.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

from worker_runtime.metrics import HealthServer
from worker_runtime.sidecar import http1
from worker_runtime.sidecar.core import Sidecar

log = logging.getLogger(__name__)

TICK_SECONDS = 1.0
LOOPBACK = frozenset({"127.0.0.1", "::1", "::ffff:127.0.0.1"})


def proxy_server(sidecar: Sidecar, port: int, host: str = "127.0.0.1") -> http1.Server:
    def handle(req: http1.Request) -> tuple[int, list[tuple[str, str]], bytes]:
        path, _, query = req.target.partition("?")
        reply = sidecar.handle(req.method, path, query, req.headers, req.body)
        return reply.status, reply.headers, reply.body

    return http1.Server((host, port), handle)


def drain_route(
    sidecar: Sidecar, timeout: float, allowed: Callable[[], frozenset[str]]
) -> Callable[[str], tuple[int, dict]]:
    """GET /drain for the preStop hook: refused (403) from anywhere but the pod and its node."""

    def drain(client_ip: str) -> tuple[int, dict[str, Any]]:
        if client_ip not in LOOPBACK and client_ip not in allowed():
            log.warning("refused /drain from %s: only the pod and its node may drain it", client_ip)
            return 403, {"ok": False, "error": "only the pod itself and its node may drain the sidecar"}
        drained, held = sidecar.drain(timeout)
        return 200, {"ok": drained, "held": held}

    return drain


class SidecarProcess:
    """The proxy, the health server and the once-a-second tick, started and stopped together."""

    def __init__(self, sidecar: Sidecar, proxy_port: int, health: HealthServer, drain_timeout: float) -> None:
        self.sidecar = sidecar
        self.proxy = proxy_server(sidecar, proxy_port)
        self.health = health
        self.drain_timeout = drain_timeout
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self.proxy.serve_forever, name="sidecar-proxy", daemon=True),
            threading.Thread(target=self._tick, name="sidecar-tick", daemon=True),
        ]

    def _tick(self) -> None:
        while not self._stop.wait(TICK_SECONDS):
            try:
                self.sidecar.tick()
            except Exception:
                log.exception("sidecar tick failed")

    def start(self) -> SidecarProcess:
        self.health.start()
        for thread in self._threads:
            thread.start()
        log.info("sidecar proxy on 127.0.0.1:%d", self.proxy.server_address[1])
        return self

    def stop(self) -> int:
        """Drain, hand back what is left, stop serving. A native sidecar is stopped after the worker exited:
        then there is nothing to wait for."""
        watch = self.sidecar.processes
        worker_gone = watch.enabled and not watch.alive()
        drained, _ = self.sidecar.drain(0 if worker_gone else self.drain_timeout)
        handed = self.sidecar.release_all("the pod is stopping")
        self._stop.set()
        self.proxy.shutdown()
        self.proxy.server_close()
        self.health.stop()
        log.info("sidecar stopped (drained: %s, handed back: %d)", drained, handed)
        return 0

    def run_forever(self) -> int:
        stop = threading.Event()

        def on_signal(signum: int, _frame: Any) -> None:
            log.info("signal %d: stopping", signum)
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        self.start()
        stop.wait()
        return self.stop()
