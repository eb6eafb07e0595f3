#!/usr/bin/env bash
# Build the get-inventory example workers on the host, each with its own toolchain, into
# $CWO_CACHE/examples/<lang>/ (the build context of examples/<lang>/Dockerfile). Caches stay outside the
# repo: Go modules and build cache, the Maven repository, the npm cache.
#   bash scripts/build-examples.sh [go|java|javascript|all|plain-go]
# plain-go: the Go SDK worker of the sidecar tests (tests/images/plain-go), written as the SDK's README shows.
source "$(dirname "$0")/lib.sh"

OUT_ROOT="$CWO_CACHE/examples"

need() { command -v "$1" >/dev/null || { echo "$1 is required to build the $2 example ($3)" >&2; exit 1; }; }

build_go() {
  need go go "Go 1.24+"
  local out="$OUT_ROOT/go"
  mkdir -p "$out"
  log "go: building examples/go"
  (cd "$CWO_ROOT/examples/go" &&
    GOMODCACHE="$CWO_CACHE/go-mod" GOCACHE="$CWO_CACHE/go-build" GOFLAGS=-mod=readonly CGO_ENABLED=0 \
      go build -trimpath -ldflags="-s -w" -o "$out/get-inventory" .)
  cp "$CWO_ROOT/examples/go/Dockerfile" "$out/"
}

build_plain-go() {
  need go go "Go 1.24+"
  local out="$OUT_ROOT/plain-go"
  mkdir -p "$out"
  log "plain-go: building tests/images/plain-go"
  (cd "$CWO_ROOT/tests/images/plain-go" &&
    GOMODCACHE="$CWO_CACHE/go-mod" GOCACHE="$CWO_CACHE/go-build" GOFLAGS=-mod=readonly CGO_ENABLED=0 \
      go build -trimpath -ldflags="-s -w" -o "$out/plain-sleep" .)
  cp "$CWO_ROOT/tests/images/plain-go/Dockerfile" "$out/"
}

build_java() {
  need mvn java "apt-get install maven"
  need java java "Java 17"
  local out="$OUT_ROOT/java" build="$CWO_CACHE/examples/.java-build"
  log "java: mvn package examples/java"
  mvn -q -B -Dmaven.repo.local="$CWO_CACHE/m2" -Dcwo.build.dir="$build" -f "$CWO_ROOT/examples/java/pom.xml" package
  rm -rf "$out" && mkdir -p "$out"
  cp "$build/get-inventory.jar" "$out/" && cp -r "$build/lib" "$out/lib"
  cp "$CWO_ROOT/examples/java/Dockerfile" "$out/"
}

build_javascript() {
  need npm javascript "Node.js 18+ with npm"
  local out="$OUT_ROOT/javascript" src="$CWO_ROOT/examples/javascript"
  log "javascript: npm ci examples/javascript"
  mkdir -p "$out"
  rm -rf "$out/node_modules"
  cp "$src/package.json" "$src/package-lock.json" "$src/.npmrc" "$src/worker.js" "$src/Dockerfile" "$out/"
  (cd "$out" && npm_config_cache="$CWO_CACHE/npm" npm ci --omit=dev --no-audit --no-fund --loglevel=error)
}

case "${1:-all}" in
  go | java | javascript | plain-go) "build_$1" ;;
  all) build_go && build_java && build_javascript ;;  # one at a time: the machine has two cores
  *) echo "usage: $0 [go|java|javascript|all|plain-go]" >&2; exit 2 ;;
esac
log "built into $OUT_ROOT/${1:-all}"
