"""The loop's pause at zero replicas (handlers._pause_at_zero): woken early by a grown queue, never spinning."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

from conductor_operator import handlers
from conductor_operator.config import Config


class Stopped:
    """kopf.DaemonStopped stand-in: falsy until set, awaitable."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def __bool__(self) -> bool:
        return self.event.is_set()

    async def wait(self) -> None:
        await self.event.wait()


def fake_ctl(answers: list[bool], period: float = 0.05) -> SimpleNamespace:
    calls: list[float] = []

    def activation_due(body: dict) -> bool:
        calls.append(time.monotonic())
        return answers.pop(0) if answers else False

    return SimpleNamespace(config=Config(activation_poll_seconds=period), activation_due=activation_due, calls=calls)


def run(ctl: SimpleNamespace, seconds: float, wake_set: bool = False) -> tuple[float, asyncio.Event]:
    async def go() -> tuple[float, asyncio.Event]:
        wake = asyncio.Event()
        if wake_set:
            wake.set()
        handlers._executor = None  # the default executor
        started = time.monotonic()
        await handlers._pause_at_zero(ctl, Stopped(), wake, seconds, {"metadata": {}, "spec": {}})
        return time.monotonic() - started, wake

    return asyncio.run(go())


def test_a_grown_queue_ends_the_pause_early():
    ctl = fake_ctl([False, False, True])
    took, _ = run(ctl, seconds=5.0)
    assert len(ctl.calls) == 3 and took < 1.0


def test_without_a_change_the_pause_lasts_the_interval_with_a_look_per_period():
    ctl = fake_ctl([])
    took, _ = run(ctl, seconds=0.5)
    assert 0.45 <= took < 1.5
    assert 5 <= len(ctl.calls) <= 10


def test_a_wake_set_on_entry_returns_at_once_and_is_cleared():
    """A wake that came during the step (our own Deployment apply) must not make the next pause return at
    once again: cleared here, or the loop would step without pause and never look at a fresh queue."""
    ctl = fake_ctl([])
    took, wake = run(ctl, seconds=5.0, wake_set=True)
    assert took < 0.5 and not wake.is_set() and ctl.calls == []
