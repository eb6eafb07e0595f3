"""I/O edge of the autoscaler: Conductor queue depths and the worker pods' /metrics.

Why a shared cache: many ConductorWorkers usually point at one Conductor server; one
`GET /tasks/queue/all` per server per interval answers all of them, instead of one request per task.
Why threads: the pod scrapes are independent and each may time out; a pool bounds the total wait to
about one timeout instead of one per pod.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import requests

from conductor_operator import sdk_metrics
from conductor_operator.servers import ServerClients
from worker_runtime.client import ConductorClient, ConductorError

log = logging.getLogger(__name__)


def queue_key(task: str, domain: str | None) -> str:
    """Conductor's queue name: `domain:taskType` when a domain is set."""
    return f"{domain}:{task}" if domain else task


class QueueDepthSource:
    """Queue depths per Conductor server, cached for `max_age` seconds and shared by all callers."""

    def __init__(self, timeout: float = 5.0) -> None:
        self.timeout = timeout
        self._clients = ServerClients(timeout)
        self._cache: dict[tuple[str, str], tuple[float, dict[str, int]]] = {}
        self._no_queue_all: set[tuple[str, str]] = set()
        self.requests = 0  # requests sent to Conductor servers (tests check the sharing)

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
        key, client = self._clients.get(url, key_id, key_secret)
        with self._clients.lock(key):  # concurrent callers for one server wait for the one request
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
        self._clients.close()


@dataclass(frozen=True)
class PodMetrics:
    """What one pod's /metrics says (summed over its task types).

    has_busy False: the page (e.g. conductor-go's, or the JavaScript SDK's legacy names) reports no busy
    slots, so the pod counts neither for utilization nor for busy protection: queue depth alone.
    busy_seconds: the slot-seconds counter (the runtime and the sidecar export it), None without it;
    mean_busy: the busy slots averaged since the previous scrape (busy_average.py), None until known."""

    busy_slots: int = 0
    slot_capacity: int = 0
    polls: float = 0.0
    empty_polls: float = 0.0
    per_task_busy: dict[str, int] = field(default_factory=dict)
    has_busy: bool = True
    dialects: frozenset[str] = frozenset()
    busy_seconds: float | None = None
    mean_busy: float | None = None


def _sum(values: Iterable[float | None]) -> float:
    return sum((v for v in values if v is not None), 0.0)


def parse_metrics(text: str, slots: Mapping[str, int] | None = None) -> PodMetrics:
    """Read any Conductor SDK's /metrics page through sdk_metrics' table.

    slots: spec.tasks' concurrency per task type, the capacity of a pod whose SDK reports busy slots
    (`active_workers`) but not its slots (only the runtime exports worker_slot_capacity). Why not
    prometheus_client's parser: it builds every family and sample (histograms are most of a page), ~5-10 ms
    a pod, which made a 1,000-pod scrape CPU-bound; the table picks its series out line by line.
    """
    page = sdk_metrics.parse(text)
    slots = slots or {}
    busy = {t: int(o.busy) for t, o in page.tasks.items() if o.busy is not None}
    polls = _sum(o.polls for o in page.tasks.values())
    empty = _sum(o.empty_polls for o in page.tasks.values())
    if not busy:
        return PodMetrics(polls=polls, empty_polls=empty, has_busy=False, dialects=page.dialects)
    seconds = [o.busy_seconds for o in page.tasks.values() if o.busy_seconds is not None]
    capacity = 0.0
    for task in set(page.tasks) | set(slots):
        reported = page.tasks[task].capacity if task in page.tasks else None
        capacity += reported if reported is not None else slots.get(task, 0)
    return PodMetrics(
        busy_slots=sum(busy.values()),
        slot_capacity=int(capacity),
        polls=polls,
        empty_polls=empty,
        per_task_busy=busy,
        dialects=page.dialects,
        busy_seconds=sum(seconds) if seconds else None,
    )


@dataclass(frozen=True)
class ScrapeResult:
    """pods: the pages that answered; errors: the pods whose /metrics did not (the HPA's missing metrics)."""

    pods: dict[str, PodMetrics]
    errors: dict[str, str]

    @property
    def metered(self) -> dict[str, PodMetrics]:
        """The pods that report busy slots: the only ones utilization and busy protection can use."""
        return {n: p for n, p in self.pods.items() if p.has_busy}

    @property
    def unmetered(self) -> list[str]:
        return sorted(n for n, p in self.pods.items() if not p.has_busy)

    @property
    def busy_slots(self) -> int:
        return sum(p.busy_slots for p in self.metered.values())

    @property
    def mean_busy_slots(self) -> float:
        """Busy slots averaged over the last scrape interval where a pod's counter allows it, else its sample:
        what utilization is computed from."""
        return sum(p.busy_slots if p.mean_busy is None else p.mean_busy for p in self.metered.values())

    @property
    def slot_capacity(self) -> int:
        return sum(p.slot_capacity for p in self.metered.values())

    @property
    def busy_pods(self) -> list[str]:
        return sorted(name for name, p in self.metered.items() if p.busy_slots > 0)

    @property
    def dialects(self) -> frozenset[str]:
        return frozenset().union(*(p.dialects for p in self.pods.values()))


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

    def _one(self, url: str, deadline: float, slots: Mapping[str, int]) -> PodMetrics:
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
        metrics = parse_metrics(body.decode(resp.encoding or "utf-8", errors="replace"), slots)
        # A Conductor worker's page without busy slots (Go, JavaScript's default names) is no error: it says
        # "queue depth only". A page with no Conductor metric at all is not a worker's page: it counts as
        # missing, like a pod that does not answer, since that pod might be busy.
        if not metrics.dialects:
            raise ValueError("no Conductor worker metric in /metrics")
        return metrics

    def scrape(self, targets: dict[str, str], slots: Mapping[str, int] | None = None) -> ScrapeResult:
        """targets: pod name -> http://ip:port/path; slots: see parse_metrics."""
        deadline = time.monotonic() + self.timeout
        slots = dict(slots or {})
        futures = {name: self._pool.submit(self._one, url, deadline, slots) for name, url in targets.items()}
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


def pod_targets(pods: Iterable[dict], port: int, path: str = "/metrics") -> dict[str, str]:
    """Scrape targets from pod status: running pods with an IP that are not being deleted... or are.

    Terminating pods are included on purpose: a draining pod may still be busy, and busy protection
    must see it.
    """
    out: dict[str, str] = {}
    for pod in pods:
        status = pod.get("status") or {}
        ip = status.get("podIP")
        if ip and status.get("phase") == "Running":
            out[pod["metadata"]["name"]] = f"http://{ip}:{port}{path}"
    return out


def serving(scrape: ScrapeResult, pods: list[dict[str, Any]]) -> ScrapeResult:
    """The scrape without Terminating pods: they are leaving (the HPA ignores deleted pods too), so their
    slots must not count for utilization, busy pods or scale to zero. Busy protection still sees them."""
    leaving = {p["metadata"]["name"] for p in pods if p["metadata"].get("deletionTimestamp")}
    if not leaving:
        return scrape
    return ScrapeResult(
        {n: p for n, p in scrape.pods.items() if n not in leaving},
        {n: e for n, e in scrape.errors.items() if n not in leaving},
    )
