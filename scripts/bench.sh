#!/usr/bin/env bash
# Benchmarks: `bash scripts/bench.sh workers|memory|all [--size N] [--rounds R] [--out DIR] [...]`
# (`--help` lists every option). Results: bench/results/*.json, *.md, *.png; see bench/README.md.
# `bash scripts/bench.sh autoscalers [--traces ...] [--contenders ...] [--time-scale F]` (its own `--help`):
# the autoscaler head-to-head on replayed traces, on the full local stack (Conductor, control plane, node).
#
# Prepares, cached in ~/.cache/conductor-worker-operator: the project's venv (scripts/setup.sh), a
# benchmark-only venv (matplotlib, psutil, requests; never the project's dependencies) and the
# Conductor Python SDK's own venv (conductor-python 2.0.0: its pins clash with the kubernetes client).
# Starts the local Conductor server unless --server-url points elsewhere or it already answers.
source "$(dirname "$0")/lib.sh"

BENCH_VENV="$CWO_CACHE/bench-venv"
SDK_VENV="$CWO_CACHE/sdk-venv"
SDK_VERSION=2.0.0

venv() {  # venv DIR STAMP PACKAGES...
  local dir=$1 stamp=$2; shift 2
  [[ -f "$dir/.cwo-$stamp" ]] && return
  log "creating $dir ($*)"
  [[ -x "$dir/bin/python" ]] || python3 -m venv "$dir"
  "$dir/bin/python" -m pip install -q "$@"
  touch "$dir/.cwo-$stamp"
}

[[ -x "$VENV/bin/conductor-worker" ]] || bash "$CWO_ROOT/scripts/setup.sh"
venv "$BENCH_VENV" bench-v1 matplotlib psutil requests

if [[ "${1:-}" == "autoscalers" ]]; then  # needs the whole stack, and neither the SDK nor the Go loop
  # KEDA (the autoscaler the operator is compared with) is built for this command only, and not when
  # --contenders leaves both KEDA contenders out.
  contenders=operator,keda-default,keda-tuned prev= help=0
  for arg in "$@"; do
    [[ "$prev" == --contenders ]] && contenders=$arg
    [[ "$arg" == --contenders=* ]] && contenders=${arg#--contenders=}
    [[ "$arg" == -h || "$arg" == --help ]] && help=1
    prev=$arg
  done
  if ((help == 0)) && [[ "$contenders" == *keda* ]]; then bash "$CWO_ROOT/scripts/build-keda.sh"; fi
  "$VENV/bin/python" "$CWO_ROOT/scripts/stack.py" up
  cd "$CWO_CACHE"
  # This checkout's operator and runtime, whichever checkout the venv's editable install points at.
  export PYTHONPATH="$CWO_ROOT/operator:$CWO_ROOT${PYTHONPATH:+:$PYTHONPATH}"
  exec "$BENCH_VENV/bin/python" "$CWO_ROOT/bench/run.py" "$@"
fi

venv "$SDK_VENV" "sdk-$SDK_VERSION" "conductor-python==$SDK_VERSION" psutil

# The compiled bare loop (contender ceiling-go), rebuilt when its source changes.
CEILING_SRC="$CWO_ROOT/bench/ceiling_go"
CEILING_STAMP="$CWO_CACHE/bench-bin/.ceiling-go-$(cat "$CEILING_SRC"/go.mod "$CEILING_SRC"/*.go | sha256sum | cut -c1-16)"
if [[ ! -f "$CEILING_STAMP" ]]; then
  log "building bench/ceiling_go"
  mkdir -p "$CWO_CACHE/bench-bin"
  (cd "$CEILING_SRC" && GOCACHE="$CWO_CACHE/go/build" GOTOOLCHAIN=local go build -o "$CWO_CACHE/bench-bin/ceiling-go" .)
  rm -f "$CWO_CACHE"/bench-bin/.ceiling-go-*
  touch "$CEILING_STAMP"
fi

# The Go SDK worker (contenders sdk-go, sdk-go+sidecar, sdk-go+hop-go) and the bare Go reverse proxy
# (sdk-go+hop-go), each rebuilt when its source changes.
go_tool() {  # go_tool NAME DIR
  local src="$CWO_ROOT/bench/$2" stamp
  stamp="$CWO_CACHE/bench-bin/.$1-$(cat "$src"/go.* "$src"/*.go | sha256sum | cut -c1-16)"
  [[ -f "$stamp" ]] && return
  log "building bench/$2"
  mkdir -p "$CWO_CACHE/bench-bin"
  (cd "$src" && GOMODCACHE="$CWO_CACHE/go-mod" GOCACHE="$CWO_CACHE/go-build" CGO_ENABLED=0 go build -trimpath -o "$CWO_CACHE/bench-bin/$1" .)
  rm -f "$CWO_CACHE"/bench-bin/."$1"-*
  touch "$stamp"
}
go_tool sdk-go sdk_go
go_tool hop-go hop_go

server_given=0
for arg in "$@"; do [[ "$arg" == --server-url* ]] && server_given=1; done
if ((server_given == 0)); then
  "$VENV/bin/python" "$CWO_ROOT/scripts/stack.py" up --only conductor
fi

cd "$CWO_CACHE"
exec "$BENCH_VENV/bin/python" "$CWO_ROOT/bench/run.py" "$@"
