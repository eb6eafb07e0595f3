"""Replayable arrival traces for the autoscaler head-to-head (bench/autoscalers.py). Pure: no I/O.

A trace is a sorted list of (arrival_time_s, task_duration_s). Every contender is given the same list, so
the only difference between their runs is the autoscaler. It is drawn deterministically from a seed
(`random.Random` seeded with "<trace>:<seed>", stable across Python versions and machines).

Durations (every trace): log-normal with median 1 s and sigma 0.8 (mu = ln 1 s = 0, mean e^0.32 = 1.38 s,
p99 6.4 s), clipped to 50 ms..30 s. Short, right-skewed task times like these are what Shahrad et al.
report for functions (most run for about a second or less, with a long tail).

Arrivals: a non-homogeneous Poisson process with rate `size * r(t / time_scale)` per second, drawn by
thinning (candidates at the peak rate, each kept with probability rate/peak). `r` is the trace's shape over
its full length of 1,200 s; `time_scale` < 1 compresses the time axis (0.05: the same shape over 60 s)
while keeping every rate, so a shorter run has proportionally fewer tasks but the same load at each phase;
`size` multiplies every rate. Rates are sized for the benchmark's default fleet: 4 slots per pod, at most 6
pods (24 slots), which the peaks nearly fill at size 1.

The traces (`r` per second, u = seconds into the full-length shape):

- bursts: the demo's shape (teststack/demo.py starts 300 workflows at once, then nothing): three bursts of
  300 workflows, each within 5 s (60/s), at u = 30, 420 and 810 s, quiet in between and after. The quiet
  gaps (385 s) outlast the default 300 s cooldown, so scale-to-zero and re-activation both happen.
- step: a steady stream of 2/s, a step up to 8/s at u = 400 s and back down to 2/s at u = 800 s.
- daily: a day compressed into the 1,200 s: r(u) = 0.3 + 7.7 * (1 + cos(2 pi (u/1200 - 0.58))) / 2, a
  raised cosine with its trough at "02:00" (0.3/s) and its peak at "14:00" (8/s).
- azure: shaped like one function's row of the Azure Functions trace (Shahrad et al., "Serverless in the
  Wild", USENIX ATC 2020: the data set gives invocations per function per minute; most functions are idle
  most of the time and invocation rates span orders of magnitude). Per minute of the shape: an on/off
  Markov chain gives idle minutes (P(idle -> idle) = 0.6, P(active -> active) = 0.7, starting idle), and an
  active minute's count is Pareto (alpha 1.3, at least 15 per minute, at most 840): heavy-tailed per-minute
  counts separated by idle gaps. Within a minute arrivals are Poisson (the data set has no finer
  resolution).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

LENGTH_S = 1200.0  # every trace's full length, before --time-scale
DURATION_MEDIAN_S = 1.0
DURATION_SIGMA = 0.8
DURATION_MIN_S = 0.05
DURATION_MAX_S = 30.0

BURST_STARTS_S = (30.0, 420.0, 810.0)
BURST_SIZE = 300
BURST_LEN_S = 5.0
STEP_LOW, STEP_HIGH, STEP_UP_S, STEP_DOWN_S = 2.0, 8.0, 400.0, 800.0
DAY_NIGHT, DAY_PEAK, DAY_PEAK_AT = 0.3, 8.0, 0.58
AZURE_STAY_IDLE, AZURE_STAY_ACTIVE = 0.6, 0.7
AZURE_ALPHA, AZURE_MIN_PER_MIN, AZURE_MAX_PER_MIN = 1.3, 15.0, 840.0

NAMES = ("bursts", "step", "daily", "azure")

Arrival = tuple[float, float]  # (arrival time s, task duration s)


@dataclass(frozen=True)
class Shape:
    """A trace's rate over the full-length shape: r(u) per second, and an upper bound for thinning."""

    rate: Callable[[float], float]
    peak: float


@dataclass(frozen=True)
class Trace:
    name: str
    seed: int
    time_scale: float
    size: float
    length_s: float  # the replay's length: LENGTH_S * time_scale
    arrivals: list[Arrival]

    @property
    def tasks(self) -> int:
        return len(self.arrivals)


def bursts_shape() -> Shape:
    per_s = BURST_SIZE / BURST_LEN_S
    return Shape(lambda u: per_s if any(s <= u < s + BURST_LEN_S for s in BURST_STARTS_S) else 0.0, per_s)


def step_shape() -> Shape:
    return Shape(lambda u: STEP_HIGH if STEP_UP_S <= u < STEP_DOWN_S else STEP_LOW, STEP_HIGH)


def daily_shape() -> Shape:
    def rate(u: float) -> float:
        return DAY_NIGHT + (DAY_PEAK - DAY_NIGHT) * (1 + math.cos(2 * math.pi * (u / LENGTH_S - DAY_PEAK_AT))) / 2

    return Shape(rate, DAY_PEAK)


def azure_minutes(rng: random.Random, minutes: int) -> list[float]:
    """Invocations per minute: idle minutes from an on/off chain, Pareto counts in the active ones."""
    counts, active = [], False
    for _ in range(minutes):
        stay = AZURE_STAY_ACTIVE if active else AZURE_STAY_IDLE
        active = active if rng.random() < stay else not active
        # Pareto by inversion: x_m / U^(1/alpha), U in (0, 1]
        count = AZURE_MIN_PER_MIN / (1.0 - rng.random()) ** (1 / AZURE_ALPHA) if active else 0.0
        counts.append(min(count, AZURE_MAX_PER_MIN))
    return counts


def azure_shape(rng: random.Random) -> Shape:
    per_min = azure_minutes(rng, math.ceil(LENGTH_S / 60))
    rates = [c / 60 for c in per_min]
    return Shape(lambda u: rates[min(int(u // 60), len(rates) - 1)], max([*rates, 1e-9]))


def shape(name: str, rng: random.Random) -> Shape:
    if name == "bursts":
        return bursts_shape()
    if name == "step":
        return step_shape()
    if name == "daily":
        return daily_shape()
    if name == "azure":
        return azure_shape(rng)
    raise ValueError(f"unknown trace {name!r} (known: {', '.join(NAMES)})")


def duration(rng: random.Random) -> float:
    """One task's duration in seconds: log-normal, clipped to 50 ms..30 s."""
    d = rng.lognormvariate(math.log(DURATION_MEDIAN_S), DURATION_SIGMA)
    return round(min(max(d, DURATION_MIN_S), DURATION_MAX_S), 3)


def generate(name: str, seed: int = 1, time_scale: float = 1.0, size: float = 1.0) -> Trace:
    """The trace `name`: every arrival and its task's duration, the same for the same arguments."""
    if not 0 < time_scale <= 1:
        raise ValueError("time_scale must be in (0, 1]: it shrinks a trace")
    if size <= 0:
        raise ValueError("size must be > 0")
    rng = random.Random(f"{name}:{seed}")
    sh = shape(name, rng)
    length = LENGTH_S * time_scale
    peak = sh.peak * size
    arrivals: list[Arrival] = []
    t = 0.0
    while True:
        t += rng.expovariate(peak)
        if t >= length:
            break
        keep = rng.random() * peak < size * sh.rate(t / time_scale)
        d = duration(rng)  # drawn for every candidate, so the durations do not depend on the thinning
        if keep:
            arrivals.append((round(t, 3), d))
    return Trace(name, seed, time_scale, size, length, arrivals)


def per_bin(trace: Trace, bin_s: float) -> list[int]:
    """Arrivals per bin of `bin_s` seconds over the trace's length (for plots and tests)."""
    counts = [0] * max(1, math.ceil(trace.length_s / bin_s))
    for t, _ in trace.arrivals:
        counts[min(int(t // bin_s), len(counts) - 1)] += 1
    return counts
