#!/usr/bin/env bash
# The whole test suite on the real local stack: installs what it needs, lints, runs pytest.
# Extra arguments go to pytest. pytest's "no tests collected" (exit 5) is a failure.
source "$(dirname "$0")/lib.sh"
cd "$CWO_ROOT"
bash scripts/setup.sh --examples  # the SDK examples' images build while Go compiles
export PATH="$VENV/bin:$TOOLS_BIN:$PATH"

log "ruff"
ruff check .
ruff format --check .

log "pytest"
set +e
pytest -p no:cacheprovider --durations=20 "$@"
rc=$?
set -e
if [[ $rc -eq 5 ]]; then echo "pytest collected no tests: failing" >&2; exit 1; fi
exit $rc
