#!/usr/bin/env bash
# Everything the kind e2e provider needs, on a machine that reaches package registries but no
# container registry. Built once into a cache folder outside the work tree, keyed by version:
#   ${KAISCHED_KIND_CACHE:-$HOME/.cache/kaisched/kind}/<key>/
# where <key> hashes e2e/kind/go.mod and go.sum (kind) and e2e/kind/k8s/go.mod and go.sum (Kubernetes,
# the version e2e/testbin pins: e2e/kind/k8s/gen-gomod.sh derives it from there).
#
# Steps (each skipped when its output is already in the cache):
#   docker   a reachable Docker engine: when none answers, Debian's docker.io is installed and
#            dockerd started in the background (its log and pid in the cache root); `stop-docker`
#            stops it again, and only when this script started it.
#   tools    kind (sigs.k8s.io/kind) and kubectl (k8s.io/kubernetes, the version e2e/testbin pins).
#   probe    a container runs from a locally imported image (no registry is ever asked).
#
# Usage: build.sh [all|docker|tools|probe|stop-docker|dir]   (default: all)
# The last line on stdout is the cache folder. Progress goes to stderr.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
root="${KAISCHED_KIND_CACHE:-${HOME:-/root}/.cache/kaisched/kind}"
key="$(cat "$here/go.mod" "$here/go.sum" "$here/k8s/go.mod" "$here/k8s/go.sum" | sha256sum | cut -c1-16)"
dir="$root/$key"
bindir="$dir/bin"
mkdir -p "$bindir"
log() { echo "kind/build.sh: $*" >&2; }
timed() { # timed NAME CMD...: run CMD, append "NAME seconds" to $dir/TIMINGS
  local name="$1" t0; shift; t0=$(date +%s)
  "$@"
  local dt=$(( $(date +%s) - t0 )); echo "$name ${dt}s $(date -u +%FT%TZ)" >> "$dir/TIMINGS"; log "$name took ${dt}s"
}

# ------------------------------------------------------------------------------------- docker
engine_up() { docker info --format '{{.ServerVersion}}' >/dev/null 2>&1; }

start_docker() {
  if command -v docker >/dev/null && engine_up; then log "docker engine reachable"; return 0; fi
  [ "$(id -u)" = 0 ] || { log "no Docker engine reachable and not root: cannot install one"; return 1; }
  if ! command -v dockerd >/dev/null; then
    log "installing Debian's docker.io"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends docker.io >/dev/null
  fi
  # Debian's docker.io brings its own client at /usr/bin/docker; a newer client elsewhere on PATH
  # talks to it too (API version negotiation).
  log "starting dockerd (log: $root/dockerd.log)"
  mkdir -p "$root"
  setsid nohup dockerd --log-level=warn >"$root/dockerd.log" 2>&1 < /dev/null &
  echo $! > "$root/dockerd.pid"
  local i
  for i in $(seq 1 60); do
    engine_up && { log "dockerd up (pid $(cat "$root/dockerd.pid"))"; return 0; }
    kill -0 "$(cat "$root/dockerd.pid")" 2>/dev/null || break
    sleep 1
  done
  log "dockerd did not come up; last lines of its log:"; tail -20 "$root/dockerd.log" >&2; return 1
}

stop_docker() {
  # Only a dockerd this script started (its pid file), never one that was already running.
  local pidf="$root/dockerd.pid" pid
  [ -s "$pidf" ] || { log "no dockerd started by this script"; return 0; }
  pid="$(cat "$pidf")"
  if kill -0 "$pid" 2>/dev/null && [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = dockerd ]; then
    log "stopping dockerd (pid $pid)"; kill -TERM "$pid"
    local i; for i in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  fi
  rm -f "$pidf"
}

# ------------------------------------------------------------------------------------- tools
k8s="$(awk '$1=="k8s.io/kubernetes"{print $2; exit}' "$here/k8s/go.mod")"
kindv="$(cd "$here" && go list -m -f '{{.Version}}' sigs.k8s.io/kind)"
minor="${k8s#v1.}"; minor="${minor%%.*}"
cv=k8s.io/component-base/version
k8sld="-s -w -X $cv.gitVersion=$k8s -X $cv.gitMajor=1 -X $cv.gitMinor=$minor -X $cv.gitTreeState=clean -X $cv.buildDate=1970-01-01T00:00:00Z"
export GOFLAGS="-mod=readonly -buildvcs=false"
jobs="${KAISCHED_KIND_JOBS:-2}"

build_tools() {
  command -v go >/dev/null || { log "go is not installed (need Go >= 1.26)"; return 1; }
  local tmp; tmp="$(mktemp -d "$bindir/.build.XXXXXX")"
  if [ ! -x "$bindir/kind" ]; then
    log "building kind $kindv"
    (cd "$here" && CGO_ENABLED=0 go build -trimpath -p "$jobs" -ldflags "-s -w" -o "$tmp/kind" sigs.k8s.io/kind)
    mv -f "$tmp/kind" "$bindir/kind"
  fi
  if [ ! -x "$bindir/kubectl" ]; then
    log "building kubectl $k8s"
    (cd "$here/k8s" && CGO_ENABLED=0 go build -trimpath -p "$jobs" -ldflags "$k8sld" -o "$tmp/kubectl" k8s.io/kubernetes/cmd/kubectl)
    mv -f "$tmp/kubectl" "$bindir/kubectl"
  fi
  rm -rf "$tmp"
  "$bindir/kind" version >&2
  "$bindir/kubectl" version --client >&2
}

# ------------------------------------------------------------------------------------- probe
# A tiny image made here: one static Go binary in an otherwise empty root filesystem, imported
# with `docker import` (never pulled). Proves the engine runs containers on this machine.
probe() {
  if ! docker image inspect kaisched-probe:1 >/dev/null 2>&1; then
    local t; t="$(mktemp -d)"
    mkdir -p "$t/src" "$t/root"
    cat > "$t/src/main.go" <<'GO'
package main

import (
	"fmt"
	"os"
)

func main() {
	h, _ := os.Hostname()
	fmt.Printf("probe ok in container %s, pid %d\n", h, os.Getpid())
}
GO
    printf 'module probe\n\ngo 1.22\n' > "$t/src/go.mod"
    (cd "$t/src" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$t/root/probe" .)
    tar -C "$t/root" -c . | docker import --change 'ENTRYPOINT ["/probe"]' - kaisched-probe:1 >/dev/null
    rm -rf "$t"
  fi
  local out; out="$(docker run --rm kaisched-probe:1)"
  log "$out"
  [[ "$out" == "probe ok in container "* ]]
}

case "${1:-all}" in
  dir) ;;
  docker) timed docker start_docker ;;
  stop-docker) stop_docker ;;
  probe) timed probe probe ;;
  tools) timed tools build_tools ;;
  all)
    timed docker start_docker
    timed probe probe
    timed tools build_tools
    ;;
  *) log "unknown step: $1"; exit 2 ;;
esac
echo "$dir"
