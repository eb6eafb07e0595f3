#!/usr/bin/env bash
# Install everything the stack, the demo and the tests need, caching outside the repo
# (~/.cache/conductor-worker-operator). Safe to run again: cached pieces are skipped.
# --examples: also build the SDK examples' images (the test command's language e2e needs them).
source "$(dirname "$0")/lib.sh"
cd "$CWO_ROOT"

need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v openssl >/dev/null || need_apt+=(openssl)
command -v mvn >/dev/null || need_apt+=(maven)
command -v java >/dev/null || need_apt+=(openjdk-17-jre-headless)
command -v go >/dev/null || need_apt+=(golang-go)
# The node: containerd + runc, CNI plugins, iptables; images from Debian packages (mmdebstrap, podman).
command -v containerd >/dev/null || need_apt+=(containerd)
command -v runc >/dev/null || need_apt+=(runc)
[[ -x /usr/lib/cni/bridge ]] || need_apt+=(containernetworking-plugins)
command -v iptables >/dev/null || need_apt+=(iptables)
command -v podman >/dev/null || need_apt+=(podman)
command -v mmdebstrap >/dev/null || need_apt+=(mmdebstrap)
command -v gcc >/dev/null || need_apt+=(gcc libc6-dev)
command -v ip >/dev/null || need_apt+=(iproute2)
if ((${#need_apt[@]})); then
  log "apt-get install ${need_apt[*]}"
  sudo_cmd=(); [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# The control plane's Go build is the longest step (about 10 min on 2 cores the first time): it starts
# first, and the Python environment, the tools, Conductor's jar and the node's images come meanwhile
# (mostly waiting on the network and the disk while Go uses the CPU).
k8s_log="$CWO_CACHE/k8s-build.log"
mkdir -p "$CWO_CACHE"
setsid bash scripts/build-k8s.sh >"$k8s_log" 2>&1 &  # its own process group: stopped whole on exit
k8s_pid=$!
trap 'kill -- -"$k8s_pid" 2>/dev/null || true' EXIT

if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating virtualenv $VENV"
  python3 -m venv "$VENV"
fi
stamp="$VENV/.cwo-installed"
if [[ ! -f "$stamp" || pyproject.toml -nt "$stamp" ]]; then
  log "installing the project and its dev tools into $VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip "setuptools>=77"  # the no-isolation reinstall below builds with it
  "$VENV/bin/python" -m pip install -q -e '.[dev]'
  touch "$stamp"
else
  "$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e . 2>/dev/null \
    || "$VENV/bin/python" -m pip install -q -e '.[dev]'
fi

images_log="$CWO_CACHE/images-build.log"
images_args=(--no-pause)
[[ "${1:-}" == "--examples" ]] && images_args+=(--examples)
"$VENV/bin/python" -P "$CWO_ROOT/scripts/stack.py" images "${images_args[@]}" >"$images_log" 2>&1 &
images_pid=$!
bash scripts/fetch-tools.sh
bash scripts/fetch-conductor.sh
watch_builds "control plane:$k8s_pid:$k8s_log" "images:$images_pid:$images_log"
if ! wait "$k8s_pid"; then
  tail -n 30 "$k8s_log" >&2
  echo "building the control plane failed (log: $k8s_log)" >&2
  exit 1
fi
trap - EXIT
cat "$k8s_log" >&2
if ! wait "$images_pid"; then
  tail -n 30 "$images_log" >&2
  echo "building the node's images failed (log: $images_log)" >&2
  exit 1
fi
log "setup done; activate with: source $VENV/bin/activate"
