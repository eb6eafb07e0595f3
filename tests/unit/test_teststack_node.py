"""The node's start-up checks fail at once with what to do (never a hang or a kubelet log to dig in)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from teststack import node, procs

ROOT = 0


def _cgroups(tmp_path: Path, controllers: tuple[str, ...]) -> Path:
    root = tmp_path / "cgroup"
    for ctl in controllers:
        (root / ctl).mkdir(parents=True)
    return root


def _filesystems(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "filesystems"
    path.write_text(text)
    return path


def test_a_port_in_use_is_named(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(procs.StackError, match=rf"port {port} \(the kubelet's\) is in use"):
            node.check_host(
                (port,), _cgroups(tmp_path, ("memory", "cpu", "pids")), _filesystems(tmp_path, "overlay"), ROOT
            )


def test_a_missing_cgroup_controller_is_named(tmp_path: Path) -> None:
    with pytest.raises(procs.StackError, match="lacks the pids cgroup controller"):
        node.check_host((), _cgroups(tmp_path, ("memory", "cpu")), _filesystems(tmp_path, "nodev\toverlay\n"), ROOT)


def test_missing_overlayfs_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(procs.StackError, match="modprobe overlay"):
        node.check_host(
            (), _cgroups(tmp_path, ("memory", "cpu", "pids")), _filesystems(tmp_path, "nodev\ttmpfs\n"), ROOT
        )


def test_a_fit_host_passes(tmp_path: Path) -> None:
    node.check_host((), _cgroups(tmp_path, ("memory", "cpu", "pids")), _filesystems(tmp_path, "nodev\toverlay\n"), ROOT)


def test_not_root_is_refused_first(tmp_path: Path) -> None:
    with pytest.raises(procs.StackError, match="needs root"):
        node.check_host((), _cgroups(tmp_path, ("memory", "cpu", "pids")), _filesystems(tmp_path, "overlay"), 1000)


def test_host_routes_that_overlap_the_stack_ranges_are_named_with_the_variable_that_moves_them():
    from teststack.netsetup import clashes

    ranges = {"CWO_POD_CIDR": "10.89.0.0/16", "CWO_SERVICE_CIDR": "10.0.0.0/24"}
    host = [
        "default via 10.0.0.1 dev eth0",  # the default route overlaps everything: no clash
        "10.0.0.0/16 dev eth0 proto kernel scope link src 10.0.0.12",  # an AWS VPC: DNS at 10.0.0.2
        "192.168.1.0/24 dev wlan0 proto kernel scope link",
        "10.89.3.0/24 via 192.168.1.1 dev wlan0",  # a VPN route inside the pod range
        "10.89.0.0/16 dev cwo0 proto kernel scope link src 10.89.0.1",  # the stack's own
        "10.0.0.0/24 dev cwo0 scope link",
    ]
    found = clashes(host, ranges, "cwo0")
    assert found == [
        "10.0.0.0/24 (CWO_SERVICE_CIDR) overlaps the host's route 10.0.0.0/16 via eth0: set CWO_SERVICE_CIDR to a free range",
        "10.89.0.0/16 (CWO_POD_CIDR) overlaps the host's route 10.89.3.0/24 via wlan0: set CWO_POD_CIDR to a free range",
    ]
    assert clashes(["default via 192.0.2.1 dev eth0", "192.0.2.0/24 dev eth0"], ranges, "cwo0") == []


def test_a_task_bundle_names_its_network_namespace_and_cgroup():
    from teststack.node import bundle_resources

    sandbox = {
        "linux": {
            "namespaces": [{"type": "pid"}, {"type": "network", "path": "/var/run/netns/cni-1c5e"}],
            "cgroupsPath": "/kubepods/besteffort/podaecc/a520",
        }
    }
    assert bundle_resources(sandbox) == ("/var/run/netns/cni-1c5e", "/kubepods/besteffort/podaecc/a520")
    # a container joins its sandbox's namespace through /proc: not a namespace of its own to remove
    joined = {
        "linux": {"namespaces": [{"type": "network", "path": "/proc/14053/ns/net"}], "cgroupsPath": "/kubepods/x"}
    }
    assert bundle_resources(joined) == (None, "/kubepods/x")
    assert bundle_resources({}) == (None, None)
