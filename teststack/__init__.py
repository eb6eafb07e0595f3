"""The project's real local stack: Conductor OSS, etcd, kube-apiserver, kube-controller-manager.

Used by `scripts/stack.sh` (up/down/status/env) and by the pytest fixtures.
Everything listens on loopback; every process started is recorded in a pid file so `down` stops it.
"""
