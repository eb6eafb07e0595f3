"""`scripts/stack.sh up` starts a real node; `down` leaves the machine as it found it; twice in a row.

Runs last (it takes the whole stack down): what the host looks like with no stack is recorded, then two
up/down cycles each end in exactly that state: no process, mount, network link or namespace, iptables
rule or chain, route, cgroup or kubelet host path of the stack is left, and the sysctls are restored.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from teststack import conductor, images, node
from teststack.config import REPO_ROOT, StackConfig

pytestmark = [pytest.mark.kube, pytest.mark.conductor, pytest.mark.runs_last]

STACK = ["bash", str(REPO_ROOT / "scripts" / "stack.sh")]


def _processes(cfg: StackConfig) -> set[str]:
    """Processes of the stack: those whose command line names its binaries, its Conductor or its run
    directory (containerd, its shims, the kubelet, the control plane, redis-server's title), and any
    process in a pod's cgroup."""
    markers = (str(cfg.run_dir), str(cfg.k8s_bin), str(cfg.conductor_jar), f"127.0.0.1:{conductor.redis_port(cfg)}")
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            cgroup = (entry / "cgroup").read_text()
        except OSError:
            continue
        if any(m in cmdline for m in markers) or "kubepods" in cgroup:
            found.add(cmdline[:200])
    return found


def _run(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=False).stdout


def _iptables(binary: str) -> list[str]:
    out = _run(f"{binary}-save")
    # counters and the header/footer comments change on their own; rules and chains must not
    return sorted(re.sub(r"\[\d+:\d+\]", "", line) for line in out.splitlines() if not line.startswith("#"))


def host_state(cfg: StackConfig) -> dict[str, object]:
    mounts = sorted(line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines())
    return {
        "processes": sorted(_processes(cfg)),
        "mounts": mounts,
        "links": sorted(re.findall(r"^\d+: ([^:@]+)", _run("ip", "-o", "link"), flags=re.M)),
        "routes": sorted(_run("ip", "-4", "route", "show").splitlines()),
        "netns": sorted(_run("ip", "netns", "list").split()),
        "iptables": _iptables("iptables"),
        "ip6tables": _iptables("ip6tables"),
        "cgroups": sorted(str(p) for p in Path("/sys/fs/cgroup").glob("*/kubepods*")),
        "host paths": [str(p) for p in node.HOST_PATHS if p.exists()],
        "ip_forward": Path("/proc/sys/net/ipv4/ip_forward").read_text().strip(),
    }


# What only others can have taken away while the test ran (another program's process or mount);
# everything else must match both ways: the stack neither leaves nor removes anything.
_OTHERS_MAY_REMOVE = ("processes", "mounts")


def _diff(before: dict[str, object], after: dict[str, object]) -> dict[str, dict[str, list]]:
    changes = {}
    for key in before:
        b, a = before[key], after[key]
        if isinstance(b, list):
            left, gone = sorted(set(a) - set(b)), sorted(set(b) - set(a))
            if key in _OTHERS_MAY_REMOVE:
                gone = []
        else:
            left, gone = ([a], [b]) if a != b else ([], [])
        if left or gone:
            changes[key] = {"left": left, "gone": gone}
    return changes


def _stack(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    started = time.monotonic()
    proc = subprocess.run([*STACK, *args], capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, f"stack.sh {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    last = (proc.stderr.strip().splitlines() or [""])[-1]
    print(f"stack.sh {' '.join(args)}: {time.monotonic() - started:.1f} s; {last}")  # shown by pytest -rP
    return proc


def _stranger_in_kubepods() -> tuple[subprocess.Popen, Path]:
    """A process in a pod cgroup of the kubepods hierarchy that no pod of the stack owns (as another
    kubelet of the host would have it)."""
    top = next(p for p in sorted(Path("/sys/fs/cgroup").glob("*/kubepods")) if (p / "cgroup.procs").exists())
    cgroup = top / "besteffort" / f"pod{uuid.uuid4()}"
    cgroup.mkdir(parents=True)
    process = subprocess.Popen(["sleep", "600"])
    (cgroup / "cgroup.procs").write_text(str(process.pid))
    return process, cgroup


def _remove_stranger(process: subprocess.Popen, cgroup: Path) -> None:
    process.kill()
    process.wait(10)
    for path in (cgroup, cgroup.parent, cgroup.parent.parent):  # and the kubepods dirs the stack made
        with contextlib.suppress(OSError):
            path.rmdir()


def test_up_down_twice_leaves_the_host_as_it_was(stack: StackConfig, kubectl) -> None:
    _stack("down")
    baseline = host_state(stack)
    for cycle in (1, 2):
        _stack("up")
        wide = kubectl("get", "nodes", "-o", "wide").stdout
        row = next(line for line in wide.splitlines() if line.startswith("cwo-node"))
        assert " Ready " in row and "containerd://" in row and "v1.34.4" in row, wide
        pods = kubectl("get", "pods", "-A", "-o", "json").stdout
        assert json.loads(pods)["items"] == [], "a fresh stack runs no pod"
        # a real container runs to completion on it (and leaves a sandbox, a veth and mounts to clean up)
        kubectl("run", "probe", "--image", images.RUNTIME_IMAGE, "--image-pull-policy=Never", "--restart=Never",
                "--", "--help")  # fmt: skip
        kubectl("wait", "pod/probe", "--for=jsonpath={.status.phase}=Succeeded", "--timeout=90s")
        assert "conductor-worker" in kubectl("logs", "probe").stdout
        assert _processes(stack), "the stack's processes are seen (the check itself works)"
        stranger = _stranger_in_kubepods() if cycle == 1 else None
        _stack("down")
        if stranger is not None:  # another kubelet's pod on the same host: down leaves it alone
            process, cgroup = stranger
            assert process.poll() is None, "down killed a process of a pod that is not the stack's"
            assert cgroup.is_dir(), "down removed a pod cgroup that is not the stack's"
            _remove_stranger(process, cgroup)
        changes = _diff(baseline, host_state(stack))
        assert changes == {}, f"cycle {cycle}: the stack left behind {json.dumps(changes, indent=1)}"
