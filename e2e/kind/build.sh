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
#   base     the kind base image (kaisched/kind-base:<key>), then a boot check of it.
#
# Usage: build.sh [all|docker|probe|tools|base|stop-docker|dir]   (default: all)
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
  local extra=()
  if [ "$(awk '/^CapBnd:/{print $2}' /proc/self/status)" != "$(printf '%016x' $(( (1 << ($(cat /proc/sys/kernel/cap_last_cap) + 1)) - 1 )))" ]; then
    # This host's capability bounding set is short of the kernel's: privileged containers need
    # the runc front that asks only for what may be held (see e2e/kind/runc-bounded).
    command -v capsh >/dev/null || apt-get install -y -qq libcap2-bin >/dev/null
    log "capability bounding set $(awk '/^CapBnd:/{print $2}' /proc/self/status) is short: runc-bounded is the default runtime"
    install -m 0755 "$here/runc-bounded" "$root/runc-bounded"
    extra=(--add-runtime "runc-bounded=$root/runc-bounded" --default-runtime runc-bounded)
  fi
  setsid nohup dockerd --log-level=warn "${extra[@]}" >"$root/dockerd.log" 2>&1 < /dev/null &
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

# ------------------------------------------------------------------------------------- base
# The kind base image, made the way kind's images/base/Dockerfile makes it, from what this machine
# can reach: a Debian root filesystem from debootstrap, kind's own files for it (images/base/files
# in the pinned kind module, read from the module cache), containerd built from its Go module at
# the version that Dockerfile pins (e2e/kind/containerd/go.mod), Debian's runc and CNI plugins.
debian_suite="${KAISCHED_KIND_DEBIAN_SUITE:-bookworm}"
debian_mirror="${KAISCHED_KIND_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
base_packages=systemd,systemd-sysv,dbus,conntrack,iptables,nftables,iproute2,ethtool,util-linux,mount,kmod,libseccomp2,pigz,fuse-overlayfs,e2fsprogs,bash,ca-certificates,curl,jq,procps,runc,containernetworking-plugins,socat
base_image="kaisched/kind-base:$key"
kind_dir() { (cd "$here" && go mod download sigs.k8s.io/kind && go list -m -f '{{.Dir}}' sigs.k8s.io/kind); }

build_containerd() {
  local want=(containerd containerd-shim-runc-v2 ctr) b miss=0
  for b in "${want[@]}"; do [ -x "$bindir/$b" ] || miss=1; done
  [ "$miss" = 0 ] && return 0
  local v tmp; v="$(cd "$here/containerd" && go list -m -f '{{.Version}}' github.com/containerd/containerd/v2)"
  tmp="$(mktemp -d "$bindir/.build.XXXXXX")"
  log "building containerd $v"
  (cd "$here/containerd" && CGO_ENABLED=0 go build -trimpath -p "$jobs" -tags "no_aufs no_zfs no_btrfs no_devmapper" \
     -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=$v" -o "$tmp/" \
     github.com/containerd/containerd/v2/cmd/containerd github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 \
     github.com/containerd/containerd/v2/cmd/ctr)
  for b in "${want[@]}"; do mv -f "$tmp/$b" "$bindir/$b"; done
  rm -rf "$tmp"
}

build_base() {
  if docker image inspect "$base_image" >/dev/null 2>&1; then log "$base_image present"; return 0; fi
  command -v debootstrap >/dev/null || { export DEBIAN_FRONTEND=noninteractive; apt-get install -y -qq debootstrap >/dev/null; }
  timed containerd build_containerd
  local kd f tmp r t0; kd="$(kind_dir)/images/base/files"
  tmp="$(mktemp -d "$dir/.base.XXXXXX")"; r="$tmp/root"
  t0=$(date +%s)
  log "debootstrap $debian_suite into $r"
  debootstrap --variant=minbase --include="$base_packages" "$debian_suite" "$r" "$debian_mirror" > "$tmp/debootstrap.log" 2>&1 \
    || { tail -20 "$tmp/debootstrap.log" >&2; return 1; }
  echo "debootstrap $(( $(date +%s) - t0 ))s $(date -u +%FT%TZ)" >> "$dir/TIMINGS"
  # kind's files, with the modes its Dockerfile gives them
  install -d -m 0755 "$r/kind" "$r/kind/bin" "$r/LICENSES" "$r/etc/containerd" "$r/etc/default" "$r/etc/sysctl.d" \
    "$r/etc/systemd/system/kubelet.service.d" "$r/usr/local/bin" "$r/opt/cni/bin" "$r/etc/kubernetes/manifests"
  install -m 0755 "$kd"/usr/local/bin/* "$r/usr/local/bin/"
  for f in "$kd"/kind/*; do [ -f "$f" ] && install -m 0644 "$f" "$r/kind/"; done
  install -m 0755 "$kd"/kind/bin/* "$r/kind/bin/"
  install -m 0644 "$kd"/LICENSES/* "$r/LICENSES/"
  for f in "$kd"/etc/*; do [ -f "$f" ] && install -m 0644 "$f" "$r/etc/"; done
  install -m 0644 "$kd"/etc/containerd/* "$r/etc/containerd/"
  install -m 0644 "$kd"/etc/default/* "$r/etc/default/"
  install -m 0644 "$kd"/etc/sysctl.d/* "$r/etc/sysctl.d/"
  for f in "$kd"/etc/systemd/system/*; do [ -f "$f" ] && install -m 0644 "$f" "$r/etc/systemd/system/"; done
  install -m 0644 "$kd"/etc/systemd/system/kubelet.service.d/* "$r/etc/systemd/system/kubelet.service.d/"
  install -m 0755 "$bindir/containerd" "$bindir/containerd-shim-runc-v2" "$bindir/ctr" "$r/usr/local/bin/"
  for f in host-local loopback ptp portmap; do ln -sf "/usr/lib/cni/$f" "$r/opt/cni/bin/$f"; done
  # the clean-up and service set-up of kind's Dockerfile
  find "$r/lib/systemd/system/sysinit.target.wants/" -name systemd-tmpfiles-setup.service -delete
  rm -f "$r"/lib/systemd/system/multi-user.target.wants/* "$r"/etc/systemd/system/*.wants/* \
        "$r"/lib/systemd/system/local-fs.target.wants/* "$r"/lib/systemd/system/sockets.target.wants/*udev* \
        "$r"/lib/systemd/system/sockets.target.wants/*initctl* "$r"/lib/systemd/system/basic.target.wants/*
  echo "ReadKMsg=no" >> "$r/etc/systemd/journald.conf"
  ln -sf /usr/lib/systemd/systemd "$r/sbin/init"
  chroot "$r" systemctl enable kubelet.service containerd.service undo-mount-hacks.service >/dev/null 2>&1
  chroot "$r" systemctl mask systemd-binfmt.service >/dev/null 2>&1
  chroot "$r" /usr/local/bin/ctr oci spec \
    | jq '.hooks.createContainer[.hooks.createContainer| length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' \
    | jq 'del(.process.rlimits)' > "$r/etc/containerd/cri-base.json"
  rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/*.bin "$r"/var/cache/apt/archives/*.deb "$r"/var/log/* "$r"/tmp/* "$r"/var/tmp/* \
         "$r"/usr/share/doc/* "$r"/usr/share/man/*
  tar --numeric-owner -C "$r" -c . | docker import - "$base_image-rootfs" >/dev/null
  rm -rf "$tmp"
  # `docker import` cannot set STOPSIGNAL: a one-step build on the local image adds the metadata
  # (no registry: the FROM image is local).
  printf 'FROM %s\nENV container=docker\nSTOPSIGNAL SIGRTMIN+3\nENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]\n' \
    "$base_image-rootfs" | docker build -q -t "$base_image" - >/dev/null
  docker rmi "$base_image-rootfs" >/dev/null
  log "made $base_image"
}

# Boots the base image the way kind runs a node (privileged, systemd as pid 1) and waits for
# containerd to answer inside it.
check_base() {
  local c="kaisched-basecheck-$$" ok=0 i
  docker run -d --name "$c" --privileged --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
    --tmpfs /tmp --tmpfs /run -v /var --cgroupns=private "$base_image" >/dev/null
  for i in $(seq 1 60); do
    if docker exec "$c" ctr version >/dev/null 2>&1; then ok=1; break; fi
    sleep 1
  done
  if [ "$ok" = 1 ]; then
    log "base boots: $(docker exec "$c" systemctl is-system-running 2>&1 || true); $(docker exec "$c" ctr version | grep -m1 Version | xargs)"
  else
    log "base did not bring containerd up; its journal:"; docker exec "$c" journalctl -b --no-pager 2>&1 | tail -30 >&2 || docker logs "$c" 2>&1 | tail -30 >&2
  fi
  docker rm -f "$c" >/dev/null
  [ "$ok" = 1 ]
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
  base) timed base build_base; timed base-check check_base ;;
  all)
    timed docker start_docker
    timed probe probe
    timed tools build_tools
    timed base build_base
    timed base-check check_base
    ;;
  *) log "unknown step: $1"; exit 2 ;;
esac
echo "$dir"
