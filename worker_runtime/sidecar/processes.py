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
    """Reads /proc; `enabled` is False when the PID namespace is not shared."""

    def __init__(self, proc: str = "/proc", own_pid: int | None = None) -> None:
        self.proc = proc
        self.own_pid = os.getpid() if own_pid is None else own_pid
        self.enabled = self.own_pid != 1

    def alive(self) -> frozenset[int]:
        if not self.enabled:
            return frozenset()
        stats = []
        for name in os.listdir(self.proc):
            if not name.isdigit():
                continue
            try:
                with open(f"{self.proc}/{name}/stat") as fh:
                    parsed = parse_stat(fh.read())
            except OSError:  # exited while we looked
                continue
            if parsed is not None:
                stats.append(parsed)
        return top_level(stats, self.own_pid)


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
