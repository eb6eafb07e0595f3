#!/usr/bin/env bash
# Build the get-inventory example workers on the host, each with its own toolchain, into
# $CWO_CACHE/examples/<lang>/ (the build context of examples/<lang>/Dockerfile). Caches stay outside the
# repo: Go modules and build cache, the Maven repository, the npm cache.
#   bash scripts/build-examples.sh [go|java|javascript|all|plain-go|plain-java|plain-javascript]
# plain-*: the SDK workers of the sidecar tests (tests/images/plain-*), written as each SDK's README shows.
source "$(dirname "$0")/lib.sh"

OUT_ROOT="$CWO_CACHE/examples"

need() { command -v "$1" >/dev/null || { echo "$1 is required to build the $2 example ($3)" >&2; exit 1; }; }

# go_build SRC OUT BINARY: a static binary of the Go module in SRC into OUT, with SRC's Dockerfile.
go_build() {
  need go go "Go 1.24+"
  local src=$1 out=$2
  mkdir -p "$out"
  log "go: building ${src#"$CWO_ROOT"/}"
  (cd "$src" &&
    GOMODCACHE="$CWO_CACHE/go-mod" GOCACHE="$CWO_CACHE/go-build" GOFLAGS=-mod=readonly CGO_ENABLED=0 \
      go build -trimpath -ldflags="-s -w" -o "$out/$3" .)
  cp "$src/Dockerfile" "$out/"
}

# java_build SRC OUT JAR: mvn package of SRC/pom.xml; OUT gets JAR, its lib/ and SRC's Dockerfile.
java_build() {
  need mvn java "apt-get install maven"
  need java java "Java 17"
  local src=$1 out=$2 build="$CWO_CACHE/examples/.build-${2##*/}"
  log "java: mvn package ${src#"$CWO_ROOT"/}"
  mvn -q -B -Dmaven.repo.local="$CWO_CACHE/m2" -Dcwo.build.dir="$build" -f "$src/pom.xml" package
  rm -rf "$out" && mkdir -p "$out"
  cp "$build/$3" "$out/" && cp -r "$build/lib" "$out/lib"
  cp "$src/Dockerfile" "$out/"
}

# node_build SRC OUT: npm ci (production dependencies) of SRC's lock file into OUT, with its sources.
node_build() {
  need npm javascript "Node.js 18+ with npm"
  local src=$1 out=$2
  log "javascript: npm ci ${src#"$CWO_ROOT"/}"
  mkdir -p "$out"
  rm -rf "$out/node_modules"
  cp "$src/package.json" "$src/package-lock.json" "$src/.npmrc" "$src/worker.js" "$src/Dockerfile" "$out/"
  (cd "$out" && npm_config_cache="$CWO_CACHE/npm" npm ci --omit=dev --no-audit --no-fund --loglevel=error)
}

build_go() { go_build "$CWO_ROOT/examples/go" "$OUT_ROOT/go" get-inventory; }
build_java() { java_build "$CWO_ROOT/examples/java" "$OUT_ROOT/java" get-inventory.jar; }
build_javascript() { node_build "$CWO_ROOT/examples/javascript" "$OUT_ROOT/javascript"; }
# The sidecar tests' workers, written as each SDK's README shows (tests/images/plain-*).
build_plain-go() { go_build "$CWO_ROOT/tests/images/plain-go" "$OUT_ROOT/plain-go" plain-sleep; }
build_plain-java() { java_build "$CWO_ROOT/tests/images/plain-java" "$OUT_ROOT/plain-java" plain-sleep.jar; }
build_plain-javascript() { node_build "$CWO_ROOT/tests/images/plain-javascript" "$OUT_ROOT/plain-javascript"; }

case "${1:-all}" in
  go | java | javascript | plain-go | plain-java | plain-javascript) "build_$1" ;;
  all) build_go && build_java && build_javascript ;;  # one at a time: the machine has two cores
  *) echo "usage: $0 [go|java|javascript|all|plain-go|plain-java|plain-javascript]" >&2; exit 2 ;;
esac
log "built into $OUT_ROOT/${1:-all}"
