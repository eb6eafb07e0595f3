"""Versions, cache paths and loopback ports of the local stack (one place for all of them)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def _versions() -> dict[str, str]:
    """Read scripts/versions.env, shared with the shell scripts that download and build."""
    values: dict[str, str] = {}
    for line in (REPO_ROOT / "scripts" / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


@dataclass(frozen=True)
class StackConfig:
    cache: Path
    k8s_version: str
    conductor_version: str
    tools_version: str
    conductor_port: int
    etcd_port: int
    apiserver_port: int

    @property
    def run_dir(self) -> Path:
        """Pid files, logs, certificates and data of the running stack."""
        return self.cache / "run"

    @property
    def k8s_bin(self) -> Path:
        return self.cache / f"k8s-{self.k8s_version}" / "bin"

    @property
    def tools_bin(self) -> Path:
        return self.cache / f"tools-{self.tools_version}" / "bin"

    @property
    def conductor_jar(self) -> Path:
        v = self.conductor_version
        return self.cache / f"conductor-{v}" / f"conductor-server-{v}-boot.jar"

    @property
    def conductor_url(self) -> str:
        """The Conductor API base, ending in /api, as the runtime and the CRD expect it."""
        return f"http://127.0.0.1:{self.conductor_port}/api"

    @property
    def pod_conductor_url(self) -> str:
        """The Conductor API base as Pods reach it: the bridge's address, DNATed to the loopback server."""
        from teststack.netsetup import BRIDGE_IP

        return f"http://{BRIDGE_IP}:{self.conductor_port}/api"

    @property
    def apiserver_url(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def kubeconfig(self) -> Path:
        return self.run_dir / "kubeconfig"

    @property
    def kubectl(self) -> Path:
        return self.tools_bin / "kubectl"

    @property
    def helm(self) -> Path:
        return self.tools_bin / "helm"


def load() -> StackConfig:
    versions = _versions()
    cache = Path(
        os.environ.get("CWO_CACHE")
        or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "conductor-worker-operator"
    )
    return StackConfig(
        cache=cache,
        k8s_version=versions["K8S_VERSION"],
        conductor_version=versions["CONDUCTOR_VERSION"],
        tools_version=versions["KUBECTL_LAYER_VERSION"],
        conductor_port=int(os.environ.get("CWO_CONDUCTOR_PORT", "18080")),
        etcd_port=int(os.environ.get("CWO_ETCD_PORT", "12379")),
        apiserver_port=int(os.environ.get("CWO_APISERVER_PORT", "16443")),
    )
