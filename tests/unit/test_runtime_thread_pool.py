"""GrowingThreadPool: threads are reused, and a hung function never delays the next one."""

from __future__ import annotations

import threading

from worker_runtime.thread_pool import GrowingThreadPool

WAIT = 10.0


def test_sequential_work_reuses_one_thread():
    pool, names, done = GrowingThreadPool("t"), [], threading.Semaphore(0)

    def work() -> None:
        names.append(threading.current_thread().name)
        done.release()

    for _ in range(20):
        pool.submit(work)
        assert done.acquire(timeout=WAIT)
        assert pool.wait_idle(1, WAIT)  # the thread counts itself idle just after the function returns
    assert pool.started == 1 and len(set(names)) == 1


def test_a_hung_function_does_not_hold_up_the_next_one():
    pool, gate, ran = GrowingThreadPool("t"), threading.Event(), threading.Event()
    pool.submit(gate.wait, WAIT)
    pool.submit(ran.set)
    assert ran.wait(WAIT)
    assert pool.started == 2
    gate.set()


def test_an_exception_does_not_kill_the_thread():
    pool, ran = GrowingThreadPool("t"), threading.Event()

    def boom() -> None:
        raise SystemExit(1)

    pool.submit(boom)
    pool.submit(ran.set)
    assert ran.wait(WAIT)
