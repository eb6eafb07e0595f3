#!/usr/bin/env bash
# The local stack: `bash scripts/stack.sh up|down|status|env` (runs scripts/setup.sh first for `up`);
# `load IMAGE|ARCHIVE [--name NAME:TAG]` imports your image into the node (from podman/docker or a tar);
# `keda up|down` starts KEDA on it for the autoscaler benchmark (built first by scripts/build-keda.sh).
source "$(dirname "$0")/lib.sh"
[[ "${1:-}" == "up" ]] && bash "$CWO_ROOT/scripts/setup.sh"
[[ "${1:-} ${2:-}" == "keda up" ]] && bash "$CWO_ROOT/scripts/build-keda.sh"
exec "$VENV/bin/python" "$CWO_ROOT/scripts/stack.py" "$@"
