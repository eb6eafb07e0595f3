"""`scripts/stack.sh load IMAGE|ARCHIVE`: put a user's image into the node's containerd (as `kind load`).

Why: the node pulls from no registry (none is reachable), so an image a user built must be imported into
containerd's k8s.io namespace before a pod can run it. An IMAGE is looked up in the user's own podman
storage, then the stack's, then docker's; an ARCHIVE is a docker-archive or oci-archive tar file.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from teststack import images, node, procs
from teststack.config import StackConfig


def _repository(ref: str) -> str:
    """The name without its tag ("localhost/w:1" -> "localhost/w"; a registry port is not a tag)."""
    head, sep, tail = ref.rpartition(":")
    return head if sep and "/" not in tail else ref


def _save(cfg: StackConfig, image: str, archive: Path) -> str:
    """Save `image` from the first storage that has it; returns where it was found."""
    tried = []
    podman = shutil.which("podman")
    stack = images.Podman(cfg)
    candidates = []
    if podman:
        user_env = {k: v for k, v in os.environ.items() if k not in ("CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF")}
        candidates += [("podman", [podman], user_env), ("the stack's podman", [podman], stack.env)]
    if shutil.which("docker"):
        candidates.append(("docker", ["docker"], dict(os.environ)))
    for where, cmd, env in candidates:
        fmt = ["--format", "oci-archive"] if cmd[0] != "docker" else []
        proc = subprocess.run(
            [*cmd, "save", *fmt, "-o", str(archive), image], env=env, capture_output=True, text=True, check=False
        )
        if proc.returncode == 0:
            return where
        tried.append(f"{where}: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}")
    raise procs.StackError(
        f"no image {image!r} found ({'; '.join(tried) or 'neither podman nor docker is installed'}); "
        "build it first (`podman build -t NAME .`) or give a docker-archive or oci-archive file"
    )


def load(cfg: StackConfig, what: str, name: str | None = None) -> list[str]:
    """Import an image (by reference) or an archive (by path) into the node; returns the names it has
    there, which pods must use verbatim (with imagePullPolicy Never or IfNotPresent)."""
    if not node.healthy(cfg):
        raise procs.StackError("the node is down: `bash scripts/stack.sh up` first")
    with tempfile.TemporaryDirectory(prefix="cwo-load-") as tmp:
        path = Path(what)
        if path.is_file():
            archive = path
        else:
            archive = Path(tmp) / "image.tar"
            _save(cfg, what, archive)
            name = name or what
        base = ["--base-name", _repository(name)] if name else []
        proc = subprocess.run(
            [*node.ctr(cfg), "images", "import", *base, "--digests", str(archive)],
            capture_output=True,
            text=True,
            check=False,
        )
    if proc.returncode != 0:
        raise procs.StackError(f"containerd refused {what}: {proc.stderr.strip()}")
    found = re.findall(r"unpacking (\S+) \(", proc.stdout + proc.stderr)
    names = [n for n in dict.fromkeys(found) if "@" not in n and not n.startswith(("import-", "sha256:"))]
    if not names:
        raise procs.StackError(f"{what} holds no named image: pass --name NAME:TAG")
    return names
