"""The worker container's processes, as the sidecar sees them in the pod's shared PID namespace.

Why: a worker that crashes or is OOM-killed says nothing; its tasks would stay invisible until their
response timeout. With `shareProcessNamespace`, every container's first process has parent 0 (its parent
lives outside the namespace) and the pause process is PID 1. The sidecar calls every such process except
itself "the worker"; when one of them is gone, the tasks taken while it was alive are handed back.
Without a shared namespace the sidecar is PID 1 and sees no one: crash recovery is off.
"""

from __future__ import annotations

import os
from collections.abc import Iterable


def parse_stat(text: str) -> tuple[int, int, int] | None:
    """(pid, ppid, start time in clock ticks) from /proc/<pid>/stat; the command may hold spaces or ')'."""
    close = text.rfind(")")
    if close < 0:
        return None
    head, rest = text[:close], text[close + 2 :].split()
    try:
        return int(head.split(" (", 1)[0]), int(rest[1]), int(rest[19])
    except (IndexError, ValueError):
        return None


def top_level(stats: Iterable[tuple[int, int, int]], own_pid: int) -> frozenset[int]:
    """Keys (pid * 2**32 + start) of the other containers' first processes: a reused PID is a new key."""
    return frozenset(pid << 32 | start for pid, ppid, start in stats if ppid == 0 and pid not in (1, own_pid))


class ProcessWatch:
    """Reads /proc; `enabled` is False when the PID namespace is not shared.

    Called on every poll that brought tasks, so it reads the stat file of new PIDs only (and again of
    the few top-level ones, whose start time tells a reused PID apart): a listing per call, not a read
    per process."""

    def __init__(self, proc: str = "/proc", own_pid: int | None = None) -> None:
        self.proc = proc
        self.own_pid = os.getpid() if own_pid is None else own_pid
        self.enabled = self.own_pid != 1
        self._known: dict[str, tuple[int, int, int] | None] = {}  # pid -> parsed stat (None: unreadable)

    def _stat(self, name: str) -> tuple[int, int, int] | None:
        try:
            with open(f"{self.proc}/{name}/stat") as fh:
                return parse_stat(fh.read())
        except OSError:  # exited while we looked
            return None

    def alive(self) -> frozenset[int]:
        if not self.enabled:
            return frozenset()
        names = {n for n in os.listdir(self.proc) if n.isdigit()}
        known = {n: v for n, v in self._known.items() if n in names}
        for name in names:
            if name not in known or (known[name] is not None and known[name][1] == 0):
                known[name] = self._stat(name)
        self._known = known
        return top_level((v for v in known.values() if v is not None), self.own_pid)


def node_addresses(route_table: str, host_ips: Iterable[str]) -> frozenset[str]:
    """Where the kubelet's lifecycle hooks come from: the node's IPs and the pod's default gateway (the
    node's address on a bridge network), read from /proc/net/route's little-endian hex."""
    found = {ip for ip in host_ips if ip}
    for line in route_table.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 2 and fields[1] == "00000000" and fields[2] != "00000000":
            raw = bytes.fromhex(fields[2])[::-1]
            found.add(".".join(str(b) for b in raw))
    return frozenset(found)
