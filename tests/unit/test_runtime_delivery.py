"""Retries of result updates and handing tasks back: the rules the runtime and the sidecar share."""

from __future__ import annotations

from worker_runtime.backoff import Backoff
from worker_runtime.delivery import UpdateRetries, give_back
from worker_runtime.errors import ConductorError

NO_WAIT = Backoff(base=0.0, cap=0.0)


def test_a_refusal_stops_at_once_and_outages_are_retried_within_the_attempts():
    retries = UpdateRetries(NO_WAIT, attempts=3)
    assert retries.next_delay(ConductorError("HTTP 503", 503)) == 0.0
    assert retries.next_delay(ConductorError("connection refused")) == 0.0
    assert retries.next_delay(ConductorError("HTTP 503", 503)) is None  # the third try failed: out of attempts
    assert UpdateRetries(NO_WAIT).next_delay(ConductorError("HTTP 400", 400)) is None  # refused: never again
    assert UpdateRetries(NO_WAIT).next_delay(ConductorError("HTTP 401", 401)) == 0.0  # a token being rotated


def test_the_deadline_ends_the_retries_and_each_update_backs_off_on_its_own():
    now = [0.0]
    template = Backoff(base=1.0, cap=8.0, jitter=0.0)
    first = UpdateRetries(template, give_up_after=10, clock=lambda: now[0])
    assert [first.next_delay(ConductorError("HTTP 502", 502)) for _ in range(3)] == [1.0, 2.0, 4.0]
    second = UpdateRetries(template, give_up_after=10, clock=lambda: now[0])
    assert second.next_delay(ConductorError("HTTP 502", 502)) == 1.0  # not continuing the first's backoff
    now[0] = 10.5
    assert first.next_delay(ConductorError("HTTP 502", 502)) is None


class _Server:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.released: list[tuple[dict, str]] = []

    def release_task(self, task: dict, worker_id: str) -> None:
        if self.failures:
            self.failures -= 1
            raise ConductorError("HTTP 503", 503)
        self.released.append((task, worker_id))


def test_give_back_tries_again_and_says_whether_the_server_was_told():
    slept: list[float] = []
    server = _Server(failures=2)
    assert give_back(server, {"taskId": "t1"}, "pod-a", "draining", attempts=3, sleep=slept.append)
    assert server.released == [({"taskId": "t1"}, "pod-a")] and slept == [0.5, 1.0]
    assert not give_back(_Server(failures=5), {"taskId": "t2"}, "pod-a", "draining", attempts=2, sleep=slept.append)
