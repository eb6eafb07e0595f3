"""Start, find and stop the stack's background processes by pid file."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


class StackError(RuntimeError):
    """A component could not be started; the message says how to get it."""


def pid_file(run_dir: Path, name: str) -> Path:
    return run_dir / f"{name}.pid"


def log_file(run_dir: Path, name: str) -> Path:
    return run_dir / f"{name}.log"


def running_pid(run_dir: Path, name: str) -> int | None:
    path = pid_file(run_dir, name)
    try:
        pid = int(path.read_text().strip())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None
    return pid


def start(run_dir: Path, name: str, argv: list[str], env: dict[str, str] | None = None) -> int:
    """Start argv in its own session (so stop() can signal its whole group), logging to run_dir."""
    run_dir.mkdir(parents=True, exist_ok=True)
    log = log_file(run_dir, name).open("ab")
    proc = subprocess.Popen(
        argv,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    pid_file(run_dir, name).write_text(str(proc.pid))
    return proc.pid


def wait_until(name: str, ready: Callable[[], bool], timeout: float, run_dir: Path, pid: int | None = None) -> None:
    """Poll ready() until it holds; fail with the tail of the component's log if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if ready():
                return
        if pid is not None and not _alive(pid):
            break
        time.sleep(0.3)
    tail = ""
    with contextlib.suppress(FileNotFoundError):
        tail = "\n".join(log_file(run_dir, name).read_text(errors="replace").splitlines()[-25:])
    raise StackError(f"{name} did not become ready within {timeout:.0f}s; last log lines:\n{tail}")


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        waited = 0
    if waited == pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """Exited but not reaped: its parent is another process (e.g. the pytest session that started the
    stack, while `stack.sh down` runs apart), which only reaps it later. Without this check every stop
    waited its whole grace period for a process already gone: 62 s for a `down` after the suite."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2 :].startswith("Z")


def stop(run_dir: Path, name: str, grace: float = 10.0, sig: int = signal.SIGTERM) -> bool:
    """Signal the component's process group (SIGTERM by default), SIGKILL after the grace period."""
    pid = running_pid(run_dir, name)
    pid_file(run_dir, name).unlink(missing_ok=True)
    if pid is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    return True


def port_in_use(host: str, port: int) -> bool:
    """True when something accepts connections on host:port (a clear error beats a bind failure in a log)."""
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0
