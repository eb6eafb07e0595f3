#!/usr/bin/env bash
# Build KEDA's operator and metrics adapter from the Go module proxy into the cache, with its CRDs.
# Only `scripts/bench.sh autoscalers` needs KEDA (the peer the operator is compared with), so the
# test command never runs this: the first build takes about 10 min on 2 cores and 5 GB of caches.
# The module is copied out of the read-only module cache and built inside it, so that its own go.mod
# (with its replace directives) decides every dependency, as KEDA's release build does.
source "$(dirname "$0")/lib.sh"

KEDA_DIR="$CWO_CACHE/keda-$KEDA_VERSION"
STAMP="$KEDA_DIR/.built"
if [[ -f "$STAMP" && -x "$KEDA_DIR/bin/keda-operator" && -x "$KEDA_DIR/bin/keda-adapter" ]]; then
  log "KEDA $KEDA_VERSION cached in $KEDA_DIR"
  exit 0
fi
command -v go >/dev/null || { echo "go is required to build KEDA (install Go 1.26+)" >&2; exit 1; }

export GOMODCACHE="$CWO_CACHE/go/mod" GOCACHE="$CWO_CACHE/go/build" GOFLAGS=-mod=mod GOTOOLCHAIN=local
mkdir -p "$KEDA_DIR/bin" "$KEDA_DIR/crds"
cd "$KEDA_DIR"
log "downloading github.com/kedacore/keda/v2@v$KEDA_VERSION"
moddir=$(go mod download -json "github.com/kedacore/keda/v2@v$KEDA_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
[[ -d "$moddir" ]] || { echo "go mod download gave no module directory for KEDA v$KEDA_VERSION" >&2; exit 1; }

src="$KEDA_DIR/src"
rm -rf "$src"
cp -r "$moddir" "$src"
chmod -R u+w "$src"
cp "$src"/config/crd/bases/*.yaml "$KEDA_DIR/crds/"

cd "$src"
ldflags="-s -w -X github.com/kedacore/keda/v2/version.Version=v$KEDA_VERSION"
log "building keda-operator and keda-adapter (first time: about 10 min)"
nice -n 19 go build -trimpath -ldflags="$ldflags" -o "$KEDA_DIR/bin/keda-operator" ./cmd/operator
nice -n 19 go build -trimpath -ldflags="$ldflags" -o "$KEDA_DIR/bin/keda-adapter" ./cmd/adapter
rm -rf "$src"
touch "$STAMP"
log "built into $KEDA_DIR/bin"
