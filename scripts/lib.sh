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
