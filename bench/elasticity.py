"""Elasticity and service figures of one autoscaler's run (bench/autoscalers.py). Pure: no I/O.

The elasticity metrics are the SPEC Research Group's (Herbst et al., "Ready for Rain? A View from SPEC
Research on the Future of Cloud Metrics", SPEC-RG-2016-01; as used by Bauer et al., "Chameleon", ACM
TOMPECS 2019). Over a run of length T with step series of supply s_t and demand d_t, each value holding
for Δt:

    θU = 100/T · Σ (d_t - s_t)⁺ / max(d_t, ε) · Δt      under-provisioning accuracy, % of the demand missing
    θO = 100/T · Σ (s_t - d_t)⁺ / max(d_t, ε) · Δt      over-provisioning accuracy, % of surplus over demand
    τU = 100/T · Σ [d_t > s_t] · Δt                     under-provisioning timeshare, % of the time
    τO = 100/T · Σ [s_t > d_t] · Δt                     over-provisioning timeshare
    jitter = (E_S - E_D) / T                            supply adaptations minus demand changes, per hour

with ε = 1 replica (so a fleet kept up while nothing is demanded counts as its size in replicas). Why these:
they separate how far off an autoscaler is from how long it is off, and the jitter says whether it
adapts more often (> 0: oscillates) or less often (< 0: too sluggish) than the demand changes.

Supply is the Deployment's spec.replicas (the pods the autoscaler asked for, what one pays for); demand
is the replicas needed at that moment, ceil((running + ready tasks) / slots per pod), capped at
maxReplicas (no contender may go past it, so demand above it would only add the same miss to all).
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

EPSILON = 1.0


@dataclass(frozen=True)
class TaskTimes:
    """One task execution in seconds on the run's clock (end None: not finished)."""

    scheduled: float
    start: float | None
    end: float | None


def value_at(times: Sequence[float], values: Sequence[float], t: float, before: float = 0.0) -> float:
    """The step series' value at t: the last sample at or before t (`before` if none)."""
    i = bisect.bisect_right(times, t) - 1
    return values[i] if i >= 0 else before


def resample(times: Sequence[float], values: Sequence[float], grid: Sequence[float]) -> list[float]:
    return [value_at(times, values, t) for t in grid]


def demand(tasks: Iterable[TaskTimes], grid: Sequence[float], slots: int, cap: int | None = None) -> list[int]:
    """Replicas needed at each grid time: tasks ready or running (scheduled <= t < end) over the slots."""
    events: list[tuple[float, int]] = []
    for task in tasks:
        events.append((task.scheduled, 1))
        if task.end is not None:
            events.append((task.end, -1))
    events.sort()
    out, open_tasks, i = [], 0, 0
    for t in grid:
        while i < len(events) and events[i][0] <= t:
            open_tasks += events[i][1]
            i += 1
        need = math.ceil(open_tasks / slots)
        out.append(min(need, cap) if cap is not None else need)
    return out


def changes(values: Sequence[float]) -> int:
    return sum(1 for a, b in itertools.pairwise(values) if a != b)


def elasticity(
    times: Sequence[float], supply: Sequence[float], demanded: Sequence[float], end: float, eps: float = EPSILON
) -> dict[str, float]:
    """θU, θO, τU, τO (percent) and jitter (per hour) of step series sampled at `times` up to `end`."""
    if not (len(times) == len(supply) == len(demanded)) or not times:
        raise ValueError("times, supply and demand must be non-empty and of one length")
    total = end - times[0]
    if total <= 0:
        raise ValueError("end must be after the first sample")
    theta_u = theta_o = tau_u = tau_o = 0.0
    for i, (s, d) in enumerate(zip(supply, demanded, strict=True)):
        dt = (times[i + 1] if i + 1 < len(times) else end) - times[i]
        theta_u += max(d - s, 0) / max(d, eps) * dt
        theta_o += max(s - d, 0) / max(d, eps) * dt
        tau_u += dt if d > s else 0.0
        tau_o += dt if s > d else 0.0
    return {
        "theta_u": 100 * theta_u / total,
        "theta_o": 100 * theta_o / total,
        "tau_u": 100 * tau_u / total,
        "tau_o": 100 * tau_o / total,
        "jitter_per_h": (changes(supply) - changes(demanded)) / (total / 3600),
        "supply_changes": changes(supply),
        "demand_changes": changes(demanded),
    }


def integral(times: Sequence[float], values: Sequence[float], end: float) -> float:
    """The area under a step series up to `end` (replica-seconds from spec.replicas samples)."""
    area = 0.0
    for i, v in enumerate(values):
        nxt = times[i + 1] if i + 1 < len(times) else end
        area += v * max(0.0, min(nxt, end) - times[i])
    return area


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between the closest ranks (q in 0..1); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def activations(scheduled: Iterable[float], times: Sequence[float], running: Sequence[float]) -> list[float]:
    """Seconds from each task queued while no pod ran to the next sample with a Running pod.

    One episode per stretch at zero: the first task queued at zero opens it, later tasks join it.
    An episode that never sees a pod is left out (the run ended first)."""
    out: list[float] = []
    closes_at = -math.inf  # the end of the episode in progress
    for t in sorted(scheduled):
        if t < closes_at or value_at(times, running, t) > 0:
            continue
        i = bisect.bisect_right(times, t)
        while i < len(times) and running[i] <= 0:
            i += 1
        if i == len(times):
            break
        closes_at = times[i]
        out.append(round(closes_at - t, 3))
    return out


# -- per-workflow task records (GET /api/workflow/{id}?includeTasks=true) ------------------------------


def task_summary(workflows: Sequence[dict[str, Any]], t0_ms: float) -> dict[str, Any]:
    """Queue wait, re-runs and timeouts from the server's workflow records (times on the run's clock).

    A workflow re-ran its task when a task has retryCount > 0 or pollCount > 1, or the workflow holds more
    than one execution of it, or its executions name more than one worker."""
    waits: list[float] = []
    times: list[TaskTimes] = []
    rerun = timed_out = completed = 0
    for wf in workflows:
        tasks = wf.get("tasks") or []
        workers = {t.get("workerId") for t in tasks if t.get("workerId")}
        if (
            len(tasks) > 1
            or len(workers) > 1
            or any((t.get("retryCount") or 0) > 0 or (t.get("pollCount") or 0) > 1 for t in tasks)
        ):
            rerun += 1
        if wf.get("status") == "TIMED_OUT" or any(t.get("status") == "TIMED_OUT" for t in tasks):
            timed_out += 1
        completed += wf.get("status") == "COMPLETED"
        for t in tasks:
            sched, start, end = t.get("scheduledTime") or 0, t.get("startTime") or 0, t.get("endTime") or 0
            if not sched:
                continue
            if start:
                waits.append((start - sched) / 1000)
            times.append(
                TaskTimes(
                    (sched - t0_ms) / 1000,
                    (start - t0_ms) / 1000 if start else None,
                    (end - t0_ms) / 1000 if end else None,
                )
            )
    return {
        "workflows": len(workflows),
        "completed": completed,
        "rerun": rerun,
        "timed_out": timed_out,
        "wait_p50_s": percentile(waits, 0.5),
        "wait_p99_s": percentile(waits, 0.99),
        "wait_max_s": max(waits, default=None),
        "task_times": times,
    }
