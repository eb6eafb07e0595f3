"""The decision function against the table of cases (HPA semantics + zero, fallback, busy protection)."""

from __future__ import annotations

import pytest

from conductor_operator.autoscaler import (
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP,
    HPA_SCALE_DOWN,
    Config,
    History,
    Observation,
    Policy,
    Rules,
    config_from_spec,
    decide,
)

# No windows and no rate limits: isolates the metric arithmetic.
FREE_UP = Rules(0, "Max", (Policy("Pods", 1000, 1),))
FREE_DOWN = Rules(0, "Max", (Policy("Percent", 100, 1),))


def cfg(**kw) -> Config:
    base = dict(
        min_replicas=1,
        max_replicas=20,
        target_queue_depth_per_replica=10,
        scale_up=FREE_UP,
        scale_down=FREE_DOWN,
        cooldown_seconds=60,
    )
    base.update(kw)
    return Config(**base)


def obs(now: float, current: int, backlog: int | None, **kw) -> Observation:
    depth = None if backlog is None else {"task": backlog}
    return Observation(now=now, current_replicas=current, queue_depth=depth, **kw)


@pytest.mark.parametrize(
    ("name", "config", "observation", "expected"),
    [
        ("steady: backlog per replica at target", cfg(), obs(0, 3, 30), 3),
        ("steady: within tolerance up", cfg(), obs(0, 3, 32), 3),
        ("steady: within tolerance down", cfg(), obs(0, 3, 28), 3),
        ("spike: backlog 200, target 10", cfg(), obs(0, 1, 200), 20),
        ("spike clamped to max", cfg(max_replicas=5), obs(0, 1, 200), 5),
        ("drain: no backlog -> min", cfg(min_replicas=2), obs(0, 6, 0), 2),
        ("min clamp at 0 backlog with min 1", cfg(), obs(0, 4, 0), 1),
        ("max lowered below current", cfg(max_replicas=3), obs(0, 8, 80), 3),
        ("min raised above current", cfg(min_replicas=4), obs(0, 2, 0), 4),
        (
            "utilization wins over queue",
            cfg(target_utilization=0.5),
            obs(0, 2, 0, busy_slots=8, slot_capacity=8, scraped_pods=2),
            4,
        ),
        (
            "queue wins over utilization",
            cfg(target_utilization=0.5),
            obs(0, 2, 100, busy_slots=2, slot_capacity=8, scraped_pods=2),
            10,
        ),
        (
            "utilization within tolerance keeps",
            cfg(target_utilization=0.5),
            obs(0, 4, 0, busy_slots=8, slot_capacity=16, scraped_pods=4),
            4,
        ),
        (
            "missing pods count at target when scaling down",
            cfg(target_utilization=0.5),
            obs(0, 4, 0, busy_slots=1, slot_capacity=4, scraped_pods=1),
            4,
        ),
        (
            "missing pods never turn a scale-up into a scale-down",
            cfg(target_utilization=0.5),
            obs(0, 10, 0, busy_slots=6, slot_capacity=8, scraped_pods=2),
            10,
        ),
        (
            "missing pods counted idle when the scraped pods say up",
            cfg(target_utilization=0.5),
            obs(0, 4, 0, busy_slots=16, slot_capacity=16, scraped_pods=3),
            6,
        ),
        (
            "fallback when Conductor unreachable",
            cfg(fallback_replicas=3, fallback_failure_threshold=1),
            obs(0, 7, None),
            3,
        ),
        ("one failed read is not yet a fallback", cfg(fallback_replicas=3), obs(0, 7, None), 7),
        ("unreachable without fallback keeps current", cfg(), obs(0, 7, None), 7),
        (
            "busy workers that drain may leave: utilization decides",
            cfg(),
            obs(0, 5, 0, busy_pods=4, busy_slots=4, slot_capacity=20, scraped_pods=5),
            2,
        ),
        (
            "busy workers that do not drain are kept",
            cfg(),
            obs(0, 5, 0, busy_pods=4, busy_slots=4, slot_capacity=20, scraped_pods=5, drains=False),
            4,
        ),
        (
            "busy protection never scales up",
            cfg(max_replicas=2),
            obs(0, 2, 0, busy_pods=3, busy_slots=3, drains=False),
            2,
        ),
        (
            "busy protection never holds more than max",
            cfg(max_replicas=3),
            obs(0, 10, 0, busy_pods=10, busy_slots=10, slot_capacity=100, scraped_pods=10, drains=False),
            3,
        ),
        ("zero stays zero without backlog", cfg(min_replicas=0), obs(0, 0, 0), 0),
        ("activation above threshold", cfg(min_replicas=0, activation_queue_depth=5), obs(0, 0, 6), 1),
        ("no activation at threshold", cfg(min_replicas=0, activation_queue_depth=5), obs(0, 0, 5), 0),
        ("activation sized by backlog", cfg(min_replicas=0), obs(0, 0, 45), 5),
        ("activation honours max", cfg(min_replicas=0, max_replicas=2), obs(0, 0, 450), 2),
        ("at zero with min 2 goes to min", cfg(min_replicas=2), obs(0, 0, 0), 2),
    ],
)
def test_table(name, config, observation, expected):
    decision = decide(config, observation)
    assert decision.desired == expected, f"{name}: {decision.reason}"
    assert decision.reason


def run(config: Config, series: list[tuple[float, int, int]], **kw) -> list[int]:
    """Feed (time, backlog, busy_slots) observations, applying each decision as the next current."""
    history, current, out = History(), kw.pop("start", 1), []
    for now, backlog, busy in series:
        d = decide(
            config,
            obs(
                now,
                current,
                backlog,
                busy_slots=busy,
                busy_pods=min(busy, current),
                slot_capacity=current * 4,
                scraped_pods=current,
            ),
            history,
        )
        history, current = d.history, d.desired
        out.append(current)
    return out


def test_scale_up_immediately_and_down_only_after_the_window():
    c = cfg(scale_down=Rules(30, "Max", (Policy("Percent", 100, 1),)), target_utilization=1.0)
    series = [(0, 200, 0), (5, 0, 0), (10, 0, 0), (29, 0, 0), (36, 0, 0)]
    assert run(c, series) == [20, 20, 20, 20, 1]


def test_noisy_load_does_not_flap():
    c = cfg(scale_down=Rules(60, "Max", (Policy("Percent", 100, 15),)), target_utilization=1.0)
    backlogs = [50, 20, 45, 10, 50, 15, 40, 5, 48, 22]
    series = [(i * 5.0, b, 0) for i, b in enumerate(backlogs)]
    result = run(c, series)
    assert result[0] == 5
    assert all(r == 5 for r in result), result  # the window holds the peak: no up/down churn


def test_hpa_behaviour_with_the_hpas_window():
    c = cfg(scale_up=DEFAULT_SCALE_UP, scale_down=HPA_SCALE_DOWN, max_replicas=100)
    # Up: max(+4 pods, +100%) per 15 s: from 1 -> 5 at once, then doubling per period.
    history = History()
    d = decide(c, obs(0, 1, 1000), history)
    assert d.desired == 5 and "rate limited" in d.reason
    d2 = decide(c, obs(5, 5, 1000), d.history)
    assert d2.desired == 5  # still within the 15 s period that already added 4
    d3 = decide(c, obs(16, 5, 1000), d2.history)
    assert d3.desired == 10
    # Down: nothing for 300 s, then all the way.
    d4 = decide(c, obs(20, 10, 0), d3.history)
    assert d4.desired == 10
    d5 = decide(c, obs(321, 10, 0), d4.history)
    assert d5.desired == 1


def test_rate_policies_select_min_and_disabled():
    rules_min = Rules(0, "Min", (Policy("Pods", 2, 60), Policy("Percent", 100, 60)))
    assert decide(cfg(scale_up=rules_min), obs(0, 4, 200)).desired == 6
    rules_max = Rules(0, "Max", (Policy("Pods", 2, 60), Policy("Percent", 100, 60)))
    assert decide(cfg(scale_up=rules_max), obs(0, 4, 200)).desired == 8
    disabled = Rules(0, "Disabled", (Policy("Pods", 2, 60),))
    assert decide(cfg(scale_up=disabled), obs(0, 4, 200)).desired == 4
    assert decide(cfg(scale_down=disabled), obs(0, 4, 0)).desired == 4
    down_pods = Rules(0, "Max", (Policy("Pods", 1, 60),))
    d = decide(cfg(scale_down=down_pods), obs(0, 10, 0))
    assert d.desired == 9
    assert decide(cfg(scale_down=down_pods), obs(30, 9, 0), d.history).desired == 9  # 1 per 60 s used up
    assert decide(cfg(scale_down=down_pods), obs(61, 9, 0), d.history).desired == 8


def test_zero_and_back():
    c = cfg(
        min_replicas=0,
        cooldown_seconds=20,
        scale_down=Rules(10, "Max", (Policy("Percent", 100, 1),)),
        target_utilization=1.0,
    )
    series = [
        (0, 100, 0),
        (5, 0, 4),
        (10, 0, 0),
        (16, 0, 0),
        (21, 0, 0),
        (26, 0, 0),
        (31, 0, 0),
        (40, 3, 0),
        (45, 3, 0),
    ]
    # busy at t=5 keeps it active; down to 1 once the 10 s window has passed (as in the HPA, only
    # recommendations after the cutoff count); zero 20 s after the last activity; a new backlog
    # activates at once.
    assert run(c, series) == [10, 10, 1, 1, 1, 0, 0, 1, 1]


def test_no_scale_to_zero_while_busy_or_unscrapable():
    c = cfg(min_replicas=0, cooldown_seconds=0)
    assert decide(c, obs(0, 2, 0, busy_slots=1, busy_pods=1)).desired == 1
    assert decide(c, obs(0, 2, 0, scrape_errors=1)).desired == 1
    assert decide(c, obs(0, 2, 0)).desired == 0


def test_fallback_is_still_above_busy_pods_that_do_not_drain():
    d = decide(cfg(fallback_replicas=1, fallback_failure_threshold=1), obs(0, 5, None, busy_pods=3, drains=False))
    assert d.desired == 3 and "busy" in d.reason
    drained = decide(cfg(fallback_replicas=1, fallback_failure_threshold=1), obs(0, 5, None, busy_pods=3))
    assert drained.desired == 1, drained.reason


def test_spread_load_shrinks_to_what_utilization_needs():
    """10 pods each holding a task, 15 of 100 slots busy, target 80 %, empty queue, the HPA's defaults:
    the fleet goes to 2 once the scale-down window has passed (the busy-pod floor kept 10 for ever)."""
    c = cfg(scale_up=DEFAULT_SCALE_UP, scale_down=HPA_SCALE_DOWN, target_utilization=0.8)
    history, current, seen = None, 10, []
    for now in range(0, 1200, 5):
        # the same 15 tasks spread over whatever pods there are: every pod holds at least one
        o = obs(now, current, 0, busy_slots=15, slot_capacity=10 * current, busy_pods=current, scraped_pods=current)
        d = decide(c, o, history)
        history, current = d.history, d.desired
        seen.append((now, current))
    assert all(r == 10 for t, r in seen if t < 300), seen[:5]
    assert next(t for t, r in seen if r < 10) == 300
    assert seen[-1][1] == 2


def test_fallback_honours_min_and_the_windows():
    """min 2, fallbackReplicas 0, 20 replicas, three failed reads: not 0 at once, but 20 for the scale-down
    window, then min 2 (a short Conductor outage does not empty the fleet)."""
    c = cfg(min_replicas=2, fallback_replicas=0, scale_up=DEFAULT_SCALE_UP, scale_down=HPA_SCALE_DOWN)
    history, current = None, 20
    for now in (0, 5, 10, 15, 20):
        d = decide(c, obs(now, current, None), history)
        history, current = d.history, d.desired
        assert current == 20, d.reason
    late = decide(c, obs(301, 20, None), history)
    assert late.desired == 2 and "fallback" in late.reason, late.reason


def test_fallback_up_goes_through_the_rate_policies_and_max():
    c = cfg(fallback_replicas=30, fallback_failure_threshold=1, max_replicas=12, scale_up=DEFAULT_SCALE_UP)
    d = decide(c, obs(0, 2, None))
    assert d.desired == 6, d.reason  # +4 pods or +100 % per 15 s, whichever is more
    d = decide(c, obs(16, 6, None), d.history)
    assert d.desired == 12, d.reason  # doubled, clamped to max 12 (not 30)


def test_unreachable_at_zero_stays_at_zero_without_fallback():
    assert decide(cfg(min_replicas=0), obs(0, 0, None)).desired == 0
    assert decide(cfg(min_replicas=3), obs(0, 0, None)).desired == 3  # min still holds
    at_zero = decide(cfg(min_replicas=0, fallback_replicas=2, fallback_failure_threshold=1), obs(0, 0, None))
    assert at_zero.desired == 2, at_zero.reason


def test_waiting_tasks_are_reported_not_counted():
    d = decide(cfg(min_replicas=0, cooldown_seconds=0), obs(0, 3, 0, waiting=20))
    assert d.desired == 0 and "20 waiting" in d.reason, d.reason


def test_history_is_pruned():
    c = cfg(scale_down=Rules(10, "Max", (Policy("Percent", 100, 5),)))
    history = History()
    for t in range(0, 100, 5):
        history = decide(c, obs(t, 2, 20), history).history
    assert all(t >= 85 for t, _ in history.recommendations)


def test_config_from_spec_defaults_and_overrides():
    c = config_from_spec({})
    assert (c.min_replicas, c.max_replicas, c.scale_up, c.scale_down) == (1, 10, DEFAULT_SCALE_UP, DEFAULT_SCALE_DOWN)
    c = config_from_spec(
        {
            "minReplicas": 0,
            "maxReplicas": 7,
            "targetQueueDepthPerReplica": 5,
            "targetUtilization": 50,
            "tolerance": "0.2",
            "cooldownSeconds": 9,
            "fallbackReplicas": 2,
            "activationQueueDepth": 3,
            "scaleDown": {
                "stabilizationWindowSeconds": 4,
                "selectPolicy": "Min",
                "policies": [{"type": "Pods", "value": 1, "periodSeconds": 10}],
            },
            "scaleUp": {"stabilizationWindowSeconds": 2},
        }
    )
    assert c.min_replicas == 0 and c.max_replicas == 7 and c.target_utilization == 0.5
    assert c.tolerance == 0.2 and c.cooldown_seconds == 9 and c.fallback_replicas == 2
    assert c.scale_down == Rules(4, "Min", (Policy("Pods", 1, 10),))
    assert c.scale_up == Rules(2, "Max", DEFAULT_SCALE_UP.policies)


def test_decision_records_scale_events_for_rate_policies():
    d = decide(cfg(), obs(0, 1, 50))
    assert d.scaled and d.history.scale_events == ((0, 4),) and d.history.last_scale_time == 0
    same = decide(cfg(), obs(1, 5, 50), d.history)
    assert not same.scaled and same.history.last_scale_time == 0


def test_rate_policy_never_reverses_the_direction_after_an_activation_jump():
    c = cfg(min_replicas=0, scale_up=Rules(0, "Max", (Policy("Pods", 4, 60),)))
    d = decide(c, obs(0, 0, 100))  # activation skips the rate policies: 0 -> 10 inside the 60 s period
    assert d.desired == 10
    # The queue asks for 15: the +10 already used the period's +4, so no more up, but never fewer
    # than the 10 running.
    up = decide(c, obs(3, 10, 150), d.history)
    assert up.desired == 10, up.reason


def test_scale_down_limit_is_at_most_the_current_count_after_scale_to_zero():
    c = cfg(min_replicas=0, cooldown_seconds=0, scale_down=Rules(0, "Max", (Policy("Pods", 1, 60),)))
    d = decide(c, obs(0, 3, 0))  # scale to zero: a -3 event inside the scale-down period
    assert d.desired == 0
    d = decide(c, obs(1, 0, 20), d.history)  # activation to 2
    assert d.desired == 2
    down = decide(c, obs(2, 2, 10), d.history)  # wants 1: the limit is at most 2, never 2 + 3 - 1
    assert down.desired == 2, down.reason


def test_first_evaluation_seeds_the_scale_down_window_with_the_current_count():
    """After an operator restart or fail-over the history is gone; the window must still hold."""
    c = cfg(scale_down=Rules(300, "Max", (Policy("Percent", 100, 15),)))
    first = decide(c, obs(1000, 6, 0), None)
    assert first.desired == 6, first.reason
    assert decide(c, obs(1200, 6, 0), first.history).desired == 6
    assert decide(c, obs(1301, 6, 0), first.history).desired == 1
    # the seed does not hold a scale-up back, nor a scale-down without a window
    assert decide(c, obs(1000, 6, 200), None).desired == 20
    assert decide(cfg(), obs(1000, 6, 0), None).desired == 1


def test_fallback_only_after_the_failure_threshold_in_a_row():
    c = cfg(fallback_replicas=8, fallback_failure_threshold=3)
    d1 = decide(c, obs(0, 2, None))
    d2 = decide(c, obs(5, 2, None), d1.history)
    assert (d1.desired, d2.desired) == (2, 2), d2.reason
    ok = decide(c, obs(10, 2, 20), d2.history)  # a good read resets the count
    d3 = decide(c, obs(15, 2, None), ok.history)
    d4 = decide(c, obs(20, 2, None), d3.history)
    assert (d3.desired, d4.desired) == (2, 2)
    d5 = decide(c, obs(25, 2, None), d4.history)
    assert d5.desired == 8 and "3 failed reads" in d5.reason, d5.reason
    assert config_from_spec({"fallback": {"failureThreshold": 5}}).fallback_failure_threshold == 5
    assert config_from_spec({}).fallback_failure_threshold == 3


def test_leaving_the_fallback_respects_the_scale_down_window():
    c = cfg(
        fallback_replicas=10, fallback_failure_threshold=1, scale_down=Rules(60, "Max", (Policy("Percent", 100, 15),))
    )
    d = decide(c, obs(0, 2, 20), History())
    d = decide(c, obs(5, 2, None), d.history)
    assert d.desired == 10
    back = decide(c, obs(10, 10, 0), d.history)  # reachable, empty queue: the window holds the 10
    assert back.desired == 10, back.reason
    assert decide(c, obs(66, 10, 0), back.history).desired == 1


def test_task_definition_limits_cap_the_replicas_that_can_get_work():
    # 500 waiting, but the definition lets 6 run at once and a pod has 2 slots: 3 pods can get work.
    capped = obs(0, 1, 500, task_caps={"task": 3})
    d = decide(cfg(), capped)
    assert d.desired == 3 and "task definitions' limits" in d.reason, d.reason
    # busy pods at the limit propose more by utilization; still capped
    busy = obs(0, 3, 500, busy_slots=6, slot_capacity=6, scraped_pods=3, task_caps={"task": 3})
    assert decide(cfg(target_utilization=0.5), busy).desired == 3
    # activation from zero is capped too, and min_replicas still wins over the cap
    assert decide(cfg(min_replicas=0), obs(0, 0, 500, task_caps={"task": 2})).desired == 2
    assert decide(cfg(min_replicas=4), capped).desired == 4


def test_an_unlimited_task_type_is_not_capped_by_a_limited_one():
    o = Observation(now=0, current_replicas=1, queue_depth={"limited": 500, "free": 100}, task_caps={"limited": 2})
    d = decide(cfg(), o)
    assert d.desired == 12, d.reason  # (2 pods x 10 of 'limited' + 100 of 'free') / 10


def test_the_default_scale_down_window_is_60_s():
    """Shorter than the HPA's 300 s: the workers drain before they leave and a fleet at zero wakes in a second."""
    assert DEFAULT_SCALE_DOWN.stabilization_window_seconds == 60
    assert config_from_spec({}).scale_down == DEFAULT_SCALE_DOWN
    c = cfg(scale_up=DEFAULT_SCALE_UP, scale_down=DEFAULT_SCALE_DOWN)
    d = decide(c, obs(0, 10, 0), History(recommendations=((0, 10),)))
    assert d.desired == 10
    assert decide(c, obs(59, 10, 0), d.history).desired == 10
    assert decide(c, obs(61, 10, 0), d.history).desired == 1
