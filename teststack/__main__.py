"""`scripts/stack.sh up|down|status|env` — bring the local stack up, tear it down, inspect it."""

from __future__ import annotations

import argparse
import sys

from teststack import conductor, kube, nodeagent, procs
from teststack.config import load


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/stack.sh", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start Conductor and the Kubernetes control plane")
    up.add_argument("--memory", action="store_true", help="Conductor in memory instead of on redis-server")
    up.add_argument("--only", choices=["conductor", "kube"], help="start just one part")
    up.add_argument("--no-agent", action="store_true", help="do not run the local node agent (Pods stay Pending)")
    sub.add_parser("down", help="stop every process the stack started")
    sub.add_parser("status", help="say what is running")
    sub.add_parser("env", help="print shell exports for kubectl, helm and the Conductor URL")
    args = parser.parse_args(argv)
    cfg = load()

    try:
        if args.command == "up":
            if args.only in (None, "conductor"):
                conductor.start(cfg, redis=not args.memory)
                print(f"conductor: {cfg.conductor_url}", file=sys.stderr)
            if args.only in (None, "kube"):
                kubeconfig = kube.start(cfg)
                print(f"kube-apiserver: {cfg.apiserver_url} (KUBECONFIG={kubeconfig})", file=sys.stderr)
                if not args.no_agent:
                    nodeagent.start_background(cfg)
                    print(f"node agent: pods run as local processes, logs in {cfg.run_dir / 'pods'}", file=sys.stderr)
        elif args.command == "down":
            nodeagent.stop_background(cfg)
            kube.stop(cfg)
            conductor.stop(cfg)
        elif args.command == "status":
            print(f"conductor        {'up' if conductor.healthy(cfg) else 'down'}  {cfg.conductor_url}")
            print(f"kube-apiserver   {'up' if kube.healthy(cfg) else 'down'}  {cfg.apiserver_url}")
            kcm = procs.running_pid(cfg.run_dir, kube.CONTROLLER_MANAGER)
            print(f"controller-mgr   {'up' if kcm else 'down'}")
            agent = procs.running_pid(cfg.run_dir, nodeagent.AGENT)
            print(f"node agent       {'up' if agent else 'down'}")
        elif args.command == "env":
            print(f"export KUBECONFIG={cfg.kubeconfig}")
            print(f"export PATH={cfg.tools_bin}:$PATH")
            print(f"export CONDUCTOR_SERVER_URL={cfg.conductor_url}")
    except procs.StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
