"""The node's network: a bridge of the stack's own, CNI on it, and the NAT that lets pods reach the stack.

Pods live on a private subnet of the bridge `cwo0`. Conductor and the API server keep listening on
loopback only; pods reach them at the bridge's address (Conductor) and at the `kubernetes` Service
VIP (the API server, as in-cluster config expects), both DNATed to loopback (`route_localnet` lets a
packet from the bridge be sent to 127.0.0.1). Nothing a pod sends is forwarded off the bridge, and the
Service range routes into the bridge, so no packet of the stack leaves the machine.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shlex
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from teststack import procs

BRIDGE = "cwo0"
# Both ranges must overlap no route of the host (`up` checks, and names the variable that moves them).
POD_CIDR = os.environ.get("CWO_POD_CIDR", "10.89.0.0/16")  # podman's own default bridge uses 10.88.0.0/16
SERVICE_CIDR = os.environ.get("CWO_SERVICE_CIDR", "10.0.0.0/24")
BRIDGE_IP = str(next(ipaddress.ip_network(POD_CIDR).hosts()))
KUBERNETES_VIP = str(next(ipaddress.ip_network(SERVICE_CIDR).hosts()))
RANGES = {"CWO_POD_CIDR": POD_CIDR, "CWO_SERVICE_CIDR": SERVICE_CIDR}
NAT_CHAIN, FORWARD_CHAIN = "CWO-DNAT", "CWO-FORWARD"
# Chains the kubelet creates on its own (and never removes).
KUBELET_CHAINS = {
    "filter": ("KUBE-FIREWALL", "KUBE-KUBELET-CANARY", "KUBE-NODEPORTS"),
    "nat": ("KUBE-KUBELET-CANARY", "KUBE-MARK-DROP", "KUBE-MARK-MASQ", "KUBE-POSTROUTING"),
    "mangle": ("KUBE-IPTABLES-HINT", "KUBE-KUBELET-CANARY"),
}


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise procs.StackError(f"`{' '.join(argv)}` failed: {proc.stderr.strip()}")
    return proc


def require_tools() -> None:
    for tool, package in (("ip", "iproute2"), ("iptables", "iptables"), ("sysctl", "procps")):
        if not shutil.which(tool):
            raise procs.StackError(f"{tool} is missing: run `bash scripts/setup.sh` (apt-get install {package})")
    plugins = Path("/usr/lib/cni")
    for plugin in ("bridge", "host-local", "loopback"):
        if not (plugins / plugin).exists():
            raise procs.StackError(
                f"CNI plugin {plugins / plugin} is missing: apt-get install containernetworking-plugins"
            )


def _sysctl(key: str, value: str | None = None) -> str:
    if value is None:
        return _run("sysctl", "-n", key).stdout.strip()
    _run("sysctl", "-q", "-w", f"{key}={value}")
    return value


def write_cni_config(conf_dir: Path, ipam_dir: Path) -> None:
    """Written before containerd starts (containerd 1.6 misses a config file moved in later)."""
    conf_dir.mkdir(parents=True, exist_ok=True)
    conflist = {
        "cniVersion": "1.0.0",
        "name": "cwo",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_CIDR, "gateway": BRIDGE_IP}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(ipam_dir),
                },
            }
        ],
    }
    (conf_dir / "10-cwo.conflist").write_text(json.dumps(conflist, indent=2))


def clashes(routes: Iterable[str], ranges: dict[str, str] = RANGES, bridge: str = BRIDGE) -> list[str]:
    """The host routes (`ip -4 route show` lines) that overlap the stack's ranges, as messages naming the
    variable that moves the range. Why: a route of the stack's bridge for a range the host already reaches
    elsewhere (a cloud VPC, the VM's own subnet, a VPN) would send that traffic into the bridge. The
    default route overlaps everything and is no clash: a more specific route wins over it."""
    found = []
    for line in routes:
        parts = line.split()
        if not parts or parts[0] == "default" or f"dev {bridge}" in line:
            continue
        try:
            dst = ipaddress.ip_network(parts[0], strict=False)
        except ValueError:
            continue
        dev = parts[parts.index("dev") + 1] if "dev" in parts[:-1] else "?"
        for var, cidr in ranges.items():
            if dst.overlaps(ipaddress.ip_network(cidr)):
                found.append(
                    f"{cidr} ({var}) overlaps the host's route {parts[0]} via {dev}: set {var} to a free range"
                )
    return found


def up(run_dir: Path, conductor_port: int, apiserver_port: int) -> None:
    """The bridge, its routes and the NAT/forward rules; the host's previous settings go to run_dir.
    Nothing of the host's routing is replaced: a range that overlaps a host route stops here."""
    require_tools()
    clash = clashes(_run("ip", "-4", "route", "show").stdout.splitlines())
    if clash:
        raise procs.StackError("the stack's network would take over host routes: " + "; ".join(clash))
    saved = run_dir / "sysctl.before.json"
    if not saved.exists():
        saved.write_text(json.dumps({"net.ipv4.ip_forward": _sysctl("net.ipv4.ip_forward")}))
    if _run("ip", "link", "show", BRIDGE, check=False).returncode != 0:
        _run("ip", "link", "add", BRIDGE, "type", "bridge")
    if BRIDGE_IP not in _run("ip", "-4", "addr", "show", BRIDGE).stdout:
        _run("ip", "addr", "add", f"{BRIDGE_IP}/16", "dev", BRIDGE)
    _run("ip", "link", "set", BRIDGE, "up")
    if SERVICE_CIDR not in _run("ip", "-4", "route", "show", "dev", BRIDGE).stdout:
        _run("ip", "route", "add", SERVICE_CIDR, "dev", BRIDGE)  # removed with the bridge on down
    _sysctl(f"net.ipv4.conf.{BRIDGE}.route_localnet", "1")
    _sysctl("net.ipv4.ip_forward", "1")  # the bridge plugin's gateway mode needs it; restored on down
    _flush_rules()
    _run("iptables", "-t", "nat", "-N", NAT_CHAIN)
    for dst, port, target in (
        (KUBERNETES_VIP, 443, f"127.0.0.1:{apiserver_port}"),
        (BRIDGE_IP, conductor_port, f"127.0.0.1:{conductor_port}"),
    ):
        _run("iptables", "-t", "nat", "-A", NAT_CHAIN, "-d", f"{dst}/32", "-p", "tcp", "--dport", str(port),
             "-j", "DNAT", "--to-destination", target)  # fmt: skip
    _run("iptables", "-t", "nat", "-I", "PREROUTING", "-i", BRIDGE, "-j", NAT_CHAIN)
    _run("iptables", "-t", "nat", "-I", "OUTPUT", "-j", NAT_CHAIN)
    _run("iptables", "-N", FORWARD_CHAIN)
    _run("iptables", "-A", FORWARD_CHAIN, "-i", BRIDGE, "-o", BRIDGE, "-j", "ACCEPT")
    _run("iptables", "-A", FORWARD_CHAIN, "-i", BRIDGE, "-j", "DROP")
    _run("iptables", "-A", FORWARD_CHAIN, "-o", BRIDGE, "-j", "DROP")
    _run("iptables", "-I", "FORWARD", "-j", FORWARD_CHAIN)


_BUILTIN = {
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
}


def _remove_chains(binary: str, table: str, chains: tuple[str, ...]) -> None:
    """Unhook the chains from the built-in ones, then flush and delete them (absent ones are fine)."""
    for hook in _BUILTIN[table]:
        for rule in _run(binary, "-t", table, "-S", hook, check=False).stdout.splitlines():
            if rule.startswith(f"-A {hook} ") and any(rule.endswith(f"-j {c}") or f"-j {c} " in rule for c in chains):
                _run(binary, "-t", table, "-D", *shlex.split(rule)[1:], check=False)
    for action in ("-F", "-X"):
        for chain in chains:
            _run(binary, "-t", table, action, chain, check=False)


def _flush_rules() -> None:
    _remove_chains("iptables", "nat", (NAT_CHAIN,))
    _remove_chains("iptables", "filter", (FORWARD_CHAIN,))


def down(run_dir: Path) -> None:
    """Undo up() and what the kubelet and the bridge plugin added: rules, chains, bridge, sysctls."""
    _flush_rules()
    for binary in ("iptables", "ip6tables"):
        if shutil.which(binary):
            for table, chains in KUBELET_CHAINS.items():
                _remove_chains(binary, table, chains)
    if _run("ip", "link", "show", BRIDGE, check=False).returncode == 0:
        _run("ip", "link", "delete", BRIDGE, check=False)
    saved = run_dir / "sysctl.before.json"
    if saved.exists():
        for key, value in json.loads(saved.read_text()).items():
            _sysctl(key, value)
        saved.unlink()
