#!/usr/bin/env bash
# make demo-cluster: the real thing. A kubeadm cluster of real kubelets,
# containerd and kube-proxy in network and mount namespaces (three racks
# behind FRR ToRs; control-plane nodes in two racks only), the CCM
# installed as the DaemonSet of manifests/ from an image built here, a
# Deployment of 6 netserver pods behind a LoadBalancer Service, the ToR's
# ECMP route and 100 requests from the client spread over pods and nodes.
# The cluster keeps running; "hack/demo-cluster.sh down" (make
# demo-cluster-down) removes it. See docs/real-cluster.md.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${BMCCM_CLUSTER_DIR:-/var/tmp/bmccm-cluster}
PREFIX=bmrn-
BIN=bin/bmccm-cluster

build_cluster() {
	mkdir -p bin
	CGO_ENABLED=0 go build -o "$BIN" ./hack/cluster
}

if [[ ${1:-up} == down ]]; then
	if [[ ! -x $BIN ]]; then build_cluster; fi
	exec "$BIN" down --dir="$DIR"
fi

if [[ $(id -u) != 0 ]]; then
	echo "make demo-cluster needs root (namespaces, cgroups, mounts)" >&2
	exit 1
fi
for tool in ip vtysh nsenter unshare runc iptables /usr/lib/frr/bgpd /usr/lib/cni/bridge; do
	command -v "$tool" >/dev/null || [[ -x $tool ]] || { echo "make demo-cluster needs $tool (apt-get install iproute2 frr util-linux runc iptables containernetworking-plugins)" >&2; exit 1; }
done

echo "== building (the Kubernetes binaries, containerd and etcd are built once into the cache; the first time takes ~20 minutes)"
K8S_BIN=$(hack/build-k8s.sh)
CTR_BIN=$(hack/build-containerd.sh)
ETCD_BIN=$(hack/build-etcd.sh)
KUBECTL="$K8S_BIN/kubectl"
build_cluster
"$BIN" up --dir="$DIR" --prefix="$PREFIX" --k8s-bin="$K8S_BIN" --containerd-bin="$CTR_BIN" --etcd-bin="$ETCD_BIN"

export KUBECONFIG="$DIR/nodes/cp-a1/etc/kubernetes/admin.conf"
echo
echo "== a Deployment of 6 pods and a LoadBalancer Service in front of them"
"$KUBECTL" apply -f - <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata: {name: demo, namespace: default}
spec:
  replicas: 6
  selector: {matchLabels: {app: demo}}
  template:
    metadata: {labels: {app: demo}}
    spec:
      tolerations: [{key: node-role.kubernetes.io/control-plane, operator: Exists, effect: NoSchedule}]
      topologySpreadConstraints:
      - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: demo}}}
      containers:
      - name: netserver
        image: registry.lab.example/k8s/netserver:lab
        imagePullPolicy: Never
        ports: [{containerPort: 8080}]
        env:
        - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
        - {name: NODE_NAME, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
        readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: demo, namespace: default}
spec:
  type: LoadBalancer
  selector: {app: demo}
  ports: [{name: http, port: 80, targetPort: 8080}]
YAML
if ! "$KUBECTL" rollout status deployment/demo --timeout=5m; then
	echo "the Deployment did not become ready; the nodes' taints and the Warning Events:" >&2
	"$KUBECTL" get nodes -o custom-columns=NODE:.metadata.name,TAINTS:.spec.taints >&2
	"$KUBECTL" get events -A --field-selector type=Warning >&2
	exit 1
fi
VIP=
for _ in $(seq 480); do
	VIP=$("$KUBECTL" get svc demo -o jsonpath='{.status.loadBalancer.ingress[0].ip}')
	[[ -n $VIP ]] && break
	sleep 0.25
done
if [[ -z $VIP ]]; then
	echo "the Service got no EXTERNAL-IP; see kubectl describe svc demo and $DIR/logs" >&2
	exit 1
fi
# Wait for exactly the path the requests take: every ToR with a next hop
# per eligible node of its rack (kubeadm labels control-plane nodes
# node.kubernetes.io/exclude-from-external-load-balancers, so racks a and b
# carry the VIP via their worker only), the client with a route through
# every ToR.
nexthops() {
	local route
	route=$(ip -n "$1" route show "$VIP")
	if grep -q nexthop <<<"$route"; then
		grep -c nexthop <<<"$route"
	elif grep -q via <<<"$route"; then
		echo 1
	else
		echo 0
	fi
}
eligible() {
	"$KUBECTL" get nodes --no-headers -l "topology.kubernetes.io/zone=zone-$1,!node.kubernetes.io/exclude-from-external-load-balancers" | wc -l
}
want_a=$(eligible a) want_b=$(eligible b) want_c=$(eligible c)
routed() { [[ $(nexthops ${PREFIX}tor-a) -eq $want_a && $(nexthops ${PREFIX}tor-b) -eq $want_b && $(nexthops ${PREFIX}tor-c) -eq $want_c && $(nexthops ${PREFIX}client) -eq 3 ]]; }
for _ in $(seq 480); do
	routed && break
	sleep 0.25
done
routed || { echo "$VIP is not routed through every ToR to every eligible node (want $want_a / $want_b / $want_c next hops on tor-a / tor-b / tor-c); see $DIR/logs" >&2; exit 1; }
echo
echo "\$ kubectl get nodes,pods,svc -o wide"
"$KUBECTL" get nodes,pods,svc -o wide
echo
echo "== rack C's ToR (no control-plane node in its rack: multihop sessions) routes $VIP over its nodes"
echo "\$ ip -n ${PREFIX}tor-c route show $VIP"
ip -n ${PREFIX}tor-c route show "$VIP"
echo "\$ vtysh -c 'show bgp summary'   (in ${PREFIX}tor-c)"
vtysh --vty_socket "$DIR/frr/rack-c" -c "show bgp summary" | sed -n '/^Neighbor/,$p'
echo
echo "== 100 requests from the client to http://$VIP/, a new connection each: the answering pod and its node"
ip netns exec ${PREFIX}client "$DIR/bin/lbprobe" --url="http://$VIP/" --count=100 --timeout=2s --summary
cat <<EOT

The cluster keeps running. Try:
  export KUBECONFIG=$KUBECONFIG
  $KUBECTL -n kube-system get pods -o wide
  $KUBECTL -n kube-system logs ds/baremetal-cloud-controller-manager
  vtysh --vty_socket $DIR/frr/rack-a -c 'show bgp ipv4 unicast $VIP'
  ip netns exec ${PREFIX}client curl -s http://$VIP/
  go run ./hack/cluster status --dir=$DIR
  logs: $DIR/logs/ (kubelet, containerd, kubeadm per node); pods: $DIR/nodes/<node>/varlog/pods/
Remove it all with: make demo-cluster-down
EOT
