#!/usr/bin/env bash
# make conformance: Kubernetes' own LoadBalancer e2e tests (e2e.test of the
# pinned Kubernetes, `[sig-network] LoadBalancers`) against the real-node
# lab, the way cloud-provider-kind's CI runs them (KUBERNETES_CONFORMANCE_TEST=y,
# --provider=aws as the framework's null provider). It builds what is
# missing into the cache, brings the lab up ready for them (the agnhost and
# CoreDNS images on every node, kubeadm's CoreDNS addon, the tester
# namespace that reaches the apiserver and, through the ToRs, the VIPs),
# runs ginkgo inside the tester, writes the JUnit report and takes the lab
# down. See docs/conformance.md.
#
# Environment:
#   CONFORMANCE_REPORT_DIR  where the JUnit report (junit_01.xml), ginkgo's
#                           output and the lab's logs go (default
#                           _output/conformance)
#   CONFORMANCE_FOCUS       ginkgo --focus (default '\[sig-network\] LoadBalancers')
#   CONFORMANCE_SKIP        ginkgo --skip (default: none)
#   CONFORMANCE_PARALLEL    ginkgo --procs (default 4: most of the tests wait)
#   CONFORMANCE_KEEP=1      leave the cluster up afterwards (hack/conformance.sh down
#                           removes it)
#   BMCCM_CONFORMANCE_DIR   the cluster's directory (default /var/tmp/bmccm-conformance)
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${BMCCM_CONFORMANCE_DIR:-/var/tmp/bmccm-conformance}
PREFIX=bmcf-
BIN=bin/bmccm-cluster
REPORT=${CONFORMANCE_REPORT_DIR:-_output/conformance}
FOCUS=${CONFORMANCE_FOCUS:-'\[sig-network\] LoadBalancers'}
SKIP=${CONFORMANCE_SKIP:-}
PARALLEL=${CONFORMANCE_PARALLEL:-4}

build_cluster() {
	mkdir -p bin
	CGO_ENABLED=0 go build -o "$BIN" ./hack/cluster
}

if [[ ${1:-run} == down ]]; then
	if [[ ! -x $BIN ]]; then build_cluster; fi
	exec "$BIN" down --dir="$DIR"
fi

# Like the Go tests that need root or a tool: on a developer's machine
# they are skipped with the reason (make test runs this last); under
# CI=true, or asked for by name (make conformance), they fail.
missing() {
	echo "make conformance needs $1" >&2
	if [[ ${CONFORMANCE_OPTIONAL:-} == 1 && ${CI:-} != true ]]; then
		echo "SKIP: Kubernetes' LoadBalancer e2e tests not run (CI=true makes this a failure)" >&2
		exit 0
	fi
	exit 1
}
if [[ $(id -u) != 0 ]]; then
	missing "root (namespaces, cgroups, mounts)"
fi
for tool in ip vtysh nsenter unshare runc iptables /usr/lib/frr/bgpd /usr/lib/cni/bridge curl wget nc.openbsd; do
	command -v "$tool" >/dev/null || [[ -x $tool ]] || missing "$tool (apt-get install iproute2 frr util-linux runc iptables containernetworking-plugins curl wget netcat-openbsd)"
done

start=$(date +%s)
echo "== building (cached; cold: the Kubernetes binaries ~10 min, e2e.test ~15-35 min, CoreDNS a few)"
K8S_BIN=$(hack/build-k8s.sh)
CTR_BIN=$(hack/build-containerd.sh)
ETCD_BIN=$(hack/build-etcd.sh)
E2E_BIN=$(hack/build-e2e.sh)
COREDNS_BIN=$(hack/build-coredns.sh)
KUBECTL="$K8S_BIN/kubectl"
build_cluster
built=$(date +%s)

mkdir -p "$REPORT"
REPORT=$(cd "$REPORT" && pwd)
rm -f "$REPORT"/junit_*.xml

down() {
	# What a failure needs, before the cluster's directory goes: every
	# process's log (kubelets, containerd, kubeadm) and the pods' logs
	# (the CCM's, CoreDNS's, kube-proxy's, the control plane's).
	rm -rf "$REPORT/lab-logs"
	mkdir -p "$REPORT/lab-logs"
	cp -r "$DIR/logs" "$REPORT/lab-logs/processes" 2>/dev/null || true
	for pods in "$DIR"/nodes/*/varlog/pods; do
		node=$(basename "$(dirname "$(dirname "$pods")")")
		mkdir -p "$REPORT/lab-logs/pods/$node"
		cp -r "$pods"/kube-system_* "$REPORT/lab-logs/pods/$node/" 2>/dev/null || true
	done
	rm -rf "$DIR/e2e-tmp"
	if [[ ${CONFORMANCE_KEEP:-} == 1 ]]; then
		echo "== the cluster stays up (KUBECONFIG=$KUBECONFIG); hack/conformance.sh down removes it"
		return
	fi
	echo "== taking the cluster down"
	"$BIN" down --dir="$DIR"
}

echo "== the cluster, ready for the e2e tests"
"$BIN" up --dir="$DIR" --prefix="$PREFIX" --k8s-bin="$K8S_BIN" --containerd-bin="$CTR_BIN" --etcd-bin="$ETCD_BIN" \
	--e2e-bin="$E2E_BIN" --coredns-bin="$COREDNS_BIN"
export KUBECONFIG="$DIR/nodes/cp-a1/etc/kubernetes/admin.conf"
trap down EXIT
up=$(date +%s)

# The nodes a test pod may land on: the framework's --num-nodes.
nodes=$("$KUBECTL" get nodes -o jsonpath='{range .items[*]}{.metadata.name}{" "}{.spec.taints[*].effect}{"\n"}{end}' | grep -vc NoSchedule || true)
echo "== ginkgo in ${PREFIX}tester: focus '$FOCUS', skip '$SKIP', $nodes schedulable nodes, $PARALLEL processes; report in $REPORT"
rc=0
# The e2e binary leaves temporary files behind (a test-kuberc* directory
# per process, even when no kubectl test runs): they go in a directory of
# ours, removed with the cluster.
E2E_TMP="$DIR/e2e-tmp"
mkdir -p "$E2E_TMP"
ip netns exec "${PREFIX}tester" env KUBERNETES_CONFORMANCE_TEST=y KUBE_TEST_REPO_LIST="$DIR/e2e-repo-list.yaml" TMPDIR="$E2E_TMP" \
	"$E2E_BIN/ginkgo" --procs="$PARALLEL" --timeout=2h --no-color -v --focus="$FOCUS" --skip="$SKIP" \
	"$E2E_BIN/e2e.test" -- \
	--provider=aws --kubeconfig="$KUBECONFIG" --kubectl-path="$KUBECTL" --num-nodes="$nodes" \
	--report-dir="$REPORT" --disable-log-dump=true 2>&1 | tee "$REPORT/ginkgo.log" || rc=$?
done_at=$(date +%s)
echo "== build $((built - start)) s, cluster up $((up - built)) s, tests $((done_at - up)) s; exit $rc; JUnit: $REPORT/junit_01.xml"
exit "$rc"
