"""Pure autoscaling decision: observations + history -> desired replicas and the reason.

Why HPA semantics: users know them (and can move to an HPA/KEDA through the scale subresource without
relearning). The algorithm follows the HPA controller (pkg/controller/podautoscaler/horizontal.go):

1. every metric proposes replicas (queue depth per replica as an AverageValue target, slot utilization
   as a Utilization target); a proposal within `tolerance` of the current ratio keeps the current count;
   the highest proposal wins;
2. stabilization: the lowest recommendation of the scale-up window and the highest of the scale-down
   window bound the change (so noise does not flap the fleet);
3. rate policies (Pods / Percent per period, selectPolicy Max/Min/Disabled) limit the change, counted
   from the scale events inside each period;
4. min/max clamps.

Beyond HPA (KEDA-like): scale to zero when minReplicas is 0 and neither a backlog nor a busy slot was
seen for `cooldownSeconds`; activation from zero as soon as the backlog exceeds `activationQueueDepth`;
`fallbackReplicas` after `fallback.failureThreshold` failed queue-depth reads in a row, as a
recommendation that goes through the windows, the rate policies and the min/max clamps like any other (a
short Conductor outage must not empty a fleet). Task-definition limits cap the proposals (pods over the
limit would only poll). The backlog is what a new pod could start now: tasks waiting out a callback or a
retry delay are not backlog (readiness.py).

Busy pods: when the pods drain on SIGTERM (the runtime finishes what it holds before it exits), a busy pod
may be chosen to leave, so utilization alone decides, as in the HPA; the operator ranks pods by
pod-deletion-cost so the idle, then the least busy, leave first. Pods that do not drain (another SDK's
worker without the sidecar) keep the older protection: never fewer than the busy pods, within maxReplicas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Literal

DEFAULT_TOLERANCE = 0.1
PolicyType = Literal["Pods", "Percent"]
SelectPolicy = Literal["Max", "Min", "Disabled"]


@dataclass(frozen=True)
class Policy:
    type: PolicyType
    value: int
    period_seconds: int


@dataclass(frozen=True)
class Rules:
    stabilization_window_seconds: int
    select_policy: SelectPolicy
    policies: tuple[Policy, ...]


# Scale up as the HPA does by default: at once, +100% or +4 pods per 15 s, whichever is more. Scale down to
# the highest recommendation of the last 60 s (the HPA's default window is 300 s), any amount per 15 s. Why
# shorter: the HPA's window guards against removing pods that are busy or slow to come back; these workers
# finish what they hold before they leave, the metrics are exact counts (busy slots, ready tasks), and a fleet
# at zero is woken within a second, so holding a peak for 5 minutes only costs replicas (bench/README.md,
# "Autoscalers head to head"). 60 s is also Knative's stable window. HPA_SCALE_DOWN is the HPA's own default.
DEFAULT_SCALE_UP = Rules(0, "Max", (Policy("Pods", 4, 15), Policy("Percent", 100, 15)))
DEFAULT_SCALE_DOWN = Rules(60, "Max", (Policy("Percent", 100, 15),))
HPA_SCALE_DOWN = Rules(300, "Max", (Policy("Percent", 100, 15),))


@dataclass(frozen=True)
class Config:
    min_replicas: int = 1
    max_replicas: int = 10
    target_queue_depth_per_replica: float = 10
    target_utilization: float = 0.8  # fraction of slots busy
    activation_queue_depth: int = 0
    cooldown_seconds: float = 60  # KEDA's is 300 s; activation here takes about a second, not a polling interval
    fallback_replicas: int | None = None
    fallback_failure_threshold: int = 3  # consecutive failed queue-depth reads before the fallback
    tolerance: float = DEFAULT_TOLERANCE
    scale_up: Rules = DEFAULT_SCALE_UP
    scale_down: Rules = DEFAULT_SCALE_DOWN


@dataclass(frozen=True)
class Observation:
    """One evaluation's inputs. queue_depth None means Conductor could not be asked."""

    now: float
    current_replicas: int
    queue_depth: dict[str, int] | None
    busy_slots: float = 0  # mean busy slots since the last evaluation where the pods' counters tell it
    slot_capacity: int = 0
    busy_pods: int = 0  # pods with at least one busy slot
    scraped_pods: int = 0  # pods whose /metrics answered
    scrape_errors: int = 0  # pods with an address whose /metrics did not answer
    # queue key -> the most pods that can get work of it (task definition limits; absent: no limit)
    task_caps: dict[str, int] = field(default_factory=dict)
    waiting: int = 0  # queued tasks no pod can start yet (callback, retry delay): reported, not backlog
    drains: bool = True  # the pods finish their tasks on SIGTERM, so a busy pod may leave


@dataclass(frozen=True)
class History:
    """What the decision must remember between evaluations (kept by the caller, per ConductorWorker)."""

    recommendations: tuple[tuple[float, int], ...] = ()  # (time, raw recommendation)
    scale_events: tuple[tuple[float, int], ...] = ()  # (time, replica change) for rate policies
    last_active: float | None = None  # last time a backlog or a busy slot was seen
    last_scale_time: float | None = None
    failures: int = 0  # consecutive evaluations without a queue depth


@dataclass(frozen=True)
class Decision:
    desired: int
    reason: str
    history: History
    proposals: dict[str, int] = field(default_factory=dict)
    scaled: bool = False  # desired differs from the current replicas


def _rules(raw: dict[str, Any] | None, default: Rules) -> Rules:
    if not raw:
        return default
    policies = (
        tuple(Policy(p["type"], int(p["value"]), int(p["periodSeconds"])) for p in raw.get("policies") or [])
        or default.policies
    )
    window = raw.get("stabilizationWindowSeconds")
    return Rules(
        default.stabilization_window_seconds if window is None else int(window),
        raw.get("selectPolicy") or "Max",
        policies,
    )


def config_from_spec(autoscaling: dict[str, Any]) -> Config:
    """spec.autoscaling (already defaulted by the API server, but robust without it) -> Config."""
    a = autoscaling or {}
    fallback = a.get("fallbackReplicas")
    return Config(
        min_replicas=int(a.get("minReplicas", 1)),
        max_replicas=int(a.get("maxReplicas", 10)),
        target_queue_depth_per_replica=float(a.get("targetQueueDepthPerReplica") or 10),
        target_utilization=float(a.get("targetUtilization") or 80) / 100.0,
        activation_queue_depth=int(a.get("activationQueueDepth") or 0),
        cooldown_seconds=float(a.get("cooldownSeconds", 60)),
        fallback_replicas=None if fallback is None else int(fallback),
        fallback_failure_threshold=max(1, int((a.get("fallback") or {}).get("failureThreshold") or 3)),
        tolerance=float(a.get("tolerance") or DEFAULT_TOLERANCE),
        scale_up=_rules(a.get("scaleUp"), DEFAULT_SCALE_UP),
        scale_down=_rules(a.get("scaleDown"), DEFAULT_SCALE_DOWN),
    )


def _queue_proposal(cfg: Config, backlog: int, current: int) -> int:
    """AverageValue target: backlog / replicas should be the target; within tolerance keep current."""
    if current > 0:
        ratio = (backlog / current) / cfg.target_queue_depth_per_replica
        if abs(ratio - 1.0) <= cfg.tolerance:
            return current
    return math.ceil(backlog / cfg.target_queue_depth_per_replica)


def _workable(cfg: Config, obs: Observation) -> tuple[int, int | None]:
    """(backlog the workers can take, fleet cap). A capped queue counts at most what its capped pods
    can take at the target depth; tasks over the limit stay queued whatever the replica count. The whole
    fleet is capped only when every queue is (a pod serves all task types)."""
    depth = obs.queue_depth or {}
    caps = obs.task_caps
    workable = 0
    for queue, waiting in depth.items():
        cap = caps.get(queue)
        workable += waiting if cap is None else min(waiting, math.ceil(cap * cfg.target_queue_depth_per_replica))
    fleet_cap = max(caps[q] for q in depth) if depth and all(q in caps for q in depth) else None
    return workable, fleet_cap


def _utilization_proposal(cfg: Config, obs: Observation) -> int | None:
    """Utilization target over the pods that reported; None when no pod reported capacity.

    The HPA's missing-metrics rule: pods without metrics (starting, or not answering) count as at the
    target when the scraped pods say "down" and as idle when they say "up"; if that turns the direction
    around, or lands within the tolerance, the current count stays. So a few scraped pods never propose
    fewer replicas while they are over the target (nor more while under it).
    """
    if obs.slot_capacity <= 0 or obs.scraped_pods <= 0:
        return None
    ratio = (obs.busy_slots / obs.slot_capacity) / cfg.target_utilization
    if abs(ratio - 1.0) <= cfg.tolerance:
        return obs.current_replicas
    missing = max(0, obs.current_replicas - obs.scraped_pods)
    if missing == 0:
        return math.ceil(ratio * obs.scraped_pods)
    pods = obs.scraped_pods + missing
    new_ratio = (ratio * obs.scraped_pods + (missing if ratio < 1.0 else 0)) / pods
    if abs(new_ratio - 1.0) <= cfg.tolerance or (ratio < 1.0) != (new_ratio < 1.0):
        return obs.current_replicas
    return math.ceil(new_ratio * pods)


def _stabilize(cfg: Config, recs: tuple[tuple[float, int], ...], raw: int, now: float, current: int) -> int:
    """HPA stabilizeRecommendationWithBehaviors: the lowest recommendation of the scale-up window and the
    highest of the scale-down window (each including this one) bound the change from the current count."""
    up_cutoff = now - cfg.scale_up.stabilization_window_seconds
    down_cutoff = now - cfg.scale_down.stabilization_window_seconds
    up = min((r for t, r in recs if t > up_cutoff), default=raw)
    down = max((r for t, r in recs if t > down_cutoff), default=raw)
    up, down = min(up, raw), max(down, raw)
    result = current
    if result < up:
        result = up
    if result > down:
        result = down
    return result


def _rate_limit(rules: Rules, events: tuple[tuple[float, int], ...], now: float, current: int, up: bool) -> int:
    """HPA calculateScaleUpLimitWithScalingRules / calculateScaleDownLimitWithBehaviors."""
    if rules.select_policy == "Disabled":
        return current
    limits: list[int] = []
    for policy in rules.policies:
        recent = [d for t, d in events if t > now - policy.period_seconds]
        if up:
            start = current - sum(d for d in recent if d > 0)
            if policy.type == "Pods":
                limits.append(start + policy.value)
            else:
                limits.append(math.ceil(start * (1 + policy.value / 100.0)))
        else:
            start = current - sum(d for d in recent if d < 0)  # d < 0: adds the removed pods back
            if policy.type == "Pods":
                limits.append(start - policy.value)
            else:
                limits.append(math.floor(start * (1 - policy.value / 100.0)))
    if not limits:
        return current
    # Max = the policy allowing the biggest change; Min = the smallest. A limit never points the other
    # way: changes made in the period by another path (activation, fallback, scale to zero) can push
    # `start` past the current count, and a scale-up must not turn into a scale-down (nor the reverse).
    if up:
        return max(current, max(limits) if rules.select_policy == "Max" else min(limits))
    return min(current, min(limits) if rules.select_policy == "Max" else max(limits))


def _prune(history: History, cfg: Config, now: float) -> History:
    keep_recs = max(cfg.scale_up.stabilization_window_seconds, cfg.scale_down.stabilization_window_seconds)
    keep_events = max([p.period_seconds for p in cfg.scale_up.policies + cfg.scale_down.policies], default=0)
    return replace(
        history,
        recommendations=tuple((t, r) for t, r in history.recommendations if t >= now - keep_recs),
        scale_events=tuple((t, d) for t, d in history.scale_events if t > now - keep_events),
    )


def _bounded(cfg: Config, desired: int) -> tuple[int, str]:
    """The min/max clamps (1 while cooling down before zero: zero is decided apart)."""
    floor = max(cfg.min_replicas, 1)
    if desired < floor:
        return floor, f"; clamped to min {floor}"
    if desired > cfg.max_replicas:
        return cfg.max_replicas, f"; clamped to max {cfg.max_replicas}"
    return desired, ""


def _finish(
    cfg: Config, desired: int, reason: str, obs: Observation, history: History, proposals: dict[str, int]
) -> Decision:
    """Busy protection for pods that do not drain, then record the scale event (rate policies count it)."""
    floor = min(obs.busy_pods, obs.current_replicas, cfg.max_replicas)
    if not obs.drains and desired < floor:
        desired = floor
        reason += f"; kept {desired} for busy workers (they do not drain on SIGTERM)"
    if desired != obs.current_replicas:
        history = replace(
            history,
            scale_events=(*history.scale_events, (obs.now, desired - obs.current_replicas)),
            last_scale_time=obs.now,
        )
    return Decision(desired, reason, history, proposals, desired != obs.current_replicas)


def _settle(
    cfg: Config, obs: Observation, history: History, raw: int, reason: str, proposals: dict[str, int]
) -> Decision:
    """A raw recommendation through the HPA's stabilization windows, rate policies and min/max clamps."""
    current = obs.current_replicas
    stabilized = _stabilize(cfg, history.recommendations, raw, obs.now, current)
    history = replace(history, recommendations=(*history.recommendations, (obs.now, raw)))
    desired = stabilized
    if desired > current:
        limit = _rate_limit(cfg.scale_up, history.scale_events, obs.now, current, up=True)
        if desired > limit:
            desired, reason = limit, reason + f"; scale-up rate limited to {limit}"
    elif desired < current:
        limit = _rate_limit(cfg.scale_down, history.scale_events, obs.now, current, up=False)
        if desired < limit:
            desired, reason = limit, reason + f"; scale-down rate limited to {limit}"
    if stabilized != raw:
        reason += f"; stabilized to {stabilized}"
    desired, clamp = _bounded(cfg, desired)
    return _finish(cfg, desired, reason + clamp, obs, history, proposals)


def decide(cfg: Config, obs: Observation, history: History | None = None) -> Decision:
    """Desired replicas for one evaluation; the returned history feeds the next evaluation (None: the
    first evaluation, seeded from the current count)."""
    current = obs.current_replicas
    if history is None:
        # First evaluation for this object (new, or the operator restarted or failed over): as the HPA
        # does, the current count is the first recommendation, so the scale-down window still holds.
        history = History(recommendations=((obs.now, current),))
    history = _prune(history, cfg, obs.now)
    if obs.queue_depth is None:
        # KEDA-like: one failed read is often a blip; fall back only after `failureThreshold` in a row.
        # The fallback is a recommendation like any other: leaving the current count for it goes through
        # the windows, the rate policies and the min/max clamps (a 15 s outage does not empty a fleet).
        failures = history.failures + 1
        history = replace(history, failures=failures)
        unreachable = f"Conductor unreachable ({failures} failed read{'s' if failures > 1 else ''})"
        if cfg.fallback_replicas is None or failures < cfg.fallback_failure_threshold:
            until = "" if cfg.fallback_replicas is None else f" until {cfg.fallback_failure_threshold} failures"
            if current == 0 and cfg.min_replicas == 0:
                return _finish(cfg, 0, f"{unreachable}: keeping 0 replicas{until}", obs, history, {})
            desired, clamp = _bounded(cfg, current)
            return _finish(cfg, desired, f"{unreachable}: keeping current replicas{until}{clamp}", obs, history, {})
        fallback = cfg.fallback_replicas
        if current == 0 and fallback > 0:  # activation by fallback: nothing to stabilize at zero
            desired = min(max(fallback, cfg.min_replicas, 1), cfg.max_replicas)
            history = replace(history, recommendations=((obs.now, desired),))
            return _finish(cfg, desired, f"{unreachable}: fallback to {fallback}", obs, history, {"fallback": fallback})
        if current == 0 and cfg.min_replicas == 0:
            return _finish(cfg, 0, f"{unreachable}: fallback to 0", obs, history, {"fallback": 0})
        return _settle(
            cfg, obs, history, fallback, f"{unreachable}: fallback proposes {fallback}", {"fallback": fallback}
        )
    if history.failures:
        history = replace(history, failures=0)

    backlog = sum(obs.queue_depth.values())
    active = backlog > 0 or obs.busy_slots > 0 or obs.busy_pods > 0
    if active or history.last_active is None:
        history = replace(history, last_active=obs.now)

    workable, fleet_cap = _workable(cfg, obs)
    waiting = f", {obs.waiting} waiting" if obs.waiting else ""
    if current == 0:
        if backlog > cfg.activation_queue_depth:
            # Activation: skip the windows (nothing to stabilize at zero), honour the upper clamp.
            proposal = _queue_proposal(cfg, workable, 0)
            wanted = max(1, cfg.min_replicas, proposal if fleet_cap is None else min(proposal, fleet_cap))
            desired = min(wanted, cfg.max_replicas)
            history = replace(history, recommendations=((obs.now, desired),))
            reason = f"activated: backlog {backlog}{waiting} > activation threshold {cfg.activation_queue_depth}"
            return _finish(cfg, desired, reason, obs, history, {"queue": wanted})
        if cfg.min_replicas == 0:
            return _finish(cfg, 0, f"idle at zero: backlog {backlog}{waiting}", obs, history, {})
        # minReplicas > 0 but the fleet is at 0 (e.g. autoscaling just enabled): the min clamp applies.

    idle_for = obs.now - (history.last_active if history.last_active is not None else obs.now)
    if (
        cfg.min_replicas == 0
        and not active
        and obs.scrape_errors == 0
        and idle_for >= cfg.cooldown_seconds
        and current > 0
    ):
        history = replace(history, recommendations=((obs.now, 0),))
        reason = f"scaled to zero: no backlog and no busy slot for {idle_for:.0f}s{waiting}"
        return _finish(cfg, 0, reason, obs, history, {})

    proposals = {"queue": _queue_proposal(cfg, workable, current)}
    utilization = _utilization_proposal(cfg, obs)
    if utilization is not None:
        proposals["utilization"] = utilization
    metric, raw = max(proposals.items(), key=lambda kv: kv[1])
    capped = ""
    if fleet_cap is not None and raw > fleet_cap:
        raw, capped = fleet_cap, f"; capped to {fleet_cap} by the task definitions' limits"
    limited = f", {workable} workable under the task definitions' limits" if workable < backlog else ""
    busy = f"busy {round(obs.busy_slots, 1):g}/{obs.slot_capacity}"
    reason = f"{metric} proposes {raw} (backlog {backlog}{limited}{waiting}, {busy}){capped}"
    return _settle(cfg, obs, history, raw, reason, proposals)
