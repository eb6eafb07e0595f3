"""teststack.procs: a stopped component counts as gone when it has exited, even when another process is
its parent and has not reaped it yet (the pytest session started the stack, `stack.sh down` stops it)."""

from __future__ import annotations

import subprocess
import sys
import time

from teststack import procs

# A parent that starts a child, never waits for it, and outlives it: the child stays a zombie.
PARENT = "import subprocess, sys, time; c = subprocess.Popen(['sleep', '0.1']); print(c.pid, flush=True); time.sleep(5)"


def test_an_exited_child_of_another_process_is_not_alive_and_a_running_one_is():
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        assert procs._alive(child)  # still sleeping
        time.sleep(0.5)
        assert procs._zombie(child), "the child exited and its parent has not reaped it"
        assert not procs._alive(child)
        assert procs._alive(parent.pid) and not procs._zombie(parent.pid)
    finally:
        parent.kill()
        parent.wait()
