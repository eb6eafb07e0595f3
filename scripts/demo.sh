#!/usr/bin/env bash
# The main job end to end on the local stack: setup, stack up, helm install, apply the example
# ConductorWorker, run a burst of workflows, watch replicas follow the queue and scale back to zero.
# Extra arguments go to the demo (--workflows N, --work-ms MS, --keep).
source "$(dirname "$0")/lib.sh"
bash "$CWO_ROOT/scripts/setup.sh"
exec "$VENV/bin/python" -c "import sys; sys.path.insert(0, '$CWO_ROOT'); from teststack.demo import main; sys.exit(main(sys.argv[1:]))" "$@"
