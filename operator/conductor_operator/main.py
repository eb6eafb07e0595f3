"""`conductor-operator`: run the kopf operator (namespaced or cluster-wide, with peering and liveness)."""

from __future__ import annotations

import argparse
import os
import random
import sys

import kopf
from prometheus_client import start_http_server


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="conductor-operator", description=__doc__)
    p.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=[],
        help="namespace to watch (repeatable, globs allowed; env WATCH_NAMESPACES, comma list)",
    )
    p.add_argument("--all-namespaces", "-A", action="store_true", help="watch the whole cluster")
    p.add_argument(
        "--standalone", action="store_true", default=os.environ.get("CWO_STANDALONE") == "1", help="no peering"
    )
    p.add_argument(
        "--peering",
        default=os.environ.get("CWO_PEERING") or None,
        help="KopfPeering name: only the highest-priority operator replica acts (needs the kopf.dev CRDs)",
    )
    # Replicas of one Deployment need distinct priorities, else kopf lets all of them act: by default
    # each picks a random one and only the highest acts; the others pause until it goes away.
    p.add_argument(
        "--priority",
        type=int,
        default=int(os.environ.get("CWO_PRIORITY") or random.randint(1, 1_000_000)),
        help="peering priority (env CWO_PRIORITY; default random)",
    )
    p.add_argument(
        "--liveness",
        default=os.environ.get("CWO_LIVENESS", "http://0.0.0.0:8081/healthz"),
        help="kopf liveness endpoint URL ('' disables)",
    )
    p.add_argument("--metrics-port", type=int, default=int(os.environ.get("CWO_METRICS_PORT", "8080")))
    p.add_argument("--metrics-host", default=os.environ.get("CWO_METRICS_HOST", "0.0.0.0"))
    p.add_argument("--verbose", "-v", action="store_true")
    p.add_argument("--log-format", choices=["plain", "full", "json"], default=os.environ.get("CWO_LOG_FORMAT", "full"))
    args = p.parse_args(argv)
    env_ns = [n.strip() for n in os.environ.get("WATCH_NAMESPACES", "").split(",") if n.strip()]
    args.namespace = args.namespace or env_ns
    if args.namespace and args.all_namespaces:
        p.error("--namespace and --all-namespaces exclude each other")
    if not args.namespace:
        args.all_namespaces = True
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    kopf.configure(
        verbose=args.verbose,
        log_format={"plain": kopf.LogFormat.PLAIN, "full": kopf.LogFormat.FULL, "json": kopf.LogFormat.JSON}[
            args.log_format
        ],
    )
    from conductor_operator import handlers  # noqa: F401 - registers the handlers
    from conductor_operator.opmetrics import REGISTRY

    if args.metrics_port:
        start_http_server(args.metrics_port, addr=args.metrics_host, registry=REGISTRY)
    kopf.run(
        standalone=args.standalone,
        peering_name=None if args.standalone else args.peering,
        priority=args.priority,
        liveness_endpoint=args.liveness or None,
        clusterwide=args.all_namespaces,
        namespaces=args.namespace,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
