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
#   k8s      kubelet, kubeadm, kube-proxy, the control-plane binaries and etcd.
#   images   the images a node preloads (control plane, kube-proxy, etcd, coredns, pause), saved to images.tar.
#   node     the kind node image kaisched/kind-node:<k8s version>-<key>, as `kind build node-image` makes one.
#   python   a Python base image from Debian packages (kaisched/python-base:<suite>-<key>).
#   image    our image (KAISCHED_E2E_IMAGE, default kaisched:e2e) from deploy/image/Dockerfile on it.
#   workload the e2e tests' container image (e2e/kind/workload), kaisched/e2e-workload:<hash>.
#   env      (not in all) prints the e2e provider's environment for these, as `export` lines.
#   base     the kind base image (kaisched/kind-base:<key>), then a boot check of it.
#
# Usage: build.sh [all|docker|probe|tools|base|k8s|images|node|python|image|workload|env|stop-docker|dir]   (default: all)
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
    { command -v capsh && command -v jq; } >/dev/null || apt-get install -y -qq libcap2-bin jq >/dev/null
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

# ------------------------------------------------------------------------------------- k8s
# The node's Kubernetes binaries, from e2e/kind/k8s (the version e2e/testbin pins), like e2e/testbin
# builds its own: static, trimmed, the version stamped the way upstream's release build stamps it.
k8s_bins=(kubelet kubeadm kube-apiserver kube-controller-manager kube-scheduler kube-proxy)
build_k8s() {
  local miss=() b tmp
  for b in "${k8s_bins[@]}"; do [ -x "$bindir/$b" ] || miss+=("k8s.io/kubernetes/cmd/$b"); done
  tmp="$(mktemp -d "$bindir/.build.XXXXXX")"
  if [ ${#miss[@]} -gt 0 ]; then
    log "building ${miss[*]##*/} $k8s"
    (cd "$here/k8s" && CGO_ENABLED=0 go build -trimpath -p "$jobs" -ldflags "$k8sld" -o "$tmp/" "${miss[@]}")
    for b in "${miss[@]}"; do mv -f "$tmp/${b##*/}" "$bindir/"; done
  fi
  if [ ! -x "$bindir/etcd" ]; then
    log "building etcd $(awk '$1=="go.etcd.io/etcd/server/v3"{print $2; exit}' "$here/k8s/go.mod")"
    (cd "$here/k8s" && CGO_ENABLED=0 go build -trimpath -p "$jobs" -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3)
    mv -f "$tmp/etcd" "$bindir/etcd"
  fi
  rm -rf "$tmp"
  "$bindir/kubelet" --version >&2
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
  if ! docker run -d --name "$c" --privileged --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
    --tmpfs /tmp --tmpfs /run -v /var --cgroupns=private "$base_image" >/dev/null; then
    docker rm -f "$c" >/dev/null 2>&1 || true
    return 1
  fi
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

# ------------------------------------------------------------------------------------- images
# The images a kind node preloads, made here: `kubeadm config images list` names them, each is
# built from its Go module (C source for pause) and made with `docker build` FROM scratch or FROM
# the base image (no registry). kind's kindnetd and local-path-provisioner images are left out:
# kindnetd's module is not served by the Go module proxy (the e2e kind config disables the
# default CNI, and e2e/kind/cni.sh sets up the pod network with the node's CNI plugins), and
# without the storage manifest kind falls back to its host-path StorageClass.
images_tar="$dir/images.tar"
build_coredns() {
  [ -x "$bindir/coredns" ] && return 0
  local v tmp; v="$(cd "$here/coredns" && go list -m -f '{{.Version}}' github.com/coredns/coredns)"
  tmp="$(mktemp -d "$bindir/.build.XXXXXX")"
  log "building coredns $v"
  (cd "$here/coredns" && CGO_ENABLED=0 go build -trimpath -p "$jobs" -ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$v" \
     -o "$tmp/coredns" github.com/coredns/coredns)
  mv -f "$tmp/coredns" "$bindir/coredns"; rm -rf "$tmp"
}
build_pause() {
  [ -x "$bindir/pause" ] && return 0
  local src; src="$(cd "$here/k8s" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause/linux/pause.c"
  log "building pause from $src"
  cc -Os -Wall -Werror -static -DVERSION="v${pause_v}" -o "$bindir/pause.tmp" "$src"
  strip "$bindir/pause.tmp"; mv -f "$bindir/pause.tmp" "$bindir/pause"
}
# A root with what a static binary may look for: /tmp, users, CA certificates.
static_root() { # static_root DIR
  install -d -m 0755 "$1/etc/ssl/certs" "$1/usr/local/bin"; install -d -m 1777 "$1/tmp"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n' > "$1/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\n' > "$1/etc/group"
  printf 'hosts: files dns\n' > "$1/etc/nsswitch.conf"
  cp /etc/ssl/certs/ca-certificates.crt "$1/etc/ssl/certs/"
}
image_from() { # image_from TAG FROM BINARY DEST [ENTRYPOINT-JSON]
  local tag="$1" from="$2" bin="$3" dest="$4" ep="${5:-}" ctx
  ctx="$(mktemp -d "$dir/.img.XXXXXX")"
  mkdir -p "$ctx/root"
  [ "$from" = scratch ] && static_root "$ctx/root"
  install -D -m 0755 "$bin" "$ctx/root$dest"
  { echo "FROM $from"; echo "COPY root/ /"; echo "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    [ -n "$ep" ] && echo "ENTRYPOINT $ep"; } > "$ctx/Dockerfile"
  docker build -q -t "$tag" "$ctx" >/dev/null 2>&1 || docker build -t "$tag" "$ctx" >&2
  rm -rf "$ctx"
}
build_images() {
  [ -s "$images_tar" ] && { log "images present ($images_tar)"; return 0; }
  local list reg=registry.k8s.io
  list="$("$bindir/kubeadm" config images list --kubernetes-version "$k8s" 2>/dev/null)"
  log "kubeadm needs: $(echo $list)"
  pause_v="$(echo "$list" | sed -n 's|.*/pause:||p')"
  timed coredns build_coredns
  timed pause build_pause
  local b want=() img
  for b in kube-apiserver kube-controller-manager kube-scheduler; do
    image_from "$reg/$b:$k8s" scratch "$bindir/$b" "/usr/local/bin/$b"; want+=("$reg/$b:$k8s")
  done
  # kube-proxy programs the node's packet filter: it needs iptables/nft, which the base image has
  image_from "$reg/kube-proxy:$k8s" "$base_image" "$bindir/kube-proxy" /usr/local/bin/kube-proxy '[]'; want+=("$reg/kube-proxy:$k8s")
  img="$(echo "$list" | grep '/etcd:')"; image_from "$img" scratch "$bindir/etcd" /usr/local/bin/etcd; want+=("$img")
  img="$(echo "$list" | grep '/coredns')"; image_from "$img" scratch "$bindir/coredns" /coredns '["/coredns"]'; want+=("$img")
  img="$(echo "$list" | grep '/pause:')"; image_from "$img" scratch "$bindir/pause" /pause '["/pause"]'; want+=("$img")
  # kind's containerd config names its own sandbox image: the same pause under that tag
  local sandbox; sandbox="$(sed -n 's/^ *sandbox_image *= *"\(.*\)"/\1/p' "$(kind_dir)/images/base/files/etc/containerd/config.toml")"
  if [ -n "$sandbox" ] && [ "$sandbox" != "$img" ]; then docker tag "$img" "$sandbox"; want+=("$sandbox"); fi
  # (no `printf | grep -q` here: under pipefail, grep quitting at the first match can fail printf with SIGPIPE)
  local made=" ${want[*]} "
  for img in $list; do
    [[ "$made" == *" $img "* ]] || { log "kubeadm needs $img, which this script does not make"; return 1; }
  done
  docker save -o "$images_tar.tmp" "${want[@]}"
  mv -f "$images_tar.tmp" "$images_tar"
  printf '%s\n' "${want[@]}" > "$dir/IMAGES"
  log "saved ${#want[@]} images to $images_tar ($(du -h "$images_tar" | cut -f1))"
}

# ------------------------------------------------------------------------------------- node
# The node image, assembled as `kind build node-image` assembles one (pkg/build/nodeimage in the
# kind module): in a container of the base image, the binaries go to /usr/bin, the version to
# /kind/version, containerd starts and imports the preloaded images (pinned, not unpacked, the
# flags kind uses), then the container is committed with the node entrypoint. kind's own command
# cannot be used here: it fetches from a registry every image its bits do not carry.
node_image="kaisched/kind-node:$k8s-$key"
build_node() {
  if docker image inspect "$node_image" >/dev/null 2>&1; then log "$node_image present"; return 0; fi
  local c="kaisched-nodebuild-$$" b
  docker run -d --name "$c" --entrypoint=sleep --security-opt seccomp=unconfined "$base_image" infinity >/dev/null
  # shellcheck disable=SC2064
  trap "docker rm -f -v $c >/dev/null 2>&1 || true" RETURN
  for b in kubeadm kubelet kubectl; do
    docker cp "$bindir/$b" "$c:/usr/bin/$b"
    docker exec "$c" chmod +x "/usr/bin/$b"; docker exec "$c" chown root:root "/usr/bin/$b"
  done
  printf '%s' "$k8s" | docker exec -i "$c" tee /kind/version >/dev/null
  docker exec "$c" bash -c 'nohup containerd > /dev/null 2>&1 &'
  docker exec "$c" bash -c 'set -e; for i in 0 1 2 3 4 5; do [ -S /run/containerd/containerd.sock ] && break; sleep 1; done; ctr info >/dev/null'
  docker exec -i "$c" ctr --namespace=k8s.io images import --label=io.cri-containerd.pinned=pinned --all-platforms --no-unpack --digests - < "$images_tar" >&2
  docker exec "$c" ctr --namespace=k8s.io images list -q >&2
  docker exec "$c" pkill containerd || true
  sleep 1
  docker commit --change 'ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]' \
    --change 'ENV HTTP_PROXY="" HTTPS_PROXY="" NO_PROXY=""' "$c" "$node_image" >/dev/null
  echo "$node_image" > "$dir/NODE_IMAGE"
  log "made $node_image"
}

# ------------------------------------------------------------------------------------- python
# A Python base for deploy/image/Dockerfile (PYTHON_IMAGE), made from Debian packages: Debian's
# python3 with venv, `python` on PATH, the user tools the Dockerfile calls. Then our image, built
# on it; its `pip install` reaches PyPI, as it does on any machine that builds the image.
python_image="kaisched/python-base:$debian_suite-$key"
build_python_base() {
  if docker image inspect "$python_image" >/dev/null 2>&1; then log "$python_image present"; return 0; fi
  command -v debootstrap >/dev/null || { export DEBIAN_FRONTEND=noninteractive; apt-get install -y -qq debootstrap >/dev/null; }
  local tmp r; tmp="$(mktemp -d "$dir/.py.XXXXXX")"; r="$tmp/root"
  debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates,passwd \
    "$debian_suite" "$r" "$debian_mirror" > "$tmp/debootstrap.log" 2>&1 || { tail -20 "$tmp/debootstrap.log" >&2; return 1; }
  rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/*.bin "$r"/var/cache/apt/archives/*.deb "$r"/var/log/* \
         "$r"/usr/share/doc/* "$r"/usr/share/man/*
  # trust what the building machine trusts: where its network inspects TLS (a local CA in its bundle),
  # the image's pip reaches PyPI only with that CA
  cp /etc/ssl/certs/ca-certificates.crt "$r/etc/ssl/certs/ca-certificates.crt"
  tar --numeric-owner -C "$r" -c . | docker import --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' - "$python_image" >/dev/null
  rm -rf "$tmp"
  docker run --rm "$python_image" python -c 'import sys, venv, ssl; print("python", sys.version.split()[0])' >&2
}
scheduler_image="${KAISCHED_E2E_IMAGE:-kaisched:e2e}"
build_scheduler_image() {
  docker build -q --build-arg "PYTHON_IMAGE=$python_image" -f "$repo/deploy/image/Dockerfile" -t "$scheduler_image" "$repo" >/dev/null
  docker run --rm "$scheduler_image" --help | sed -n 1,3p >&2  # sed reads all: no SIGPIPE under pipefail
}

# ------------------------------------------------------------------------------------- workload
# The e2e tests' own container (e2e/kind/workload): one static binary in an empty root, imported.
workload_image="kaisched/e2e-workload:$(cat "$here/workload/go.mod" "$here/workload/main.go" | sha256sum | cut -c1-12)"
build_workload() {
  docker image inspect "$workload_image" >/dev/null 2>&1 && return 0
  local t; t="$(mktemp -d "$dir/.wl.XXXXXX")"
  (cd "$here/workload" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$t/workload" .)
  tar -C "$t" -c workload | docker import --change 'ENTRYPOINT ["/workload"]' --change 'CMD ["sleep"]' - "$workload_image" >/dev/null
  rm -rf "$t"
  docker run --rm "$workload_image" fail 0 0 >&2
}

# ------------------------------------------------------------------------------------- env
# What the e2e kind provider needs to use all this (e2e/cluster.py KindProvider), as shell lines.
print_env() {
  echo "export PATH=\"$bindir:\$PATH\""
  echo "export KAISCHED_E2E_KIND_NODE_IMAGE=\"$node_image\""
  echo "export KAISCHED_E2E_KIND_CONFIG=\"$here/cluster-local.yaml\""
  echo "export KAISCHED_E2E_KIND_CNI=\"$here/cni.sh\""
  echo "export KAISCHED_E2E_PYTHON_IMAGE=\"$python_image\""
  echo "export KAISCHED_E2E_WORKLOAD_IMAGE=\"$workload_image\""
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
  k8s) timed k8s build_k8s ;;
  images) timed images build_images ;;
  node) timed node build_node ;;
  python) timed python-base build_python_base ;;
  image) timed image build_scheduler_image ;;
  env) print_env; exit 0 ;;
  workload) timed workload build_workload ;;
  all)
    timed docker start_docker
    timed probe probe
    timed tools build_tools
    timed base build_base
    timed base-check check_base
    timed k8s build_k8s
    timed images build_images
    timed node build_node
    timed python-base build_python_base
    timed image build_scheduler_image
    timed workload build_workload
    ;;
  *) log "unknown step: $1"; exit 2 ;;
esac
echo "$dir"
