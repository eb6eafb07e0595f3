"""TaskRunner and TaskHandler against a fake Conductor client: reporting, timeouts, drain, health."""

from __future__ import annotations

import asyncio
import functools
import json
import math
import threading
import time
from collections import deque
from typing import Any

import pytest

from worker_runtime.async_loop import AsyncLoop
from worker_runtime.backoff import Backoff
from worker_runtime.client import ConductorError
from worker_runtime.config import resolve
from worker_runtime.handler import TaskHandler
from worker_runtime.metrics import WorkerMetrics
from worker_runtime.model import Task
from worker_runtime.runner import TaskRunner
from worker_runtime.worker import WorkerSpec, is_async_callable

WAIT = 10.0  # a safety net for a broken runtime, never a timing assumption


class FakeClient:
    """Stands in for ConductorClient: scripted poll answers and update failures, every call recorded."""

    def __init__(self, polls: list[Any] | None = None) -> None:
        self.polls: deque[Any] = deque(polls or [])
        self.asked: list[int] = []
        self.update_failures: deque[Exception] = deque()
        self.attempts: list[dict] = []  # every update attempt, decoded
        self.accepted: list[dict] = []
        self.observers: list = []
        self.update_v2 = True
        self.handed: deque[Any] = deque()  # what each update-v2 reply hands over (None: nothing)
        self.via: list[str] = []  # the endpoint of each update attempt: "v1" POST /tasks, "v2" update-v2
        self.released: list[str] = []
        self._cond = threading.Condition()

    def poll_batch(self, task_type: str, worker_id: str, count: int, timeout_ms: int, domain: str | None) -> Any:
        with self._cond:
            self.asked.append(count)
            self._cond.notify_all()
            answer = self.polls.popleft() if self.polls else None
        if answer is None:  # nothing scripted: behave like an idle long poll
            threading.Event().wait(0.01)
            return []
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def update_task(self, body: bytes | dict) -> str:
        return self._update(body, "v1")["taskId"]

    def update_task_v2(self, body: bytes | dict) -> dict | None:
        self._update(body, "v2")
        with self._cond:
            return self.handed.popleft() if self.handed else None

    def _update(self, body: bytes | dict, via: str) -> dict:
        decoded = json.loads(body) if isinstance(body, bytes) else body
        with self._cond:
            self.attempts.append(decoded)
            self.via.append(via)
            self._cond.notify_all()
            if self.update_failures:
                raise self.update_failures.popleft()
            self.accepted.append(decoded)
            self._cond.notify_all()
        return decoded

    def release_task(self, task: dict, worker_id: str) -> None:
        with self._cond:
            self.released.append(task["taskId"])
            self._cond.notify_all()

    def wait_for(self, what: str, n: int) -> list[dict]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(getattr(self, what)) >= n, WAIT), getattr(self, what)
            return list(getattr(self, what))


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _raw(task_id: str = "t1", **extra: Any) -> dict:
    return {"taskId": task_id, "workflowInstanceId": "wf", "taskType": "work", "inputData": {}, **extra}


def _runner(func, client: FakeClient, slots: int = 1, clock=None, **spec_kw) -> TaskRunner:
    spec = WorkerSpec("work", func, **spec_kw)
    settings = resolve(spec, env={"HOSTNAME": "pod"}, overrides={"thread_count": slots})
    loop = AsyncLoop() if spec.is_async else None
    runner = TaskRunner(spec, settings, client, WorkerMetrics(), loop, clock=clock or FakeClock(), update_v2=True)
    runner.update_backoff = Backoff(base=0.0, cap=0.0)
    return runner


def _metric(runner: TaskRunner, name: str, **labels: str) -> float:
    value = runner.metrics.registry.get_sample_value(name, {"taskType": "work", **labels})
    return 0.0 if value is None else value


def _wait_idle(runner: TaskRunner) -> None:
    """The server accepted every result and the runner freed the slots."""
    with runner._cond:
        assert runner._cond.wait_for(lambda: not runner._held and runner.busy == 0, WAIT)


def _server_error_500() -> ConductorError:
    return ConductorError("HTTP 500", 500, '{"status":500,"message":"Error","retryable":false}')


# -- reporting ------------------------------------------------------------------------------------


def test_a_5xx_saying_not_retryable_is_retried_until_the_result_is_accepted():
    client = FakeClient()
    client.update_failures.extend([_server_error_500(), ConductorError("HTTP 503", 503)])
    runner = _runner(lambda: {"y": 2}, client)
    runner._accept(_raw())
    accepted = client.wait_for("accepted", 1)
    assert [a["status"] for a in client.attempts] == ["COMPLETED"] * 3
    assert accepted[0]["outputData"] == {"y": 2}
    assert _metric(runner, "task_update_error_total", exception="HTTP500") == 1
    _wait_idle(runner)


def test_a_403_is_retried_and_a_result_given_up_is_logged_without_its_content(caplog):
    client = FakeClient()
    client.update_failures.extend([ConductorError("HTTP 403", 403)] * 2)
    runner = _runner(lambda: {"card": "4111-1111"}, client)
    runner._accept(_raw())
    accepted = client.wait_for("accepted", 1)
    assert accepted[0]["outputData"] == {"card": "4111-1111"}  # retried, not turned into a failure
    _wait_idle(runner)
    client.update_failures.extend([ConductorError("HTTP 400: card 4111-1111 refused", 400, summary="HTTP 400")] * 9)
    runner._accept(_raw())
    with caplog.at_level("ERROR"):
        deadline = time.monotonic() + WAIT
        while _metric(runner, "task_result_dropped_total") == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert _metric(runner, "task_result_dropped_total") == 1
    assert "RESULT NOT DELIVERED" in caplog.text and "4111" not in caplog.text


# -- update-v2 hand-over --------------------------------------------------------------------------


def _recording(ran: list[str]):
    def work(task: Task) -> dict:
        ran.append(task.task_id)
        return {}

    return work


def _waits_on_t2(release: threading.Event):
    def work(task: Task) -> dict:
        if task.task_id == "t2":
            release.wait(WAIT)
        return {}

    return work


def test_a_task_handed_over_by_update_v2_runs_in_the_same_slot_without_a_poll():
    client = FakeClient()
    client.handed.extend([_raw("t2"), None])
    ran = []
    runner = _runner(_recording(ran), client)
    runner._accept(_raw("t1"))
    accepted = client.wait_for("accepted", 2)
    _wait_idle(runner)
    assert ([a["taskId"] for a in accepted], client.via, ran) == (["t1", "t2"], ["v2", "v2"], ["t1", "t2"])
    assert client.asked == []  # the poll thread never ran: no poll was needed
    assert (_metric(runner, "task_handed_over_total"), _metric(runner, "task_released_total")) == (1, 0)
    assert runner.busy == 0


def test_update_v2_off_reports_with_post_tasks():
    client = FakeClient()
    client.handed.append(_raw("t2"))
    runner = _runner(lambda: {}, client)
    runner.update_v2 = False
    runner._accept(_raw("t1"))
    client.wait_for("accepted", 1)
    _wait_idle(runner)
    assert client.via == ["v1"]


def test_the_handler_reports_with_update_v2_unless_it_is_turned_off():
    for update_v2, via in ((None, ["v2"]), (False, ["v1"])):
        client = FakeClient(polls=[[_raw("t1")]])
        kw = {} if update_v2 is None else {"update_v2": update_v2}
        with TaskHandler([WorkerSpec("work", lambda: {})], client=client, **kw):
            client.wait_for("accepted", 1)
        assert client.via == via


def test_a_server_without_update_v2_is_reported_to_with_post_tasks():
    client = FakeClient()
    client.update_v2 = False  # the client found no update-v2 on the server
    runner = _runner(lambda: {}, client)
    runner._accept(_raw("t1"))
    client.wait_for("accepted", 1)
    _wait_idle(runner)
    assert client.via == ["v1"]


class _StopsDuringUpdate(FakeClient):
    """The runner is told to stop (or pause) while an update-v2 is in flight; the reply hands over a task."""

    runner: TaskRunner
    pause = False

    def update_task_v2(self, body):
        if self.pause:
            self.runner.paused = True
        else:
            self.runner.request_stop()
        return super().update_task_v2(body)


@pytest.mark.parametrize("pause", [False, True])
def test_a_task_handed_over_while_stopping_or_paused_is_given_back_at_once_and_never_run(pause):
    client = _StopsDuringUpdate()
    client.pause = pause
    client.handed.append(_raw("t2"))
    ran = []
    runner = _runner(_recording(ran), client)
    client.runner = runner
    runner._accept(_raw("t1"))
    assert client.wait_for("released", 1) == ["t2"]
    _wait_idle(runner)
    assert (ran, runner.busy, _metric(runner, "task_released_total")) == (["t1"], 0, 1)


def test_a_stopping_runner_reports_with_post_tasks_and_takes_no_task():
    client = FakeClient()
    client.handed.append(_raw("t2"))
    release = threading.Event()
    runner = _runner(lambda: release.wait(WAIT) and {}, client)
    runner._accept(_raw("t1"))
    runner.request_stop()
    release.set()
    client.wait_for("accepted", 1)
    _wait_idle(runner)
    assert (client.via, client.released) == (["v1"], [])


def test_with_tasks_waiting_for_a_slot_the_update_takes_no_new_task():
    client = FakeClient()
    client.handed.extend([_raw("t3"), None])
    ran = []
    release = threading.Event()
    record = _recording(ran)

    def work(task: Task) -> dict:
        release.wait(WAIT)
        return record(task)

    runner = _runner(work, client)
    runner._accept(_raw("t1"))  # takes the only slot...
    runner._accept(_raw("t2"))  # ...so this one waits for it (the server sent more than asked)
    release.set()
    accepted = client.wait_for("accepted", 3)
    _wait_idle(runner)
    # t1's update leaves the slot to t2 (POST /tasks); t2's, with nobody waiting, chains to t3
    assert ([a["taskId"] for a in accepted], client.via) == (["t1", "t2", "t3"], ["v1", "v2", "v2"])
    assert (ran, client.released) == (["t1", "t2", "t3"], [])


def test_a_copy_of_a_task_held_here_is_ignored_not_given_back():
    client = FakeClient()
    release = threading.Event()
    client.handed.append(_raw("t2"))
    runner = _runner(_waits_on_t2(release), client, slots=2)
    runner._accept(_raw("t2"))  # running in slot 1
    runner._accept(_raw("t1"))  # slot 2: its update-v2 hands over a copy of t2
    client.wait_for("accepted", 1)
    with runner._cond:
        assert runner._cond.wait_for(lambda: runner.busy == 1, WAIT)
    release.set()
    accepted = client.wait_for("accepted", 2)
    _wait_idle(runner)
    assert ([a["taskId"] for a in accepted], client.released) == (["t1", "t2"], [])


def test_a_4xx_refusal_ends_the_task_terminal_with_the_servers_reason():
    client = FakeClient()
    client.update_failures.append(ConductorError("POST /tasks: HTTP 413: payload too large", 413))
    runner = _runner(lambda: {"y": 2}, client)
    runner._accept(_raw())
    final = client.wait_for("accepted", 1)[0]
    assert final["status"] == "FAILED_WITH_TERMINAL_ERROR"
    assert "payload too large" in final["reasonForIncompletion"]


@pytest.mark.parametrize(
    ("returned", "named"),
    [
        ({"score": math.nan}, "output.score is NaN"),
        (math.inf, "output.result is Infinity"),
        ({"at": object()}, "output.at is a object"),
    ],
)
def test_a_result_that_cannot_be_encoded_fails_the_task_at_once(returned, named):
    client = FakeClient()
    runner = _runner(lambda: returned, client)
    runner._accept(_raw())
    client.wait_for("accepted", 1)
    assert len(client.attempts) == 1  # sent once, never retried
    assert client.attempts[0]["status"] == "FAILED_WITH_TERMINAL_ERROR"
    assert named in client.attempts[0]["reasonForIncompletion"]
    _wait_idle(runner)


def test_an_oversized_result_fails_the_task_at_once_naming_its_size():
    client = FakeClient()
    runner = _runner(lambda: {"blob": "x" * 5000}, client)
    runner.max_result_bytes = 1000
    runner._accept(_raw())
    final = client.wait_for("accepted", 1)[0]
    assert final["status"] == "FAILED_WITH_TERMINAL_ERROR"
    assert "payload size" in final["reasonForIncompletion"] and len(client.attempts) == 1


@pytest.mark.parametrize("exc", [SystemExit(3), KeyboardInterrupt(), GeneratorExit()])
def test_a_base_exception_in_a_worker_is_reported_not_lost(exc):
    def worker():
        raise exc

    client = FakeClient()
    runner = _runner(worker, client)
    runner._accept(_raw())
    final = client.wait_for("accepted", 1)[0]
    assert final["status"] == "FAILED"
    assert final["reasonForIncompletion"].startswith(type(exc).__name__)
    assert runner.metrics.registry.get_sample_value(
        "thread_uncaught_exceptions_total", {"exception": type(exc).__name__}
    )
    _wait_idle(runner)


# -- slots ----------------------------------------------------------------------------------------


def test_more_tasks_than_asked_wait_for_a_slot_and_never_overdraw_it():
    gate = threading.Event()
    client = FakeClient(polls=[[_raw("a"), _raw("b"), _raw("c")]])
    handler = TaskHandler(
        [WorkerSpec("work", lambda: gate.wait(WAIT) and {})], client=client, overrides={"thread_count": 2}
    )
    runner = handler.runners[0]
    with handler:
        with runner._cond:
            assert runner._cond.wait_for(lambda: runner._held.keys() == {"a", "b", "c"}, WAIT)
            assert runner._free == 0 and runner.busy == 2
        assert client.asked[0] == 1  # idle: asked for one, got three
        assert handler.metrics.registry.get_sample_value("worker_busy_slots", {"taskType": "work"}) == 2
        gate.set()
        client.wait_for("accepted", 3)
    assert sorted(a["taskId"] for a in client.accepted) == ["a", "b", "c"]
    assert runner._free == 2


def test_a_task_waiting_for_a_slot_holds_none_when_the_drain_reports_it():
    gate, client = threading.Event(), FakeClient()
    runner = _runner(lambda: gate.wait(WAIT), client, slots=1)
    runner._accept(_raw("running"))
    runner._accept(_raw("waiting"))  # the server sent more than asked
    assert sorted(runner.abort()) == ["running", "waiting"]
    assert runner._free == 1 and _metric(runner, "worker_busy_slots") == 0
    gate.set()


def test_a_task_waiting_for_a_slot_past_its_timeout_is_failed_and_never_started():
    gate, clock, client, started = threading.Event(), FakeClock(), FakeClient(), []
    runner = _runner(lambda name="": started.append(name) or gate.wait(WAIT), client, slots=1, clock=clock)
    runner._accept(_raw("first", inputData={"name": "first"}))
    runner._accept(_raw("second", inputData={"name": "second"}, responseTimeoutSeconds=5))
    clock.now += 5
    assert runner.expire_overdue() == ["second"]
    reported = client.wait_for("accepted", 1)[0]
    assert reported["taskId"] == "second" and "for a free slot" in reported["reasonForIncompletion"]
    gate.set()
    client.wait_for("accepted", 2)
    _wait_idle(runner)
    assert started == ["first"] and runner.hung == 0 and runner._free == 1


# -- timeouts -------------------------------------------------------------------------------------


def test_a_sync_task_past_its_response_timeout_is_failed_its_slot_freed_and_its_late_result_dropped():
    gate, clock, client = threading.Event(), FakeClock(), FakeClient()
    runner = _runner(lambda: gate.wait(WAIT) and {"late": True}, client, clock=clock)
    runner._accept(_raw(responseTimeoutSeconds=30))
    clock.now += 29
    assert runner.expire_overdue() == []
    clock.now += 1
    assert runner.expire_overdue() == ["t1"]
    failed = client.wait_for("accepted", 1)[0]
    assert failed["status"] == "FAILED" and "responseTimeoutSeconds (30 s)" in failed["reasonForIncompletion"]
    with runner._cond:
        assert runner._cond.wait_for(lambda: runner.busy == 0, WAIT)
    assert runner.hung == 1 and _metric(runner, "worker_hung_tasks") == 1
    assert _metric(runner, "task_execution_timeout_total") == 1
    gate.set()  # the function finally returns: its result is not reported a second time
    with runner._cond:
        assert runner._cond.wait_for(lambda: runner.hung == 0, WAIT)
    assert len(client.attempts) == 1 and _metric(runner, "worker_hung_tasks") == 0


def test_the_per_task_execution_timeout_applies_when_shorter():
    gate, clock, client = threading.Event(), FakeClock(), FakeClient()
    runner = _runner(lambda: gate.wait(WAIT), client, clock=clock, execution_timeout=5)
    runner._accept(_raw(responseTimeoutSeconds=600))
    clock.now += 5
    assert runner.expire_overdue() == ["t1"]
    assert "execution_timeout (5 s)" in client.wait_for("accepted", 1)[0]["reasonForIncompletion"]
    gate.set()


def test_an_async_task_past_its_timeout_is_cancelled_not_hung():
    clock, client, cancelled = FakeClock(), FakeClient(), threading.Event()

    async def forever():
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    runner = _runner(forever, client, clock=clock)
    runner._accept(_raw(responseTimeoutSeconds=10))
    with runner._cond:
        assert runner._cond.wait_for(lambda: runner._held["t1"].cancel is not None, WAIT)
    clock.now += 10
    assert runner.expire_overdue() == ["t1"]
    assert client.wait_for("accepted", 1)[0]["status"] == "FAILED"
    assert cancelled.wait(WAIT)
    assert runner.hung == 0 and len(client.attempts) == 1
    runner.async_loop.close()


def test_healthz_fails_when_hung_functions_fill_the_slots():
    gate, clock = threading.Event(), FakeClock()
    client = FakeClient(polls=[[_raw(responseTimeoutSeconds=5)]])
    handler = TaskHandler([WorkerSpec("work", lambda: gate.wait(WAIT))], client=client, clock=clock)
    runner = handler.runners[0]
    with handler:
        with runner._cond:
            assert runner._cond.wait_for(lambda: runner._held, WAIT)
        assert handler._alive()[0]
        clock.now += 5
        runner.expire_overdue()
        client.wait_for("accepted", 1)
        ok, detail = handler._alive()
        assert not ok and detail["hung"] == {"work": 1} and "hung" in detail["problems"]["work"]
        gate.set()
        with runner._cond:
            assert runner._cond.wait_for(lambda: runner.hung == 0, WAIT)
        assert handler._alive()[0]


def test_healthz_fails_when_an_async_function_blocks_the_event_loop():
    clock, release, blocking = FakeClock(), threading.Event(), threading.Event()

    async def blocks_the_loop():
        blocking.set()
        release.wait(WAIT)  # a sync wait inside async def: every other async task stalls
        return {}

    client = FakeClient(polls=[[_raw(responseTimeoutSeconds=3600)]])
    handler = TaskHandler([WorkerSpec("work", blocks_the_loop)], client=client, clock=clock)
    with handler:
        assert blocking.wait(WAIT)
        assert handler._alive()[0]
        clock.now += 120
        ok, detail = handler._alive()
        assert not ok and detail["problems"]["async-workers"] == "event loop blocked for 120s"
        release.set()
        client.wait_for("accepted", 1)
        handler.async_loop.beat()
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0), handler.async_loop.loop).result(WAIT)  # after the beat
        runner = handler.runners[0]
        with client._cond:  # the poll loop, too, beats again after the clock's jump
            assert client._cond.wait_for(lambda: runner.poller.heartbeat == clock.now, WAIT)
        assert handler.async_loop.last_beat == clock.now and handler._alive()[0]


# -- poll loop ------------------------------------------------------------------------------------


def test_a_poll_loop_that_dies_makes_healthz_fail():
    client = FakeClient(polls=[KeyboardInterrupt()])
    handler = TaskHandler([WorkerSpec("work", lambda: {})], client=client)
    handler.start()
    try:
        handler.runners[0].poller.thread.join(WAIT)
        ok, detail = handler._alive()
        assert not ok and "poll loop died: KeyboardInterrupt" in detail["problems"]["work"]
        assert handler.metrics.registry.get_sample_value(
            "thread_uncaught_exceptions_total", {"exception": "KeyboardInterrupt"}
        )
    finally:
        handler.stop(grace=0)


def test_an_error_of_the_client_itself_is_counted_by_name_not_as_a_connection_error():
    client = FakeClient(polls=[TypeError("bug in a client")])
    handler = TaskHandler([WorkerSpec("work", lambda: {})], client=client)
    with handler:
        with client._cond:
            assert client._cond.wait_for(lambda: len(client.asked) >= 2, WAIT)  # the loop goes on
        errors = handler.metrics.registry.get_sample_value
        assert errors("task_poll_error_total", {"taskType": "work", "exception": "TypeError"}) == 1
        assert errors("task_poll_error_total", {"taskType": "work", "exception": "ConnectionError"}) is None
        assert handler._alive()[0]


# -- drain ----------------------------------------------------------------------------------------


def test_at_the_drain_deadline_a_computed_result_is_reported_with_it_and_nothing_twice():
    gate, client = threading.Event(), FakeClient()
    client.update_failures.extend([ConductorError("HTTP 503", 503)] * 3)
    runner = _runner(lambda x=0: {"done": x} if x else gate.wait(WAIT), client, slots=2)
    runner.update_backoff = Backoff(base=WAIT * 10, cap=WAIT * 10)  # the retry waits until the drain
    runner._accept(_raw("computed", inputData={"x": 7}))
    runner._accept(_raw("running"))
    client.wait_for("attempts", 1)  # the computed result's first update failed; it waits to retry
    client.update_failures.clear()
    assert runner.abort() == ["running"]
    by_task = {a["taskId"]: a for a in client.accepted}
    assert by_task["computed"]["status"] == "COMPLETED" and by_task["computed"]["outputData"] == {"done": 7}
    assert by_task["running"]["status"] == "FAILED"
    assert "drain timeout" in by_task["running"]["reasonForIncompletion"]
    gate.set()  # the running function returns after the deadline: not reported again
    with runner._cond:
        assert runner._cond.wait_for(lambda: not runner._held, WAIT)
    assert sorted(a["taskId"] for a in client.accepted) == ["computed", "running"]
    assert runner._free == 2 and _metric(runner, "active_workers") == 0


# -- async ----------------------------------------------------------------------------------------


def test_async_workers_run_as_tasks_on_the_event_loop_not_one_thread_each():
    client, started = FakeClient(), threading.Semaphore(0)
    gate_holder: dict[str, asyncio.Event] = {}
    threads: set[str] = set()

    async def wait_for_gate():
        threads.add(threading.current_thread().name)
        started.release()
        await gate_holder["gate"].wait()
        return {"ok": True}

    runner = _runner(wait_for_gate, client, slots=30)
    gate_holder["gate"] = asyncio.run_coroutine_threadsafe(_make_event(), runner.async_loop.loop).result()
    before = threading.active_count()
    for i in range(30):
        runner._accept(_raw(f"t{i}"))
    for _ in range(30):
        assert started.acquire(timeout=WAIT)
    assert threading.active_count() - before < 5  # 30 tasks running, no thread each
    assert threads == {"async-workers"}
    runner.async_loop.loop.call_soon_threadsafe(gate_holder["gate"].set)
    assert len(client.wait_for("accepted", 30)) == 30
    runner.async_loop.close()


async def _make_event() -> asyncio.Event:
    return asyncio.Event()


def test_a_callable_with_an_async_call_is_an_async_worker():
    class Doubler:
        async def __call__(self, x: int) -> dict:
            await asyncio.sleep(0)
            return {"y": 2 * x}

    class SyncDoubler:
        def __call__(self, x: int) -> dict:
            return {"y": 2 * x}

    async def plain(x: int) -> int:
        return x

    assert is_async_callable(Doubler()) and is_async_callable(plain) and is_async_callable(functools.partial(plain))
    assert not is_async_callable(SyncDoubler()) and not is_async_callable(lambda: None)
    client = FakeClient()
    runner = _runner(Doubler(), client)
    runner._accept(_raw(inputData={"x": 21}))
    assert client.wait_for("accepted", 1)[0]["outputData"] == {"y": 42}
    runner.async_loop.close()
