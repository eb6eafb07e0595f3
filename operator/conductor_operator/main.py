"""`conductor-operator`: run the kopf operator (namespaced or cluster-wide, with peering and liveness)."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Mapping

import kopf
from prometheus_client import start_http_server

from conductor_operator.config import Config


def parse_args(argv: list[str] | None, env: Mapping[str, str] | None = None) -> Config:
    """The settings: flags over the environment (os.environ unless given) over the defaults."""
    p = argparse.ArgumentParser(prog="conductor-operator", description=__doc__)
    try:
        base = Config.from_env(os.environ if env is None else env)
    except ValueError as exc:
        p.error(str(exc))
    p.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=[],
        help="namespace to watch (repeatable, globs allowed; env WATCH_NAMESPACES, comma list)",
    )
    p.add_argument("--all-namespaces", "-A", action="store_true", help="watch the whole cluster")
    p.add_argument("--standalone", action="store_true", default=base.standalone, help="no peering")
    p.add_argument(
        "--peering",
        default=base.peering,
        help="KopfPeering name: only the highest-priority operator replica acts (needs the kopf.dev CRDs)",
    )
    p.add_argument(
        "--priority", type=int, default=base.priority, help="peering priority (env CWO_PRIORITY; default random)"
    )
    p.add_argument("--liveness", default=base.liveness, help="kopf liveness endpoint URL ('' disables)")
    p.add_argument("--metrics-port", type=int, default=base.metrics_port)
    p.add_argument("--metrics-host", default=base.metrics_host)
    p.add_argument("--verbose", "-v", action="store_true")
    p.add_argument("--log-format", choices=["plain", "full", "json"], default=base.log_format)
    args = p.parse_args(argv)
    namespaces = tuple(args.namespace) or base.namespaces
    if namespaces and args.all_namespaces:
        p.error("--namespace and --all-namespaces exclude each other")
    return dataclasses.replace(
        base,
        namespaces=namespaces,
        all_namespaces=not namespaces,
        standalone=args.standalone,
        peering=args.peering,
        priority=args.priority,
        liveness=args.liveness,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
        verbose=args.verbose,
        log_format=args.log_format,
    )


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    kopf.configure(
        verbose=config.verbose,
        log_format={"plain": kopf.LogFormat.PLAIN, "full": kopf.LogFormat.FULL, "json": kopf.LogFormat.JSON}[
            config.log_format
        ],
    )
    from conductor_operator import handlers  # noqa: F401 - registers the handlers
    from conductor_operator.opmetrics import REGISTRY

    if config.metrics_port:
        start_http_server(config.metrics_port, addr=config.metrics_host, registry=REGISTRY)
    kopf.run(
        standalone=config.standalone,
        peering_name=None if config.standalone else config.peering,
        priority=config.priority,
        liveness_endpoint=config.liveness or None,
        clusterwide=config.all_namespaces,
        namespaces=config.namespaces,
        memo=kopf.Memo(config=config),  # the handlers' startup reads it: nothing below main reads the env
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
