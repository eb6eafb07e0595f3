"""I/O edge of the autoscaler: Conductor queue depths and the worker pods' /metrics.

Why a shared cache: many ConductorWorkers usually point at one Conductor server; one
`GET /tasks/queue/all` per server per interval answers all of them, instead of one request per task.
Why threads: the pod scrapes are independent and each may time out; a pool bounds the total wait to
about one timeout instead of one per pod.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import requests

from worker_runtime.client import ConductorClient, ConductorError

log = logging.getLogger(__name__)


def queue_key(task: str, domain: str | None) -> str:
    """Conductor's queue name: `domain:taskType` when a domain is set."""
    return f"{domain}:{task}" if domain else task


class QueueDepthSource:
    """Queue depths per Conductor server, cached for `max_age` seconds and shared by all callers."""

    def __init__(self, timeout: float = 5.0) -> None:
        self.timeout = timeout
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str], ConductorClient] = {}
        self._server_locks: dict[tuple[str, str], threading.Lock] = {}
        self._cache: dict[tuple[str, str], tuple[float, dict[str, int]]] = {}
        self._no_queue_all: set[tuple[str, str]] = set()
        self.requests = 0  # requests sent to Conductor servers (tests check the sharing)

    def _client(self, url: str, key_id: str | None, key_secret: str | None) -> tuple[tuple[str, str], ConductorClient]:
        ident = hashlib.sha256(f"{key_id}\0{key_secret}".encode()).hexdigest()[:12] if key_id else ""
        key = (url.rstrip("/"), ident)
        with self._lock:
            if key not in self._clients:
                self._clients[key] = ConductorClient(
                    url, key_id or "", key_secret or "", connect_timeout=self.timeout, read_timeout=self.timeout
                )
                self._server_locks[key] = threading.Lock()
            return key, self._clients[key]

    def depths(
        self,
        url: str,
        queues: Iterable[tuple[str, str | None]],
        max_age: float,
        key_id: str | None = None,
        key_secret: str | None = None,
        now: float | None = None,
    ) -> dict[str, int]:
        """Depth of each (task, domain) queue; raises ConductorError when the server cannot be asked."""
        queues = list(queues)
        key, client = self._client(url, key_id, key_secret)
        with self._server_locks[key]:  # concurrent callers for one server wait for the one request
            now = time.monotonic() if now is None else now
            cached = self._cache.get(key)
            if key not in self._no_queue_all and cached and now - cached[0] < max_age:
                sizes = cached[1]
            elif key in self._no_queue_all:
                sizes = self._per_task(client, queues)
            else:
                try:
                    self.requests += 1
                    sizes = {k: int(v) for k, v in client.queue_sizes().items()}
                    self._cache[key] = (now, sizes)
                except ConductorError as exc:
                    if exc.status not in (404, 405):
                        raise
                    log.info("%s has no /tasks/queue/all; asking per task type", url)
                    self._no_queue_all.add(key)
                    sizes = self._per_task(client, queues)
        return {queue_key(t, d): int(sizes.get(queue_key(t, d), 0)) for t, d in queues}

    def _per_task(self, client: ConductorClient, queues: list[tuple[str, str | None]]) -> dict[str, int]:
        """Fallback (Orkes): /tasks/queue/sizes for all plain task types in one request, domains one by one."""
        out: dict[str, int] = {}
        plain = [t for t, d in queues if not d]
        if plain:
            self.requests += 1
            resp = client.request("GET", "/tasks/queue/sizes", params={"taskType": plain})
            out.update({k: int(v) for k, v in (resp.json() or {}).items()})
        for task, domain in queues:
            if domain:
                self.requests += 1
                out[queue_key(task, domain)] = client.queue_size(task, domain)
        return out

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()


@dataclass(frozen=True)
class PodMetrics:
    """What one pod's /metrics says (summed over its task types)."""

    busy_slots: int = 0
    slot_capacity: int = 0
    polls: float = 0.0
    empty_polls: float = 0.0
    per_task_busy: dict[str, int] = field(default_factory=dict)


_WANTED = ("worker_busy_slots", "worker_slot_capacity", "task_poll_counter_total", "task_poll_empty_total")
_TASK_LABEL = re.compile(r'(?:^|,)\s*taskType\s*=\s*"((?:[^"\\]|\\.)*)"')


def _sample(line: str) -> tuple[str, str, float] | None:
    """(name, taskType, value) of one exposition-format sample line, or None if it cannot be read."""
    brace = line.find("{")
    space = line.find(" ")
    if brace != -1 and (space == -1 or brace < space):
        name = line[:brace].rstrip()
        end = line.rfind("}")
        if end < brace:
            return None
        labels, rest = line[brace + 1 : end], line[end + 1 :]
        found = _TASK_LABEL.search(labels)
        task = found.group(1).replace('\\"', '"').replace("\\\\", "\\") if found else ""
    else:
        if space == -1:
            return None
        name, rest, task = line[:space], line[space:], ""
    parts = rest.split()
    if not parts:
        return None
    try:
        return name, task, float(parts[0])
    except ValueError:
        return None


def parse_metrics(text: str) -> PodMetrics:
    """Parse the runtime's Prometheus text (worker_busy_slots / worker_slot_capacity / poll counters).

    Why not prometheus_client's parser: it builds every family and sample of the page (histograms make
    up most of it) and costs ~5-10 ms per pod, which made a 1,000-pod scrape CPU-bound at several
    seconds. Only the four series the autoscaler reads are picked out, line by line (~0.1 ms); comments,
    other series and unreadable lines are skipped.
    """
    busy: dict[str, float] = {}
    capacity: dict[str, float] = {}
    polls = empty = 0.0
    for line in text.splitlines():
        if not line.startswith(_WANTED):
            continue
        sample = _sample(line)
        if sample is None:
            continue
        name, task, value = sample
        if name == "worker_busy_slots":
            busy[task] = busy.get(task, 0.0) + value
        elif name == "worker_slot_capacity":
            capacity[task] = capacity.get(task, 0.0) + value
        elif name == "task_poll_counter_total":
            polls += value
        elif name == "task_poll_empty_total":
            empty += value
    return PodMetrics(
        busy_slots=int(sum(busy.values())),
        slot_capacity=int(sum(capacity.values())),
        polls=polls,
        empty_polls=empty,
        per_task_busy={k: int(v) for k, v in busy.items()},
    )


@dataclass(frozen=True)
class ScrapeResult:
    pods: dict[str, PodMetrics]
    errors: dict[str, str]

    @property
    def busy_slots(self) -> int:
        return sum(p.busy_slots for p in self.pods.values())

    @property
    def slot_capacity(self) -> int:
        return sum(p.slot_capacity for p in self.pods.values())

    @property
    def busy_pods(self) -> list[str]:
        return sorted(name for name, p in self.pods.items() if p.busy_slots > 0)


class Scraper:
    """Concurrent /metrics scrapes, each bounded by `timeout` in total (one pool for the whole operator).

    Why a total deadline and not only the socket timeouts: those bound each read, so a pod that sends a
    byte every second never times out; its scrape would hold a pool thread (and the evaluation) forever.
    """

    MAX_BYTES = 4 * 1024 * 1024  # a runtime's /metrics is a few KiB; more is not a worker's exposition

    def __init__(self, timeout: float = 2.0, workers: int = 32) -> None:
        self.timeout = timeout
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="scrape")
        self._session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=workers, pool_maxsize=workers)
        self._session.mount("http://", adapter)

    def _one(self, url: str, deadline: float) -> PodMetrics:
        # identity: the deadline is checked between raw reads (a decoder could wait for more bytes)
        headers = {"Accept-Encoding": "identity"}
        with self._session.get(url, timeout=(self.timeout, self.timeout), stream=True, headers=headers) as resp:
            resp.raise_for_status()
            body = bytearray()
            while chunk := resp.raw.read1(65536):
                body += chunk
                if len(body) > self.MAX_BYTES:
                    raise ValueError(f"/metrics larger than {self.MAX_BYTES} bytes")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"/metrics not complete within {self.timeout}s")
        metrics = parse_metrics(body.decode(resp.encoding or "utf-8", errors="replace"))
        if metrics.slot_capacity <= 0:  # every runtime exports it (>= 1 slot): this is not a worker's page
            raise ValueError("no worker_slot_capacity in /metrics")
        return metrics

    def scrape(self, targets: dict[str, str]) -> ScrapeResult:
        """targets: pod name -> http://ip:port/metrics."""
        deadline = time.monotonic() + self.timeout
        futures = {name: self._pool.submit(self._one, url, deadline) for name, url in targets.items()}
        pods: dict[str, PodMetrics] = {}
        errors: dict[str, str] = {}
        # One wait for all (a read in progress at the deadline may take one more socket timeout).
        wait(futures.values(), timeout=self.timeout * 2 + 1)
        for name, fut in futures.items():
            if not fut.done():
                fut.cancel()
                errors[name] = f"TimeoutError: no answer within {self.timeout * 2 + 1}s"
                continue
            try:
                pods[name] = fut.result()
            except Exception as exc:
                errors[name] = f"{type(exc).__name__}: {exc}"[:200]
        return ScrapeResult(pods, errors)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._session.close()


def pod_targets(pods: Iterable[dict], port: int) -> dict[str, str]:
    """Scrape targets from pod status: running pods with an IP that are not being deleted... or are.

    Terminating pods are included on purpose: a draining pod may still be busy, and busy protection
    must see it.
    """
    out: dict[str, str] = {}
    for pod in pods:
        status = pod.get("status") or {}
        ip = status.get("podIP")
        if ip and status.get("phase") == "Running":
            out[pod["metadata"]["name"]] = f"http://{ip}:{port}/metrics"
    return out
