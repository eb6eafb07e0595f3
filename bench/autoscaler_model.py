"""A model of a worker fleet under the replayed traces, to choose the autoscaler's defaults before the real
head-to-head (bench/autoscalers.py) measures them. A model, not a measurement: its numbers only rank
settings against each other.

    ~/.cache/conductor-worker-operator/venv/bin/python bench/autoscaler_model.py [--traces step,daily,azure]

What it models, in steps of 0.1 s: pods of `--slots` slots that start `--pod-start` seconds after they are
asked for; one FIFO queue; the busiest pods take new tasks first (as the runtime's fast busy-mode polls do
on the stack); a pod asked to leave takes nothing more and goes when its tasks end (the runtime's drain),
the idlest leave first (pod-deletion-cost). The operator is the real pure decision
(conductor_operator.autoscaler.decide) every 5 s with the queue and the busy slots. "KEDA" is the same
decision fed the queue size alone (an AverageValue target of 10 per replica, the HPA's default behaviour,
scale to zero after 300 s), every 30 s (its default polling) or 5 s (tuned); the real HPA also waits for
its own 15 s sync, so the model flatters KEDA's reaction time.

Prints, per trace and setting: replica-seconds, the ratio to each KEDA variant, the p99 queue wait and the
number of scale events.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field

import traces

from conductor_operator.autoscaler import DEFAULT_SCALE_UP, Config, History, Observation, Policy, Rules, decide


@dataclass
class Pod:
    ready_at: float
    ends: list[float] = field(default_factory=list)
    leaving: bool = False


@dataclass(frozen=True)
class Outcome:
    replica_seconds: float
    wait_p99: float
    events: int


def simulate(
    trace: traces.Trace,
    cfg: Config,
    interval: float,
    with_slots: bool,
    slots: int,
    pod_start: float,
    dt: float = 0.1,
    averaged: bool = False,
) -> Outcome:
    """Replay the trace against one autoscaler setting (with_slots False: the queue size alone, as KEDA)."""
    arrivals, i = trace.arrivals, 0
    queue: list[tuple[float, float]] = []
    pods: list[Pod] = []
    desired, history, events, replica_seconds = 0, None, 0, 0.0
    waits: list[float] = []
    t, next_eval, end = 0.0, 0.0, trace.length_s + 600
    busy_integral, since = 0.0, 0.0  # slot-seconds busy since the last evaluation (averaged busy slots)
    while t < end:
        while i < len(arrivals) and arrivals[i][0] <= t:
            queue.append(arrivals[i])
            i += 1
        for pod in pods:
            pod.ends = [e for e in pod.ends if e > t]
        pods = [p for p in pods if not (p.leaving and not p.ends)]
        for pod in sorted(pods, key=lambda p: -len(p.ends)):
            while not pod.leaving and pod.ready_at <= t and queue and len(pod.ends) < slots:
                arrived, duration = queue.pop(0)
                waits.append(t - arrived)
                pod.ends.append(t + duration)
        staying = [p for p in pods if not p.leaving]
        busy_integral += sum(len(p.ends) for p in staying if p.ready_at <= t) * dt
        if t >= next_eval:
            next_eval += interval
            up = [p for p in staying if p.ready_at <= t]
            obs = Observation(
                now=t,
                current_replicas=desired,
                queue_depth={"q": len(queue)},
                busy_slots=(busy_integral / max(t - since, dt) if averaged else sum(len(p.ends) for p in up))
                if with_slots
                else 0,
                slot_capacity=slots * len(up) if with_slots else 0,
                busy_pods=sum(1 for p in up if p.ends) if with_slots else 0,
                scraped_pods=len(up) if with_slots else 0,
            )
            busy_integral, since = 0.0, t
            decision = decide(cfg, obs, history)
            history: History | None = decision.history
            events += decision.desired != desired
            desired = decision.desired
            while len(staying) < desired:
                staying.append(Pod(t + pod_start))
                pods.append(staying[-1])
            for pod in sorted(staying, key=lambda p: len(p.ends))[: max(0, len(staying) - desired)]:
                pod.leaving = True
        replica_seconds += desired * dt
        t += dt
    waits.sort()
    return Outcome(replica_seconds, waits[int(0.99 * (len(waits) - 1))] if waits else 0.0, events)


def oracle(trace: traces.Trace, slots: int, max_replicas: int, dt: float = 0.1) -> float:
    """Replica-seconds of a clairvoyant autoscaler with instant pods: at every moment exactly
    ceil(tasks running / slots) replicas (capped at max_replicas), each task starting the moment it arrives.
    No real autoscaler can do with less at zero queue wait; with a queue wait allowed it can, down to the
    work itself (the sum of the durations over the slots), which needs every slot busy all the time."""
    changes = sorted([(a, 1) for a, _ in trace.arrivals] + [(a + d, -1) for a, d in trace.arrivals])
    total, running, i, t = 0.0, 0, 0, 0.0
    end = max((a + d for a, d in trace.arrivals), default=0.0)
    while t < end:
        while i < len(changes) and changes[i][0] <= t:
            running += changes[i][1]
            i += 1
        total += min(max_replicas, math.ceil(running / slots)) * dt
        t += dt
    return total


def config(max_replicas: int, window: int, cooldown: int = 300, utilization: float = 0.8) -> Config:
    return Config(
        min_replicas=0,
        max_replicas=max_replicas,
        cooldown_seconds=cooldown,
        target_utilization=utilization,
        scale_up=DEFAULT_SCALE_UP,
        scale_down=Rules(window, "Max", (Policy("Percent", 100, 15),)),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--traces", default="step,daily,azure,bursts")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--max-replicas", type=int, default=6)
    parser.add_argument("--pod-start", type=float, default=2.0, help="seconds from asked for to polling")
    parser.add_argument("--windows", default="300,120,60,30", help="scale-down windows to try (s)")
    parser.add_argument("--utilizations", default="0.8,1.0", help="targetUtilization values to try")
    parser.add_argument("--cooldowns", default="60", help="cooldownSeconds (idle time before zero) to try")
    parser.add_argument(
        "--busy", default="averaged", help="busy slots as the operator reads them: point (a sample), averaged, or both"
    )
    args = parser.parse_args(argv)
    common = {"slots": args.slots, "pod_start": args.pod_start}
    for name in args.traces.split(","):
        trace = traces.generate(name, seed=args.seed)
        keda = {
            "keda-default": simulate(trace, config(args.max_replicas, 300), 30, False, **common),
            "keda-tuned": simulate(trace, config(args.max_replicas, 300), 5, False, **common),
        }
        floor = sum(d for _, d in trace.arrivals) / args.slots
        best = oracle(trace, args.slots, args.max_replicas)
        print(
            f"{name}: {trace.tasks} tasks, work {floor:.0f} pod-seconds at full slots, "
            f"clairvoyant zero-wait {best:.0f} replica-s"
        )
        for label, out in keda.items():
            print(
                f"  {label:<34} {out.replica_seconds:6.0f} replica-s  p99 {out.wait_p99:5.1f} s  {out.events:3d} events"
            )
        busy_modes = ["point", "averaged"] if args.busy == "both" else [args.busy]
        settings = [
            (util, window, cooldown, mode)
            for util in (float(u) for u in args.utilizations.split(","))
            for window in (int(w) for w in args.windows.split(","))
            for cooldown in (int(c) for c in args.cooldowns.split(","))
            for mode in busy_modes
        ]
        for util, window, cooldown, mode in settings:
            cfg = config(args.max_replicas, window, cooldown=cooldown, utilization=util)
            out = simulate(trace, cfg, 5, True, averaged=mode == "averaged", **common)
            ratios = "  ".join(f"{out.replica_seconds / k.replica_seconds:.2f}x {n}" for n, k in keda.items())
            label = f"operator util {util:.0%} w {window} cd {cooldown}" + (" avg" if mode == "averaged" else "")
            print(
                f"  {label:<34} {out.replica_seconds:6.0f} replica-s  p99 {out.wait_p99:5.1f} s  {out.events:3d} events"
                f"  ({ratios})"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
