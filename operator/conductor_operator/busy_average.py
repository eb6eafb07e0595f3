"""Mean busy slots per pod between two scrapes, from the pods' slot-seconds counter (pure).

Why: the busy-slot gauge is a point sample. Under Poisson arrivals it swings by a slot or two from one
scrape to the next, so a utilization target fed samples proposes a pod too many at each peak and the
scale-down window keeps it (bench/README.md, "Autoscalers head to head"). The counter's increase over the
time between two scrapes is the mean number of busy slots in that interval, however short the tasks.

A pod is averaged when its previous sample is at least MIN_SPAN_SECONDS old and its counter did not go
back (a restarted container starts it again at zero); otherwise its point sample stands for this
evaluation. Pods that left, or whose scrape failed, lose their sample.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from conductor_operator.observe import ScrapeResult

MIN_SPAN_SECONDS = 1.0  # closer reads (a forced evaluation right after one) say too little: keep the older


@dataclass(frozen=True)
class Sample:
    at: float  # the evaluation's clock
    busy_seconds: float


def averaged(scrape: ScrapeResult, samples: Mapping[str, Sample], now: float) -> tuple[ScrapeResult, dict[str, Sample]]:
    """The scrape with each pod's `mean_busy` set where its counter allows, and the samples to keep."""
    pods = {}
    kept: dict[str, Sample] = {}
    for name, pod in scrape.pods.items():
        if pod.busy_seconds is None:
            pods[name] = pod
            continue
        previous = samples.get(name)
        if previous is not None and now - previous.at < MIN_SPAN_SECONDS:
            pods[name], kept[name] = pod, previous
            continue
        mean = None
        if previous is not None and pod.busy_seconds >= previous.busy_seconds:
            mean = (pod.busy_seconds - previous.busy_seconds) / (now - previous.at)
            if pod.slot_capacity:
                mean = min(mean, float(pod.slot_capacity))
        pods[name] = replace(pod, mean_busy=mean)
        kept[name] = Sample(now, pod.busy_seconds)
    return ScrapeResult(pods, dict(scrape.errors)), kept
