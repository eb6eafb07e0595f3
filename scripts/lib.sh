# Shared settings for the stack scripts: versions and the cache outside the repo.
# shellcheck shell=bash
set -euo pipefail

CWO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=versions.env
source "$CWO_ROOT/scripts/versions.env"
CWO_CACHE="${CWO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/conductor-worker-operator}"

K8S_BIN="$CWO_CACHE/k8s-$K8S_VERSION/bin"
CONDUCTOR_JAR="$CWO_CACHE/conductor-$CONDUCTOR_VERSION/conductor-server-$CONDUCTOR_VERSION-boot.jar"
TOOLS_BIN="$CWO_CACHE/tools-$KUBECTL_LAYER_VERSION/bin"
VENV="$CWO_CACHE/venv"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# watch_builds NAME:PID:LOG...: while any of the background builds runs, say what each is doing (the
# last line of its log) and for how long: one updating line on a terminal, a line per build every 15 s
# otherwise (CI logs), so no minute passes in silence.
watch_builds() {
  local start=$SECONDS spec name pid file line running status tty=0
  [[ -t 2 ]] && tty=1
  while :; do
    running=0 status=""
    for spec in "$@"; do
      IFS=: read -r name pid file <<<"$spec"
      kill -0 "$pid" 2>/dev/null || continue
      running=1
      line=$(tail -n 1 "$file" 2>/dev/null | sed 's/^\[[0-9:]*\] //' | cut -c1-70)
      if ((tty)); then status+="$name: ${line:-starting} | "; else log "$name: ${line:-starting} ($((SECONDS - start)) s)"; fi
    done
    if ((tty)); then printf '\r\033[K[%s] %s(%d s)' "$(date +%H:%M:%S)" "$status" "$((SECONDS - start))" >&2; fi
    if ((!running)); then ((tty)) && printf '\n' >&2; return 0; fi
    sleep $((tty ? 2 : 15))
  done
}
