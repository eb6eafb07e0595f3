#!/usr/bin/env bash
# The local stack: `bash scripts/stack.sh up|down|status|env` (runs scripts/setup.sh first for `up`).
source "$(dirname "$0")/lib.sh"
[[ "${1:-}" == "up" ]] && bash "$CWO_ROOT/scripts/setup.sh"
exec "$VENV/bin/python" "$CWO_ROOT/scripts/stack.py" "$@"
