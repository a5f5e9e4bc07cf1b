#!/usr/bin/env bash
# make demo: build what is missing, start the lab (hack/lab), create a
# LoadBalancer Service and show its EXTERNAL-IP, the ToR's ECMP route and
# 100 requests from the client spread over the nodes. The lab keeps
# running; "hack/demo.sh down" (make demo-down) removes it. See docs/lab.md.
set -euo pipefail
cd "$(dirname "$0")/.."
LAB_DIR=${BMCCM_LAB_DIR:-/run/bmccm-lab}
PREFIX=bmlab-
LAB=bin/bmccm-lab

build_lab() {
	mkdir -p bin
	CGO_ENABLED=0 go build -o "$LAB" ./hack/lab
}

if [[ ${1:-up} == down ]]; then
	if [[ ! -x $LAB ]]; then build_lab; fi
	exec "$LAB" down --dir="$LAB_DIR"
fi

if [[ $(id -u) != 0 ]]; then
	echo "make demo needs root (network namespaces, FRR)" >&2
	exit 1
fi
for tool in ip vtysh etcd /usr/lib/frr/bgpd; do
	command -v "$tool" >/dev/null || [[ -x $tool ]] || { echo "make demo needs $tool (apt-get install iproute2 frr etcd-server)" >&2; exit 1; }
done

echo "== building (kube-apiserver and kubectl are built once into the cache; the first time takes ~10 minutes)"
K8S_BIN=$(hack/build-k8s.sh)
KUBECTL="$K8S_BIN/kubectl"
build_lab
"$LAB" up --dir="$LAB_DIR" --prefix="$PREFIX" --k8s-bin="$K8S_BIN"

export KUBECONFIG="$LAB_DIR/controlplane/admin.kubeconfig"
echo
echo "== a dual-stack LoadBalancer Service"
"$KUBECTL" apply -f - <<'YAML'
apiVersion: v1
kind: Service
metadata:
  name: demo
  namespace: default
spec:
  type: LoadBalancer
  ipFamilyPolicy: PreferDualStack
  ipFamilies: [IPv4, IPv6]
  selector: {app: demo}
  ports:
  - {name: http, port: 80, targetPort: 8080}
YAML
VIP4=
for _ in $(seq 240); do
	VIP4=$("$KUBECTL" get svc demo -o jsonpath='{.status.loadBalancer.ingress[?(@.ip)].ip}' | tr ' ' '\n' | grep -v : | head -1 || true)
	[[ -n $VIP4 ]] && break
	sleep 0.5
done
if [[ -z $VIP4 ]]; then
	echo "the Service got no EXTERNAL-IP; see kubectl describe svc demo and $LAB_DIR/logs" >&2
	exit 1
fi
# The requests below go client -> either ToR -> a node: wait for exactly
# that path, every node's agent holding the VIP, every ToR with a next hop
# per node of its rack and the client's ECMP route through both ToRs (up
# to 2 minutes, for a busy machine).
nexthops() { ip -n "$1" route show "$VIP4" | grep -c nexthop || true; }
routed() {
	for n in a1 a2 a3 b1 b2 b3; do
		# Not "| grep -q": under pipefail its early exit fails the pipe.
		[[ $(ip -n "${PREFIX}$n" addr show dev lo) == *"inet $VIP4/32 "* ]] || return 1
	done
	[[ $(nexthops ${PREFIX}tor-a) -eq 3 && $(nexthops ${PREFIX}tor-b) -eq 3 && $(nexthops ${PREFIX}client) -eq 2 ]]
}
for _ in $(seq 480); do
	routed && break
	sleep 0.25
done
if ! routed; then
	echo "$VIP4 is not routed from the client through both ToRs to every node; see $LAB_DIR/logs" >&2
	exit 1
fi
echo
echo "\$ kubectl get svc demo"
"$KUBECTL" get svc demo
echo
echo "== rack A's ToR: its kernel route for $VIP4 (one next hop per node of rack A)"
echo "\$ ip -n ${PREFIX}tor-a route show $VIP4"
ip -n ${PREFIX}tor-a route show "$VIP4"
echo "\$ vtysh -c 'show ip route $VIP4'   (in ${PREFIX}tor-a)"
vtysh --vty_socket "$LAB_DIR/frr/rack-a" -c "show ip route $VIP4" | sed -n '/^Routing entry/,$p'
echo
echo "== 100 requests from the client (${PREFIX}client) to http://$VIP4/, a new connection each"
ip netns exec ${PREFIX}client "$LAB_DIR/bin/lbprobe" --url="http://$VIP4/" --count=100 --timeout=2s --summary
cat <<EOT

The lab keeps running. Try:
  export KUBECONFIG=$KUBECONFIG
  $KUBECTL get nodes -o wide
  $KUBECTL get svc
  vtysh --vty_socket $LAB_DIR/frr/rack-a -c 'show bgp ipv4 unicast'     # rack B: frr/rack-b
  ip -n ${PREFIX}tor-b -6 route
  ip netns exec ${PREFIX}client curl -s http://$VIP4/
  touch $LAB_DIR/nodes/node-a1.fail   # node-a1's kube-proxy healthz fails: its next hop leaves
  go run ./hack/lab status --dir=$LAB_DIR
  logs: $LAB_DIR/logs/
Remove it all with: make demo-down
EOT
