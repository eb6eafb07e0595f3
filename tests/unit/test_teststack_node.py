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
