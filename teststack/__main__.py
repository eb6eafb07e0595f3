"""`scripts/stack.sh up|down|status|env|load` — bring the local stack up, tear it down, inspect it, put
your own image into its node."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from teststack import conductor, images, keda, kube, netsetup, node, procs
from teststack import load as user_image
from teststack.config import load


def _timed(call: Callable[..., object], *args: object) -> float:
    """Seconds the call took (the parts of `down` run side by side)."""
    started = time.monotonic()
    call(*args)
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/stack.sh", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start Conductor and the Kubernetes control plane")
    up.add_argument("--memory", action="store_true", help="Conductor in memory instead of on redis-server")
    up.add_argument("--only", choices=["conductor", "kube"], help="start just one part")
    up.add_argument("--no-node", action="store_true", help="no kubelet, scheduler or containerd (Pods stay Pending)")
    images_cmd = sub.add_parser("images", help="build the node's images (and the SDK examples' bases) into the cache")
    images_cmd.add_argument("--no-pause", action="store_true", help="skip the pause image (needs k8s.io/kubernetes)")
    images_cmd.add_argument("--examples", action="store_true", help="also the SDK examples' images (go, mvn, npm)")
    sub.add_parser("down", help="stop every process the stack started")
    keda_cmd = sub.add_parser("keda", help="KEDA on the running stack (built by scripts/build-keda.sh), for benchmarks")
    keda_cmd.add_argument("action", choices=["up", "down"])
    load_cmd = sub.add_parser(
        "load",
        help="put an image into the node (IMAGE from podman or docker storage, or a docker/oci archive file)",
    )
    load_cmd.add_argument("image", help="an image reference (e.g. localhost/my-worker:1) or an archive's path")
    load_cmd.add_argument("--name", help="the NAME:TAG to give an archive whose image has none")
    sub.add_parser("status", help="say what is running")
    sub.add_parser("env", help="print shell exports for kubectl, helm and the Conductor URL")
    args = parser.parse_args(argv)
    cfg = load()

    try:
        if args.command == "up":
            # Conductor's JVM boots while the control plane and the node come up.
            conductor_pid = conductor.launch(cfg, redis=not args.memory) if args.only in (None, "conductor") else None
            if args.only in (None, "kube"):
                kubeconfig = kube.start(cfg)
                print(f"kube-apiserver: {cfg.apiserver_url} (KUBECONFIG={kubeconfig})", file=sys.stderr)
                if not args.no_node:
                    node.start(cfg, kubeconfig)
                    print(
                        f"node {node.NODE_NAME} Ready (kubelet + containerd), pods on {netsetup.POD_CIDR}",
                        file=sys.stderr,
                    )
                    print(f"pods reach Conductor at {cfg.pod_conductor_url}", file=sys.stderr)
            if args.only in (None, "conductor"):
                conductor.wait_healthy(cfg, conductor_pid)
                print(f"conductor: {cfg.conductor_url}", file=sys.stderr)
        elif args.command == "images":
            built = images.Images(cfg)
            names = built.all(pause=not args.no_pause) + [built.base(flavor) for flavor in ("static", "java", "node")]
            if args.examples:
                names += [built.example(lang) for lang in sorted(images.EXAMPLES)]
            print("\n".join(names))
        elif args.command == "down":
            # Conductor's JVM shuts down (seconds) while the node drains and the control plane stops.
            t0 = time.monotonic()
            with ThreadPoolExecutor(1) as pool:
                stopping = pool.submit(_timed, conductor.stop, cfg)
                keda.stop_processes(cfg)
                node.stop(cfg)
                t_node = time.monotonic() - t0
                kube.stop(cfg)
                t_kube = time.monotonic() - t0 - t_node
                t_conductor = stopping.result()
            print(
                f"down: node {t_node:.1f} s, control plane {t_kube:.1f} s, Conductor {t_conductor:.1f} s (alongside)",
                file=sys.stderr,
            )
        elif args.command == "keda":
            if args.action == "up":
                if not kube.healthy(cfg):
                    raise procs.StackError("the API server is down: `bash scripts/stack.sh up` first")
                keda.start(cfg, cfg.kubeconfig)
                print(f"KEDA {keda.version()}: APIService {keda.APISERVICE} Available", file=sys.stderr)
            else:
                keda.stop(cfg)
        elif args.command == "load":
            for name in user_image.load(cfg, args.image, args.name):
                print(name)
            print(
                "use the name above in spec.image or spec.container.image, with imagePullPolicy: Never", file=sys.stderr
            )
        elif args.command == "status":
            print(f"conductor        {'up' if conductor.healthy(cfg) else 'down'}  {cfg.conductor_url}")
            print(f"kube-apiserver   {'up' if kube.healthy(cfg) else 'down'}  {cfg.apiserver_url}")
            kcm = procs.running_pid(cfg.run_dir, kube.CONTROLLER_MANAGER)
            print(f"controller-mgr   {'up' if kcm else 'down'}")
            for name in (node.SCHEDULER, node.CONTAINERD):
                print(f"{name:<16} {'up' if procs.running_pid(cfg.run_dir, name) else 'down'}")
            print(f"kubelet          {'up' if node.healthy(cfg) else 'down'}  node {node.NODE_NAME}")
            if procs.running_pid(cfg.run_dir, keda.OPERATOR) or procs.running_pid(cfg.run_dir, keda.ADAPTER):
                print(f"keda             {'up' if keda.healthy(cfg) else 'down'}")
        elif args.command == "env":
            print(f"export KUBECONFIG={cfg.kubeconfig}")
            print(f"export PATH={cfg.tools_bin}:$PATH")
            print(f"export CONDUCTOR_SERVER_URL={cfg.conductor_url}")
            print(f"export CWO_POD_CONDUCTOR_URL={cfg.pod_conductor_url}  # the server as Pods reach it")
            podman = images.Podman(cfg)  # the storage holding the runtime image, for `podman build FROM` it
            print(f"export CONTAINERS_CONF={podman.env['CONTAINERS_CONF']}")
            print(f"export CONTAINERS_STORAGE_CONF={podman.env['CONTAINERS_STORAGE_CONF']}")
    except procs.StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
