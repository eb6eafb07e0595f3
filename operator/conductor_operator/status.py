"""Pure status logic: spec problems (Degraded), conditions with stable transition times, the whole status
a ConductorWorker gets (assemble_status) and the Events a change of problems deserves.

Why here and not in the handlers: what the user reads in `kubectl get/describe cw` is a contract; keeping
it pure lets the unit tests pin it down.
"""

from __future__ import annotations

import calendar
import json
import time
from dataclasses import dataclass
from typing import Any

from conductor_operator import builders
from conductor_operator.sdk_env import secret_keys
from worker_runtime.errors import ConductorError


def public_reason(exc: Exception) -> str:
    """What a failure may say in a status condition or an Event: never a reply body. Whoever may read
    the ConductorWorker sees it, and `serverUrl` may point at any service the operator can reach."""
    return exc.summary if isinstance(exc, ConductorError) else str(exc)


SERVICE_MONITOR_CRD = "servicemonitors.monitoring.coreos.com"


@dataclass(frozen=True)
class Problem:
    reason: str
    message: str


MetricsVerdict = tuple[bool | None, str, str]  # MetricsAvailable: (status, reason, message)


@dataclass(frozen=True)
class Evaluation:
    """What one autoscaler evaluation saw and decided, as the status shows it.

    depth: the server's queue sizes per queue key (None: Conductor could not be asked, error says why);
    busy/capacity: the scraped slots; metrics: the MetricsAvailable verdict (None: no pod scraped yet)."""

    depth: dict[str, int] | None
    ready: int | None  # of the queued tasks, those a pod could start now (the autoscaler's backlog)
    error: str
    busy: int
    capacity: int
    reason: str
    scaled: bool
    metrics: MetricsVerdict | None


def spec_problems(
    spec: dict[str, Any],
    secret_data: dict[str, str] | None,
    service_monitor_crd: bool,
) -> list[Problem]:
    """Schema-valid specs that still cannot work. secret_data: the referenced Secret's data (None if it
    does not exist; ignored without a reference)."""
    problems: list[Problem] = []
    ref = (spec.get("conductor") or {}).get("authSecretRef")
    if ref:
        if secret_data is None:
            problems.append(Problem("SecretNotFound", f"Secret {ref['name']!r} (conductor.authSecretRef) not found"))
        else:
            missing = [k for k in secret_keys(ref) if k not in secret_data]
            if missing:
                problems.append(
                    Problem("SecretKeyMissing", f"Secret {ref['name']!r} has no key(s) {', '.join(missing)}")
                )
    sm = ((spec.get("metrics") or {}).get("serviceMonitor") or {}).get("enabled")
    if sm and not service_monitor_crd:
        problems.append(
            Problem(
                "ServiceMonitorUnavailable",
                f"metrics.serviceMonitor.enabled but the CRD {SERVICE_MONITOR_CRD} is not installed",
            )
        )
    return problems


def child_failure(verb: str, kind: str, name: str, exc: Any) -> Problem:
    """A refused write of a child as a Problem carrying the API server's reason and message (from the
    Status body of an ApiException), e.g. `ServiceApplyFailed: apply Service orders: Invalid: ...`."""
    api_reason, message = getattr(exc, "reason", None) or "Error", ""
    try:
        body = json.loads(getattr(exc, "body", None) or "{}")
        api_reason = body.get("reason") or api_reason
        message = body.get("message") or ""
    except (TypeError, ValueError):
        message = str(getattr(exc, "body", "") or "")
    status = getattr(exc, "status", None)
    text = (
        f"{verb} {kind} {name}: {api_reason}"
        + (f" (HTTP {status})" if status else "")
        + (f": {message}" if message else "")
    )
    return Problem(f"{kind}{verb.capitalize()}Failed", text[:1000])


def deployment_problems(deployment: dict[str, Any] | None) -> list[Problem]:
    """Rollout failures the Deployment controller reports (e.g. pods that never become ready because a
    module cannot be imported: the rollout exceeds its progress deadline)."""
    if not deployment:
        return []
    out = []
    for cond in (deployment.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("status") == "False":
            out.append(Problem(cond.get("reason") or "RolloutStalled", cond.get("message") or "rollout stalled"))
        if cond.get("type") == "ReplicaFailure" and cond.get("status") == "True":
            out.append(Problem(cond.get("reason") or "ReplicaFailure", cond.get("message") or "replica failure"))
    return out


def condition(
    type_: str,
    status: bool | None,
    reason: str,
    message: str,
    now: str,
    generation: int | None,
    previous: list[dict[str, Any]] | None,
) -> dict[str, Any]:
    """A metav1.Condition; lastTransitionTime only moves when the status changes."""
    value = "Unknown" if status is None else ("True" if status else "False")
    old = next((c for c in previous or [] if c.get("type") == type_), None)
    since = old["lastTransitionTime"] if old and old.get("status") == value and old.get("lastTransitionTime") else now
    cond: dict[str, Any] = {
        "type": type_,
        "status": value,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since,
    }
    if generation is not None:
        cond["observedGeneration"] = generation
    return cond


def replica_counts(deployment: dict[str, Any] | None) -> tuple[int, int, int]:
    """(replicas, readyReplicas, updatedReplicas) from a Deployment's status."""
    st = (deployment or {}).get("status") or {}
    return int(st.get("replicas") or 0), int(st.get("readyReplicas") or 0), int(st.get("updatedReplicas") or 0)


def ready_condition_args(desired: int, deployment: dict[str, Any] | None, degraded: bool) -> tuple[bool, str, str]:
    replicas, ready, updated = replica_counts(deployment)
    if deployment is None:
        return False, "DeploymentMissing", "the worker Deployment does not exist yet"
    if degraded:
        return False, "Degraded", "see the Degraded condition"
    if desired == 0 and replicas == 0:
        return True, "ScaledToZero", "no replicas wanted: no backlog"
    if ready >= desired and updated >= desired and replicas == desired:
        return True, "AllReplicasReady", f"{ready}/{desired} replicas ready"
    return False, "WaitingForReplicas", f"{ready}/{desired} replicas ready, {updated} up to date"


def utilization_text(busy: int, capacity: int) -> str | None:
    return None if capacity <= 0 else f"{round(100 * busy / capacity)}%"


def queue_keys(spec: dict[str, Any]) -> list[str]:
    """The queues of the spec's tasks (`domain:task` when a domain is set)."""
    return [f"{t['domain']}:{t['name']}" if t.get("domain") else t["name"] for t in spec.get("tasks") or []]


def queue_depth_status(
    previous: dict[str, Any] | None, depth: dict[str, int] | None, keys: list[str]
) -> tuple[dict[str, int | None] | None, int | None]:
    """(status.queueDepth merge patch, totalQueueDepth) for the spec's queues only.

    The status is merge-patched, and a merge patch merges maps: a queue whose task left the spec would
    stay for ever unless its key is sent as null. depth None (Conductor unreachable): the last numbers
    stay, but not those of tasks gone from the spec."""
    wanted = set(keys)
    fresh = {k: v for k, v in (depth or {}).items() if k in wanted}
    patch: dict[str, int | None] = {k: None for k in previous or {} if k not in wanted}
    if depth is None:
        return patch or None, None
    patch.update(fresh)
    return patch, sum(fresh.values())


QUEUE_ONLY = "queue depth only"


def metrics_verdict(
    enabled: bool,
    metered: int,
    unmetered: int,
    errors: dict[str, str],
    dialects: frozenset[str],
    sdk: str,
) -> tuple[bool, str, str] | None:
    """(status, reason, message) of the MetricsAvailable condition from one scrape; None when there was
    no pod to scrape (the caller keeps the last verdict: a fleet at zero has not changed its SDK).

    Why it matters to the user: without busy slots the autoscaler runs on the queue depth alone, cannot
    see a busy pod (no pod-deletion-cost protection) and scales to zero on an empty queue even while a
    worker still runs its last tasks; the SDK's own drain on SIGTERM is then all that protects them."""
    seen = ", ".join(sorted(dialects)) or "no known Conductor metric"
    if not enabled:
        return (
            False,
            "MetricsDisabled",
            f"{QUEUE_ONLY}: spec.metrics.enabled is false (no busy slots, no busy-pod protection)",
        )
    if metered:
        total = metered + unmetered + len(errors)
        return True, "BusySlotsRead", f"busy slots read from {metered} of {total} pods ({seen})"
    if unmetered:
        return (
            False,
            "NoBusySlotMetrics",
            f"{QUEUE_ONLY}: the {sdk} workers' /metrics ({seen}) report no busy slots "
            "(no utilization target, no busy-pod protection)",
        )
    if errors:
        name, error = sorted(errors.items())[0]
        return (
            False,
            "MetricsScrapeFailed",
            f"{QUEUE_ONLY}: no pod's /metrics answered ({name}: {error}); while they do not, the fleet is not "
            "scaled to zero. If the worker serves no metrics, set spec.metrics.enabled to false",
        )
    return None


def problem_events(before: tuple[str, ...], problems: list[Problem]) -> list[tuple[str, str, str]]:
    """(type, reason, message) of the Events a change of problems deserves: a Warning per problem not
    reported before, Recovered when the last one is gone. No change, no Event (they would pile up)."""
    events = [("Warning", p.reason, p.message) for p in problems if p.reason not in before]
    if before and not problems:
        events.append(("Normal", "Recovered", "no configuration problem left"))
    return events


# What only the autoscaler reports: removed from the status when autoscaling is turned off.
AUTOSCALER_KEYS = (
    "queueDepth",
    "totalQueueDepth",
    "readyTasks",
    "utilization",
    "busySlots",
    "slotCapacity",
    "lastActiveTime",
)
LAST_ACTIVE_STEP = 60.0  # seconds: lastActiveTime moves at most once a minute while the fleet works


def last_active_text(previous: str | None, last_active: float) -> str | None:
    """lastActiveTime as it should read, or None to leave it. While a fleet works, its last active time is
    now at every evaluation; writing it each time would be a status write per interval for nothing, so it
    moves in steps of a minute (the autoscaler keeps the exact time itself)."""
    text = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(last_active))
    if previous:
        try:
            shown = calendar.timegm(time.strptime(previous, "%Y-%m-%dT%H:%M:%SZ"))
        except ValueError:
            return text
        if 0 <= last_active - shown < LAST_ACTIVE_STEP:
            return None
    return text


def assemble_status(
    body: dict[str, Any],
    *,
    desired: int,
    deployment: dict[str, Any] | None,
    problems: list[Problem],
    auto: Evaluation | None,
    spec_hash: str | None,
    last_active: float | None,
    now: str,
) -> dict[str, Any]:
    """The status to merge-patch: replica counts, conditions and, with the autoscaler's last evaluation
    (auto), what it saw and decided.

    Why merge-patch-shaped: keys set to None remove stale fields (e.g. queue numbers once autoscaling is
    off, a queue whose task left the spec)."""
    meta, spec = body["metadata"], body["spec"]
    generation = meta.get("generation")
    previous = ((body.get("status") or {}).get("conditions")) or []
    autoscaling = builders.autoscaling_enabled(spec)
    replicas, ready, _ = replica_counts(deployment)
    conds = [
        condition(
            "Degraded",
            bool(problems),
            problems[0].reason if problems else "AsExpected",
            "; ".join(p.message for p in problems) or "no problem found",
            now,
            generation,
            previous,
        ),
    ]
    ok, reason, message = ready_condition_args(desired, deployment, bool(problems))
    conds.append(condition("Ready", ok, reason, message, now, generation, previous))
    conds.append(
        condition(
            "Active",
            desired > 0,
            "HasReplicas" if desired > 0 else "ScaledToZero",
            f"{desired} replicas wanted",
            now,
            generation,
            previous,
        )
    )
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "replicas": replicas,
        "readyReplicas": ready,
        "desiredReplicas": desired,
        "selector": builders.selector_string(meta["name"]),
        "taskNames": ",".join(builders.task_names(spec)),
        "specHash": spec_hash,
    }
    if auto is not None:
        reachable = auto.depth is not None
        conds.append(
            condition(
                "ConductorReachable",
                reachable,
                "QueueDepthRead" if reachable else "QueueDepthUnavailable",
                "queue sizes read" if reachable else auto.error,
                now,
                generation,
                previous,
            )
        )
        verdict = auto.metrics
        if verdict is None:
            verdict = (None, "NoPodsScraped", "no running pod to read /metrics from yet")
        conds.append(condition("MetricsAvailable", *verdict, now, generation, previous))
        status["lastDecisionReason"] = auto.reason[:1000]
        metered = verdict[0] is True
        status["busySlots"] = auto.busy if metered else None
        status["slotCapacity"] = auto.capacity if metered else None
        status["utilization"] = utilization_text(auto.busy, auto.capacity) if metered else None
        depth, total = queue_depth_status((body.get("status") or {}).get("queueDepth"), auto.depth, queue_keys(spec))
        if depth is not None:
            status["queueDepth"] = depth
        if total is not None:
            status["totalQueueDepth"] = total
        status["readyTasks"] = auto.ready
        if auto.scaled:
            status["lastScaleTime"] = now
        if last_active is not None:
            shown = last_active_text((body.get("status") or {}).get("lastActiveTime"), last_active)
            if shown is not None:
                status["lastActiveTime"] = shown
    else:
        status["lastDecisionReason"] = (
            "autoscaling disabled: spec.replicas" if not autoscaling else "waiting for first evaluation"
        )
        if not autoscaling:
            # Without the autoscaler the operator does not ask Conductor: do not show stale numbers.
            status.update(dict.fromkeys(AUTOSCALER_KEYS))
    status["conditions"] = conds
    return status
