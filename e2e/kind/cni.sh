#!/usr/bin/env bash
# Pod network for a kind cluster created with `networking.disableDefaultCNI: true` (the node image
# built by e2e/kind/build.sh has no kindnetd). Does once what kindnetd keeps doing: on every node,
# a CNI config with the node's own pod CIDR (ptp + host-local + portmap, the plugins the node image
# carries in /opt/cni/bin), and a route to every other node's pod CIDR through that node's address.
# Nodes must not come or go afterwards (the e2e cluster's do not).
# Usage: e2e/kind/cni.sh CLUSTER-NAME KUBECONFIG
set -euo pipefail
name="$1" kubeconfig="$2"
kubectl_() { kubectl --kubeconfig "$kubeconfig" "$@"; }
# the controller manager gives each node its pod CIDR a moment after it registers
for i in $(seq 1 60); do
  missing="$(kubectl_ get nodes -o jsonpath='{range .items[*]}{.metadata.name}={.spec.podCIDR}{"\n"}{end}' | grep -c '=$' || true)"
  [ "$missing" = 0 ] && break
  sleep 1
done
mapfile -t rows < <(kubectl_ get nodes -o jsonpath='{range .items[*]}{.metadata.name} {.spec.podCIDR} {.status.addresses[?(@.type=="InternalIP")].address}{"\n"}{end}')
[ "${#rows[@]}" -gt 0 ] || { echo "cni.sh: no nodes in cluster $name" >&2; exit 1; }
for row in "${rows[@]}"; do
  read -r node cidr ip <<<"$row"
  [ -n "$cidr" ] || { echo "cni.sh: node $node has no pod CIDR" >&2; exit 1; }
  docker exec -i "$node" bash -c 'mkdir -p /etc/cni/net.d && cat > /etc/cni/net.d/10-kaisched.conflist' <<JSON
{
  "cniVersion": "0.4.0",
  "name": "kaisched",
  "plugins": [
    {"type": "ptp", "ipMasq": false, "mtu": 1500,
     "ipam": {"type": "host-local", "dataDir": "/run/cni-ipam-state",
              "routes": [{"dst": "0.0.0.0/0"}], "ranges": [[{"subnet": "$cidr"}]]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
JSON
  for other in "${rows[@]}"; do
    read -r onode ocidr oip <<<"$other"
    [ "$onode" = "$node" ] && continue
    docker exec "$node" ip route replace "$ocidr" via "$oip"
  done
  echo "cni.sh: $node $cidr ($ip)" >&2
done
