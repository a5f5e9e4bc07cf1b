package realnode

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/baremetal-ccm/baremetal-ccm/test/fabric"
)

// TestRealCluster runs the scenarios of the real-node lab in order on one
// cluster (building it takes minutes): kubeadm-made nodes with real
// kubelets, containerd, kube-proxy and pods, and the CCM DaemonSet. The
// figures it logs are recorded in docs/real-cluster.md.
func TestRealCluster(t *testing.T) {
	requireTools(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Minute)
	defer cancel()
	prefix := fabric.UniqueName("rn")[:6]
	if err := ReapStale(t.Logf); err != nil {
		t.Fatal(err)
	}
	before, err := CaptureHostState(ctx, prefix)
	if err != nil {
		t.Fatal(err)
	}
	o := testOptions(t, prefix)
	o.Images, err = BuildImages(ctx, ImageInputs{K8sBinDir: o.K8sBinDir, EtcdBinDir: os.Getenv("BMCCM_ETCD_BIN"), WorkDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	o.CCMTag = CCMTags[0]
	c, err := Up(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	ids := c.NamespaceIDs()
	down := false
	t.Cleanup(func() {
		if down {
			return
		}
		if t.Failed() {
			t.Logf("logs:\n%s", c.LogTails(30))
		}
		if err := c.Down(); err != nil {
			t.Errorf("down: %v", err)
		}
	})
	w := &world{c: c, ctx: ctx}
	w.deployWeb(t)

	t.Run("ClusterTrafficReachesEveryRack", w.clusterTraffic)
	t.Run("LocalPathsFollowEndpoints", w.localPolicy)
	t.Run("RackAwarePeeringAndMultihopRack", w.multihopRack)
	t.Run("PodRoutesFromTheCCM", w.podRoutes)
	t.Run("WeightedECMPFollowsEndpoints", w.weightedECMP)
	t.Run("NodeFailure", w.nodeFailure)
	t.Run("RollingUpdateOfTheCCM", w.rollingUpdate)
	t.Run("LeaderPodDeleted", w.leaderDeleted)
	t.Run("WholeClusterRestart", w.wholeRestart)
	t.Run("TeardownLeavesNothing", func(t *testing.T) {
		down = true
		if err := c.Down(); err != nil {
			t.Errorf("down: %v", err)
		}
		if left := ProcessesIn(ids); len(left) > 0 {
			t.Errorf("processes left in the nodes' namespaces: %v", left)
		}
		after, err := CaptureHostState(context.Background(), prefix)
		if err != nil {
			t.Fatal(err)
		}
		if d := before.Diff(after); len(d) > 0 {
			t.Errorf("the machine changed:\n%s", strings.Join(d, "\n"))
		}
	})
}

// world is the state the scenarios share.
type world struct {
	c   *Cluster
	ctx context.Context
	// webVIP is the Cluster-policy Service's address.
	webVIP netip.Addr
	// lbNodes may carry VIPs: the workers.
	lbNodes []string
}

const ns = "default"

func (w *world) deployWeb(t *testing.T) {
	t.Helper()
	if err := w.c.ApplyDeployment(w.ctx, Netserver(ns, "web", int32(len(w.c.Nodes)))); err != nil {
		t.Fatal(err)
	}
	if _, err := w.c.Kube.CoreV1().Services(ns).Create(w.ctx, LoadBalancer(ns, "web", "web", v1.ServiceExternalTrafficPolicyCluster), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := w.c.WaitDeploymentReady(w.ctx, ns, "web"); err != nil {
		t.Fatal(err)
	}
	if err := w.c.WaitKubeProxyEndpoints(w.ctx, ns, "web", "http", len(w.c.Nodes)); err != nil {
		t.Fatal(err)
	}
	vip, err := w.c.WaitExternalIP(w.ctx, ns, "web")
	if err != nil {
		t.Fatal(err)
	}
	w.webVIP = vip
	if w.lbNodes, err = w.c.LoadBalancerNodes(w.ctx); err != nil {
		t.Fatal(err)
	}
	if len(w.lbNodes) != 4 {
		t.Fatalf("nodes that may carry a VIP: %v, want the 4 workers (kubeadm excludes control-plane nodes)", w.lbNodes)
	}
	// Every such node carries a Cluster-policy VIP.
	w.waitNextHops(t, vip, w.lbNodes, nil)
}

// waitNextHops waits until the ToRs route vip to exactly want, and returns
// when they first did.
func (w *world) waitNextHops(t *testing.T, vip netip.Addr, want []string, since *time.Time) time.Time {
	t.Helper()
	var got []string
	err := fabric.Eventually(w.ctx, 2*time.Minute, 20*time.Millisecond, func() error {
		var err error
		got, err = w.c.NextHops(w.ctx, vip)
		if err != nil {
			return err
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("ToRs route %s via %v, want %v", vip, got, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return time.Now()
}

// clusterTraffic: scenario 1.
func (w *world) clusterTraffic(t *testing.T) {
	rs, err := w.c.Probe(w.ctx, URL(w.webVIP), 150, 0, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if f := Failed(rs); f > 0 {
		t.Errorf("%d of %d requests failed", f, len(rs))
	}
	racks := map[string]int{}
	pods := map[string]int{}
	for _, r := range rs {
		if r.Err != "" {
			continue
		}
		pods[r.Answer.Pod]++
		if n := w.c.Node(r.Answer.Node); n != nil {
			racks[n.Rack.Name]++
		}
	}
	t.Logf("%d requests to %s: pods %v, racks %v", len(rs), w.webVIP, pods, racks)
	for _, r := range w.c.Racks {
		if racks[r.Name] == 0 {
			t.Errorf("no request reached a pod in %s", r.Name)
		}
	}
}

// localPolicy: scenario 2.
func (w *world) localPolicy(t *testing.T) {
	c := w.c
	if err := c.ApplyDeployment(w.ctx, OnWorkers(Netserver(ns, "local", 1))); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Kube.CoreV1().Services(ns).Create(w.ctx, LoadBalancer(ns, "local", "local", v1.ServiceExternalTrafficPolicyLocal), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	vip, err := c.WaitExternalIP(w.ctx, ns, "local")
	if err != nil {
		t.Fatal(err)
	}
	var nodes []string // the last step's nodes with a ready endpoint
	for _, replicas := range []int32{1, 3, 0, 2} {
		if err := c.Scale(w.ctx, ns, "local", replicas); err != nil {
			t.Fatal(err)
		}
		// The EndpointSlice change: the ready set reaches its new size.
		err := fabric.Eventually(w.ctx, 3*time.Minute, 20*time.Millisecond, func() error {
			var err error
			nodes, err = c.ReadyEndpointNodes(w.ctx, ns, "local")
			if err != nil {
				return err
			}
			if len(nodes) != int(replicas) {
				return fmt.Errorf("%d nodes with a ready endpoint, want %d", len(nodes), replicas)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		changed := time.Now()
		routed := w.waitNextHops(t, vip, nodes, nil)
		t.Logf("replicas %d: ToRs route %s via %v %s after the EndpointSlice change", replicas, vip, nodes, routed.Sub(changed).Round(time.Millisecond))
	}
	// kube-proxy programs the new endpoints on its own schedule, each
	// node's on its own: the routes can be there before it does
	// (docs/real-cluster.md). Wait until every routed node answers.
	changed := time.Now()
	err = fabric.Eventually(w.ctx, time.Minute, 50*time.Millisecond, func() error {
		rs, err := c.Probe(w.ctx, URL(vip), 10, 0, time.Second)
		if err != nil {
			return err
		}
		answered := map[string]bool{}
		for _, r := range rs {
			if r.Err != "" {
				return fmt.Errorf("request %d: %s", r.Seq, r.Err)
			}
			answered[r.Answer.Node] = true
		}
		for _, n := range nodes {
			if !answered[n] {
				return fmt.Errorf("no answer from %s yet (answered: %v)", n, answered)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("every node with an endpoint answers through %s %s after the routes", vip, time.Since(changed).Round(time.Millisecond))
	// The pod sees the client's own address.
	rs, err := c.Probe(w.ctx, URL(vip), 20, 0, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.Err != "" {
			t.Errorf("request %d: %s", r.Seq, r.Err)
			continue
		}
		if a, err := netip.ParseAddrPort(r.Answer.Client); err != nil || a.Addr() != clientCoreAddr {
			t.Errorf("the pod saw client %q, want the client's own address %s", r.Answer.Client, clientCoreAddr)
		}
	}
}

// multihopRack: scenario 7, and rack-aware peering (issue 16). The
// replicas dial as the cloud config's dialFrom says: their own rack's ToR
// directly, which that ToR accepts only with GTSM (TTL 255), and the other
// racks' ToRs over multihop. Every ToR therefore hears from both replicas
// only if each chose the right entry. The third rack has no control-plane
// node: its ToR hears the replicas over multihop alone and routes the VIP
// via its own nodes.
func (w *world) multihopRack(t *testing.T) {
	rc := w.c.Racks[2]
	for _, r := range w.c.Racks {
		for _, n := range w.c.controlPlane() {
			if n.Rack == rc {
				t.Fatalf("%s has a control-plane node; the scenario needs none", rc.Name)
			}
			kind := "multihop"
			if n.Rack == r {
				kind = "direct (GTSM)"
			}
			s, err := r.FRR.BGPNeighborState(w.ctx, n.Addr.String())
			if err != nil || s != "Established" {
				t.Errorf("%s: %s session with %s: %s %v", r.torName(), kind, n.Name, s, err)
			}
		}
	}
	hops, err := rc.NextHops(w.ctx, w.webVIP)
	if err != nil {
		t.Fatal(err)
	}
	var got, want []netip.Addr
	got = append(got, hops...)
	for _, n := range rc.Nodes {
		want = append(want, n.Addr)
	}
	slices.SortFunc(got, netip.Addr.Compare)
	if !slices.Equal(got, want) {
		t.Errorf("%s routes %s via %v, want its nodes %v", rc.torName(), w.webVIP, got, want)
	}
}

// podRoutes: the pod network is routed by the CCM (issue 15): each ToR
// learnt every node's pod CIDR over BGP, its own rack's with the node as
// next hop; no static pod route exists. Scenario 1's traffic crossed them.
func (w *world) podRoutes(t *testing.T) {
	for _, n := range w.c.Nodes {
		for _, r := range w.c.Racks {
			hops, proto, err := r.PodRoutes(w.ctx, n.PodCIDR)
			if err != nil {
				t.Fatal(err)
			}
			if proto != "bgp" || len(hops) == 0 {
				t.Errorf("%s: %s's pod CIDR %s: next hops %v by %q, want a BGP route", r.torName(), n.Name, n.PodCIDR, hops, proto)
				continue
			}
			if r == n.Rack && !slices.Equal(hops, []netip.Addr{n.Addr}) {
				t.Errorf("%s: %s's pod CIDR %s via %v, want the node %s", r.torName(), n.Name, n.PodCIDR, hops, n.Addr)
			}
		}
	}
}

// nodeFailure: scenario 3. A worker's kubelet and kube-proxy stop under
// a client loop (its pods keep running): its next hop leaves the ToRs, the
// loop barely notices; the node comes back.
func (w *world) nodeFailure(t *testing.T) {
	c := w.c
	victim := c.Node("worker-b2")
	routes := w.watchRoutes(t)
	run, err := c.StartProbe(w.ctx, URL(w.webVIP), 400, 10*time.Millisecond, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := run.WaitAnswered(w.ctx, 50); err != nil {
		t.Fatal(err)
	}
	victim.Kubelet.Stop()
	t.Cleanup(func() {
		if !victim.Kubelet.Running() {
			_ = victim.Kubelet.Start()
		}
	})
	if err := victim.KillProcesses("kube-proxy"); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	want := slices.DeleteFunc(slices.Clone(w.lbNodes), func(s string) bool { return s == victim.Name })
	gone := w.waitNextHops(t, w.webVIP, want, nil)
	rs, err := run.Wait()
	if err != nil {
		t.Fatal(err)
	}
	failed := Failed(rs)
	t.Logf("%s's kubelet and kube-proxy stopped: its next hop left the ToRs after %s; %d of %d requests failed",
		victim.Name, gone.Sub(stopped).Round(time.Millisecond), failed, len(rs))
	if failed*100 > len(rs) {
		t.Errorf("%d of %d requests failed, more than 1 %%:%s\n%s", failed, len(rs), FailedSummary(rs, 5), routeReport(routes))
	}
	if err := victim.Kubelet.Start(); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	w.waitNextHops(t, w.webVIP, w.lbNodes, nil)
	t.Logf("%s's kubelet back: kube-proxy restarted and its next hop is back after %s", victim.Name, time.Since(back).Round(time.Millisecond))
}

// addresses returns every LoadBalancer Service's addresses.
func (w *world) addresses(t *testing.T) map[string]string {
	t.Helper()
	l, err := w.c.Kube.CoreV1().Services("").List(w.ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, s := range l.Items {
		if s.Spec.Type != v1.ServiceTypeLoadBalancer {
			continue
		}
		var ips []string
		for _, in := range s.Status.LoadBalancer.Ingress {
			ips = append(ips, in.IP)
		}
		out[s.Namespace+"/"+s.Name] = strings.Join(ips, ",")
	}
	return out
}

func checkSameAddresses(t *testing.T, before, after map[string]string) {
	t.Helper()
	for k, v := range before {
		if after[k] != v {
			t.Errorf("%s: address %q became %q", k, v, after[k])
		}
	}
	seen := map[string]string{}
	for k, v := range after {
		for _, ip := range strings.Split(v, ",") {
			if o, dup := seen[ip]; dup && ip != "" {
				t.Errorf("%s and %s share %s", o, k, ip)
			}
			seen[ip] = k
		}
	}
}

// watchRoutes records the fabric's route changes while the scenario runs
// (RouteChanges), for its failure report.
func (w *world) watchRoutes(t *testing.T) *RouteChanges {
	t.Helper()
	rc, err := w.c.WatchRoutes(w.ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rc.Stop)
	return rc
}

// routeReport says how the fabric's routes changed during the scenario,
// for a failure report: set beside the failed requests' start times, it
// tells a flow the routers moved from one the nodes lost.
func routeReport(rc *RouteChanges) string {
	rc.Stop()
	return "route changes in the fabric (the machine's local time):" + rc.Report()
}

// rollingUpdate: scenario 4.
func (w *world) rollingUpdate(t *testing.T) {
	c := w.c
	before := w.addresses(t)
	routes := w.watchRoutes(t)
	run, err := c.StartProbe(w.ctx, URL(w.webVIP), 20000, 20*time.Millisecond, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := run.WaitAnswered(w.ctx, 20); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := c.InstallCCM(w.ctx, "lab-2"); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitCCMRolledOut(w.ctx); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if err := c.WaitReady(w.ctx); err != nil {
		t.Fatal(err)
	}
	rs, err := run.Stop()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("rolling update to lab-2 took %s; %d of %d requests failed", took.Round(time.Millisecond), Failed(rs), len(rs))
	if f := Failed(rs); f > 0 {
		t.Errorf("%d of %d requests failed during the rolling update:%s\n%s", f, len(rs), FailedSummary(rs, 5), routeReport(routes))
	}
	checkSameAddresses(t, before, w.addresses(t))
}

// leaderDeleted: scenario 5.
func (w *world) leaderDeleted(t *testing.T) {
	c := w.c
	pod, err := c.CCMLeaderPod(w.ctx)
	if err != nil {
		t.Fatal(err)
	}
	routes := w.watchRoutes(t)
	run, err := c.StartProbe(w.ctx, URL(w.webVIP), 20000, 20*time.Millisecond, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := run.WaitAnswered(w.ctx, 20); err != nil {
		t.Fatal(err)
	}
	if err := c.Kube.CoreV1().Pods("kube-system").Delete(w.ctx, pod, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	if _, err := c.Kube.CoreV1().Services(ns).Create(w.ctx, LoadBalancer(ns, "after-leader", "web", v1.ServiceExternalTrafficPolicyCluster), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	vip, err := c.WaitExternalIP(w.ctx, ns, "after-leader")
	if err != nil {
		t.Fatal(err)
	}
	served := time.Since(deleted)
	w.waitNextHops(t, vip, w.lbNodes, nil)
	if err := c.WaitReady(w.ctx); err != nil {
		t.Fatal(err)
	}
	rs, err := run.Stop()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("leader pod %s deleted: a new Service got %s %s later; %d of %d requests failed", pod, vip, served.Round(time.Millisecond), Failed(rs), len(rs))
	if f := Failed(rs); f > 0 {
		t.Errorf("%d of %d requests failed after the leader's pod was deleted:%s\n%s", f, len(rs), FailedSummary(rs, 5), routeReport(routes))
	}
}

// wholeRestart: scenario 6.
func (w *world) wholeRestart(t *testing.T) {
	c := w.c
	for i := range 50 {
		s := LoadBalancer(ns, fmt.Sprintf("many-%02d", i), "web", v1.ServiceExternalTrafficPolicyCluster)
		if _, err := c.Kube.CoreV1().Services(ns).Create(w.ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 50 {
		if _, err := c.WaitExternalIP(w.ctx, ns, fmt.Sprintf("many-%02d", i)); err != nil {
			t.Fatal(err)
		}
	}
	before := w.addresses(t)
	start := time.Now()
	if err := c.Restart(w.ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReady(w.ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitDeploymentReady(w.ctx, ns, "web"); err != nil {
		t.Fatal(err)
	}
	w.waitNextHops(t, w.webVIP, w.lbNodes, nil)
	t.Logf("whole cluster restarted with %d LoadBalancer Services: ready and routed again after %s", len(before), time.Since(start).Round(time.Second))
	after := w.addresses(t)
	checkSameAddresses(t, before, after)
	if !maps.Equal(before, after) {
		t.Errorf("addresses differ after the restart:\nbefore %v\nafter  %v", before, after)
	}
}
