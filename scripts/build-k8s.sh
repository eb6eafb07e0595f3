#!/usr/bin/env bash
# Build etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kubelet from the Go module
# proxy into the cache.
# k8s.io/kubernetes replaces its staging modules with local paths, so `go install` refuses it; a
# wrapper module requires it and replaces each staging module with its published v0.M.P release.
source "$(dirname "$0")/lib.sh"

BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubelet)
cached=1
for b in "${BINARIES[@]}" etcd; do [[ -x "$K8S_BIN/$b" ]] || cached=0; done
if ((cached)); then log "k8s $K8S_VERSION binaries cached in $K8S_BIN"; exit 0; fi
command -v go >/dev/null || { echo "go is required to build the control plane (install Go 1.24+)" >&2; exit 1; }

export GOMODCACHE="$CWO_CACHE/go/mod" GOCACHE="$CWO_CACHE/go/build" GOFLAGS=-mod=mod GOTOOLCHAIN=local
work="$CWO_CACHE/k8s-$K8S_VERSION/src"
mkdir -p "$work/etcd" "$K8S_BIN"
cd "$work"

log "downloading k8s.io/kubernetes v$K8S_VERSION"
gomod=$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
staging_version="v0.${K8S_VERSION#1.}"

{
  echo "module cwo/k8sbuild"
  echo
  go_line=$(grep -m1 '^go ' "$gomod")
  echo "$go_line"
  echo
  echo "require k8s.io/kubernetes v$K8S_VERSION"
  echo
  grep -E '^\s*k8s.io/[a-z0-9-]+ => ./staging/' "$gomod" \
    | awk -v v="$staging_version" '{print "replace " $1 " => " $1 " " v}'
} > go.mod

cat > etcd/main.go <<'GO'
// etcd built from the module graph of k8s.io/kubernetes (Debian's 3.4 is too old).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
GO

log "resolving modules"
go mod tidy >/dev/null 2>&1 || go mod tidy
# The version the binaries report (otherwise v0.0.0-master, which the kubelet's node status shows).
minor=${K8S_VERSION#*.}; minor=${minor%%.*}
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=v$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
done
log "building ${BINARIES[*]}, etcd (first time: several minutes)"
go build -trimpath -ldflags="$ldflags" -o "$K8S_BIN/" "${BINARIES[@]/#/k8s.io/kubernetes/cmd/}"
go build -trimpath -ldflags='-s -w' -o "$K8S_BIN/etcd" ./etcd
log "built into $K8S_BIN"
