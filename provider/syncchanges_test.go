package provider

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/baremetal-ccm/baremetal-ccm/bgp"
	"github.com/baremetal-ccm/baremetal-ccm/provider/config"
	"github.com/baremetal-ccm/baremetal-ccm/provider/service"
)

// callRecorder is a fakeSpeaker that also records each call.
type callRecorder struct {
	fakeSpeaker
	callMu sync.Mutex
	calls  []string
	// refuse makes Announce fail.
	refuse bool
}

func newCallRecorder() *callRecorder {
	return &callRecorder{fakeSpeaker: fakeSpeaker{advs: map[netip.Prefix]bgp.Advertisement{}}}
}

func (c *callRecorder) record(call string) {
	c.callMu.Lock()
	defer c.callMu.Unlock()
	c.calls = append(c.calls, call)
}

func (c *callRecorder) Announce(ctx context.Context, adv bgp.Advertisement) error {
	c.record("announce " + adv.Prefix.Addr().String())
	c.callMu.Lock()
	refuse := c.refuse
	c.callMu.Unlock()
	if refuse {
		return errors.New("refused")
	}
	return c.fakeSpeaker.Announce(ctx, adv)
}

func (c *callRecorder) Withdraw(ctx context.Context, p netip.Prefix) error {
	c.record("withdraw " + p.Addr().String())
	return c.fakeSpeaker.Withdraw(ctx, p)
}

func (c *callRecorder) SetAll(ctx context.Context, advs []bgp.Advertisement) error {
	c.record(fmt.Sprintf("setAll %d", len(advs)))
	return c.fakeSpeaker.SetAll(ctx, advs)
}

// take returns the calls since the last take, sorted.
func (c *callRecorder) take() []string {
	c.callMu.Lock()
	defer c.callMu.Unlock()
	out := c.calls
	c.calls = nil
	slices.Sort(out)
	return out
}

func (c *callRecorder) state() map[netip.Prefix]bgp.Advertisement {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[netip.Prefix]bgp.Advertisement, len(c.advs))
	for p, a := range c.advs {
		out[p] = a
	}
	return out
}

// changeHarness drives an announcer event by event: it changes the
// informers' stores and calls the announcer's handlers itself, as the
// informers would, so that a test knows which events happened.
type changeHarness struct {
	a       *announcer
	sp      *callRecorder // nil with another speaker
	health  fakeHealth
	stores  map[string]cache.Indexer
	reports int
	// status collects the Services the reports named; "*" for every one.
	status map[string]bool
}

func newChangeHarness(t *testing.T, objs ...runtime.Object) *changeHarness {
	t.Helper()
	sp := newCallRecorder()
	h := startChangeHarness(t, sp, objs...)
	h.sp = sp
	sp.take()
	return h
}

// startChangeHarness starts the announcer with sp and objs, and syncs
// once.
func startChangeHarness(tb testing.TB, sp speaker, objs ...runtime.Object) *changeHarness {
	tb.Helper()
	cfg, err := config.Parse([]byte(announcerConfig))
	if err != nil {
		tb.Fatal(err)
	}
	h := &changeHarness{health: fakeHealth{}, status: map[string]bool{}}
	factory := informers.NewSharedInformerFactory(fake.NewClientset(objs...), 0)
	deps := testDeps(cfg, sp, fakeAllocations(nil), h.health)
	deps.report = func(_ *announcements, changed []string) {
		h.reports++
		if changed == nil {
			changed = []string{"*"}
		}
		for _, key := range changed {
			h.status[key] = true
		}
	}
	h.a = newAnnouncer(factory, deps)
	h.stores = map[string]cache.Indexer{
		"node":    factory.Core().V1().Nodes().Informer().GetIndexer(),
		"service": factory.Core().V1().Services().Informer().GetIndexer(),
		"slice":   factory.Discovery().V1().EndpointSlices().Informer().GetIndexer(),
	}
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), h.a.hasSynced...) {
		tb.Fatal("informers not synced")
	}
	// The informers' own add events marked everything; the first sync is
	// a full one anyway.
	if err := h.a.sync(context.Background()); err != nil {
		tb.Fatalf("first sync: %v", err)
	}
	h.reports, h.status = 0, map[string]bool{}
	return h
}

func (h *changeHarness) updateNode(t testing.TB, name string, change func(*v1.Node)) {
	t.Helper()
	old, err := h.a.nodes.Get(name)
	if err != nil {
		t.Fatal(err)
	}
	n := old.DeepCopy()
	change(n)
	if err := h.stores["node"].Update(n); err != nil {
		t.Fatal(err)
	}
	h.a.nodeUpdated(old, n)
}

func (h *changeHarness) updateService(t testing.TB, name string, change func(*v1.Service)) {
	t.Helper()
	old, err := h.a.services.Services("default").Get(name)
	if err != nil {
		t.Fatal(err)
	}
	s := old.DeepCopy()
	change(s)
	if err := h.stores["service"].Update(s); err != nil {
		t.Fatal(err)
	}
	h.a.serviceUpdated(old, s)
}

func (h *changeHarness) deleteService(t testing.TB, name string) {
	t.Helper()
	old, err := h.a.services.Services("default").Get(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.stores["service"].Delete(old); err != nil {
		t.Fatal(err)
	}
	h.a.serviceChanged(old)
}

func (h *changeHarness) updateSlice(t testing.TB, svc string, change func(*discoveryv1.EndpointSlice)) {
	t.Helper()
	old, err := h.a.slices.EndpointSlices("default").Get(svc + "-x")
	if err != nil {
		t.Fatal(err)
	}
	s := old.DeepCopy()
	change(s)
	if err := h.stores["slice"].Update(s); err != nil {
		t.Fatal(err)
	}
	h.a.sliceUpdated(old, s)
}

func (h *changeHarness) setHealth(node string, healthy bool) {
	h.health[node] = healthy
	h.a.healthChanged()
}

// The cluster of the proportionality tests: ten IPv4 Cluster Services, one
// dual-stack Cluster Service, and two Local Services with their
// endpoints on a1 and on b1.
const clusterVIPs = 10

func proportionalityObjects() []runtime.Object {
	objs := []runtime.Object{
		node("a1", []string{"198.51.100.11", "2001:db8:1::11"}),
		node("a2", []string{"198.51.100.12", "2001:db8:1::12"}),
		node("b1", []string{"198.51.100.140"}),
		lbService("dual", v1.ServiceExternalTrafficPolicyCluster, "203.0.113.200", "2001:db8:100::1"),
		lbService("l1", v1.ServiceExternalTrafficPolicyLocal, "203.0.113.101"),
		endpointSlice("l1", map[string]bool{"a1": true}),
		lbService("l2", v1.ServiceExternalTrafficPolicyLocal, "203.0.113.102"),
		endpointSlice("l2", map[string]bool{"b1": true}),
	}
	for i := 1; i <= clusterVIPs; i++ {
		objs = append(objs, lbService(fmt.Sprintf("c%d", i), v1.ServiceExternalTrafficPolicyCluster, fmt.Sprintf("203.0.113.%d", i)))
	}
	return objs
}

// calls returns the sorted calls "<verb> <vip>" for each VIP.
func calls(verb string, vips ...string) []string {
	out := make([]string, len(vips))
	for i, v := range vips {
		out[i] = verb + " " + v
	}
	return out
}

// clusterSvcs are the Services of clusterV4.
func clusterSvcs() []string {
	var out []string
	for i := 1; i <= clusterVIPs; i++ {
		out = append(out, fmt.Sprintf("default/c%d", i))
	}
	return append(out, "default/dual")
}

func clusterV4() []string {
	var out []string
	for i := 1; i <= clusterVIPs; i++ {
		out = append(out, fmt.Sprintf("203.0.113.%d", i))
	}
	return append(out, "203.0.113.200")
}

// TestSyncChangesProportional: a change makes the speaker hear of the VIPs
// it moves and of no other, and what the speaker then has is what a full
// sync would give it.
func TestSyncChangesProportional(t *testing.T) {
	heartbeat := func(n *v1.Node) {
		n.Status.Conditions[0].LastHeartbeatTime = metav1.NewTime(time.Now())
		n.Status.Allocatable = v1.ResourceList{}
		n.Labels["topology.example.com/unrelated"] = "x"
	}
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, h *changeHarness)
		want   []string
		// wantReports: whether the outcomes (the conditions' input)
		// changed.
		wantReports int
		// idle: the event leaves nothing to do, not even a sync.
		idle bool
		// status: the Services the status writer is told to look at.
		status []string
	}{
		{
			name:        "a full sync asked for (config, sessions, resync): SetAll with every VIP",
			status:      []string{"*"},
			change:      func(t *testing.T, h *changeHarness) { h.a.Trigger() },
			want:        []string{fmt.Sprintf("setAll %d", clusterVIPs+4)},
			wantReports: 1,
		},
		{
			name: "node a2's IPv4 address renumbered: the IPv4 Cluster VIPs (its IPv6 next hop is the same)",
			change: func(t *testing.T, h *changeHarness) {
				h.updateNode(t, "a2", func(n *v1.Node) { n.Status.Addresses[0].Address = "198.51.100.13" })
			},
			want: calls("announce", clusterV4()...),
		},
		{
			name:   "node b1 takes a1's address: b1 is newer and loses it, nothing moves",
			status: append(clusterSvcs(), "default/l2"),
			change: func(t *testing.T, h *changeHarness) {
				h.updateNode(t, "b1", func(n *v1.Node) {
					n.CreationTimestamp = metav1.NewTime(time.Now().Add(time.Hour))
					n.Status.Addresses[0].Address = "198.51.100.11"
				})
			},
			// b1 has no address left: the IPv4 Cluster VIPs lose it, and
			// its Local VIP has no node.
			want:        append(calls("announce", clusterV4()...), "withdraw 203.0.113.102"),
			wantReports: 1,
		},
		{
			name:   "node heartbeat: nothing",
			idle:   true,
			change: func(t *testing.T, h *changeHarness) { h.updateNode(t, "a1", heartbeat) },
		},
		{
			name:   "node a1 NotReady: the Cluster VIPs of both its families and the Local VIP with its endpoint",
			status: append(clusterSvcs(), "default/l1"),
			change: func(t *testing.T, h *changeHarness) {
				h.updateNode(t, "a1", notReady)
			},
			want:        append(append(calls("announce", clusterV4()...), "announce 2001:db8:100::1"), "withdraw 203.0.113.101"),
			wantReports: 1,
		},
		{
			name:        "node b1 (IPv4 only) excluded: the IPv4 Cluster VIPs and its Local VIP",
			status:      append(clusterSvcs(), "default/l2"),
			change:      func(t *testing.T, h *changeHarness) { h.updateNode(t, "b1", excluded) },
			want:        append(calls("announce", clusterV4()...), "withdraw 203.0.113.102"),
			wantReports: 1,
		},
		{
			name:        "node a2 unhealthy: the VIPs it carries, not the Local ones without its endpoints",
			status:      clusterSvcs(),
			change:      func(t *testing.T, h *changeHarness) { h.setHealth("a2", false) },
			want:        append(calls("announce", clusterV4()...), "announce 2001:db8:100::1"),
			wantReports: 1,
		},
		{
			name:        "node b1 unhealthy: the IPv4 Cluster VIPs and its Local VIP, which fails open",
			status:      append(clusterSvcs(), "default/l2"),
			change:      func(t *testing.T, h *changeHarness) { h.setHealth("b1", false) },
			want:        calls("announce", clusterV4()...),
			wantReports: 1,
		},
		{
			name: "health checked again without a flip: nothing",
			change: func(t *testing.T, h *changeHarness) {
				h.setHealth("a1", true)
			},
		},
		{
			name:   "one Service's communities: its VIP only",
			status: []string{"default/c3"},
			change: func(t *testing.T, h *changeHarness) {
				h.updateService(t, "c3", func(s *v1.Service) { s.Annotations[service.AnnotationBGPCommunities] = "65000:3" })
			},
			want:        calls("announce", "203.0.113.3"),
			wantReports: 1,
		},
		{
			name: "our own status patch (conditions, pool annotation): nothing",
			idle: true,
			change: func(t *testing.T, h *changeHarness) {
				h.updateService(t, "c3", func(s *v1.Service) {
					s.Status.Conditions = append(s.Status.Conditions, metav1.Condition{Type: service.ConditionAnnounced, Status: metav1.ConditionTrue})
					s.Annotations[service.AnnotationAllocatedFromPool] = "default"
				})
			},
		},
		{
			name:   "a Service change that moves no path: no call",
			status: []string{"default/c3"},
			change: func(t *testing.T, h *changeHarness) {
				h.updateService(t, "c3", func(s *v1.Service) { s.Spec.Ports = []v1.ServicePort{{Port: 8080}} })
			},
			wantReports: 1,
		},
		{
			name:   "one Service's address changes: the old withdrawn, the new announced",
			status: []string{"default/c3"},
			change: func(t *testing.T, h *changeHarness) {
				h.updateService(t, "c3", func(s *v1.Service) { s.Status.LoadBalancer.Ingress = []v1.LoadBalancerIngress{{IP: "203.0.113.50"}} })
			},
			want:        []string{"announce 203.0.113.50", "withdraw 203.0.113.3"},
			wantReports: 1,
		},
		{
			name:        "one Service deleted: its VIP withdrawn",
			status:      []string{"default/c3"},
			change:      func(t *testing.T, h *changeHarness) { h.deleteService(t, "c3") },
			want:        calls("withdraw", "203.0.113.3"),
			wantReports: 1,
		},
		{
			name:   "an endpoint ready on another node: that Local VIP only",
			status: []string{"default/l1"},
			change: func(t *testing.T, h *changeHarness) {
				h.updateSlice(t, "l1", func(s *discoveryv1.EndpointSlice) {
					n, ready := "a2", true
					s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{"192.0.2.10"}, NodeName: &n, Conditions: discoveryv1.EndpointConditions{Ready: &ready}})
				})
			},
			want:        calls("announce", "203.0.113.101"),
			wantReports: 1,
		},
		{
			name: "an endpoint that is not ready: nothing",
			idle: true,
			change: func(t *testing.T, h *changeHarness) {
				h.updateSlice(t, "l1", func(s *discoveryv1.EndpointSlice) {
					n, ready := "b1", false
					s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{"192.0.2.10"}, NodeName: &n, Conditions: discoveryv1.EndpointConditions{Ready: &ready}})
				})
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newChangeHarness(t, proportionalityObjects()...)
			tc.change(t, h)
			h.a.dirty.mu.Lock()
			idle := h.a.dirty.empty()
			h.a.dirty.mu.Unlock()
			if idle != tc.idle {
				t.Errorf("after the event, nothing to sync = %v, want %v", idle, tc.idle)
			}
			if err := h.a.sync(context.Background()); err != nil {
				t.Fatalf("sync: %v", err)
			}
			h.wantCalls(t, "speaker calls", tc.want)
			if h.reports != tc.wantReports {
				t.Errorf("outcomes reported %d times, want %d", h.reports, tc.wantReports)
			}
			wantStatus := slices.Clone(tc.status)
			slices.Sort(wantStatus)
			if diff := cmp.Diff(wantStatus, slices.Sorted(maps.Keys(h.status))); diff != "" {
				t.Errorf("Services handed to the status writer (-want +got):\n%s", diff)
			}
			// A full sync finds nothing else to change.
			got := h.sp.state()
			if err := h.a.syncAll(context.Background()); err != nil {
				t.Fatalf("syncAll: %v", err)
			}
			if diff := cmp.Diff(h.sp.state(), got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }), cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
				t.Errorf("after the sync of changes, the speaker's state differs from a full sync's (-full +changes):\n%s", diff)
			}
		})
	}
}

// wantCalls checks the speaker's calls since the last take, in any order.
func (h *changeHarness) wantCalls(t *testing.T, what string, want []string) {
	t.Helper()
	want = slices.Clone(want)
	slices.Sort(want)
	if diff := cmp.Diff(want, h.sp.take()); diff != "" {
		t.Errorf("%s (-want +got):\n%s", what, diff)
	}
}

// dirtyService tells whether the Service key waits for a sync.
func (a *announcer) dirtyService(key string) bool {
	a.dirty.mu.Lock()
	defer a.dirty.mu.Unlock()
	_, ok := a.dirty.services[key]
	return ok
}

// TestOwnStatusWritesAreNoChange: the status writer's patches (our
// conditions and pool annotation), as the informer delivers them, leave
// the announcer nothing to sync.
func TestOwnStatusWritesAreNoChange(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := fake.NewClientset(node("a1", []string{"198.51.100.11"}), lbService("web", v1.ServiceExternalTrafficPolicyCluster, "203.0.113.1"))
	cfg, err := config.Parse([]byte(announcerConfig))
	if err != nil {
		t.Fatal(err)
	}
	factory := informers.NewSharedInformerFactory(client, 0)
	a := newAnnouncer(factory, testDeps(cfg, newCallRecorder(), fakeAllocations(nil), fakeHealth{}))
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), a.hasSynced...) {
		t.Fatal("informers not synced")
	}
	if err := a.sync(ctx); err != nil {
		t.Fatal(err)
	}
	svc, err := client.CoreV1().Services("default").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svc.Annotations[service.AnnotationAllocatedFromPool] = "default"
	svc.Status.Conditions = []metav1.Condition{{Type: service.ConditionAnnounced, Status: metav1.ConditionTrue, Reason: "Announced"}}
	if _, err := client.CoreV1().Services("default").Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The handler sees the events in order: once it has seen a later
	// one, it has seen ours.
	if _, err := client.CoreV1().Services("default").Create(ctx, lbService("sentinel", v1.ServiceExternalTrafficPolicyCluster), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !a.dirtyService("default/sentinel") {
		if time.Now().After(deadline) {
			t.Fatal("the announcer's handler did not see the sentinel Service")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if a.dirtyService("default/web") {
		t.Error("our own status write marked the Service for a sync")
	}
}

// TestSyncChangesFailureIsFullRetry: after the speaker refused a change,
// the retry is a full sync, which sets everything right.
func TestSyncChangesFailureIsFullRetry(t *testing.T) {
	h := newChangeHarness(t, proportionalityObjects()...)
	ctx := context.Background()
	h.sp.refuse = true
	h.updateService(t, "c3", func(s *v1.Service) { s.Annotations[service.AnnotationBGPCommunities] = "65000:3" })
	if err := h.a.sync(ctx); err == nil {
		t.Fatal("sync with a refusing speaker = nil error")
	}
	if diff := cmp.Diff([]string{"announce 203.0.113.3"}, h.sp.take()); diff != "" {
		t.Errorf("speaker calls of the failed sync (-want +got):\n%s", diff)
	}
	h.sp.refuse = false
	if err := h.a.sync(ctx); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if diff := cmp.Diff([]string{fmt.Sprintf("setAll %d", clusterVIPs+4)}, h.sp.take()); diff != "" {
		t.Errorf("speaker calls of the retry (-want +got):\n%s", diff)
	}
	if got := h.sp.state()[netip.MustParsePrefix("203.0.113.3/32")].Communities; len(got) != 1 {
		t.Errorf("after the retry, 203.0.113.3 has communities %v, want the new one", got)
	}
}

// TestVerifyRoundRepairsMissedEvents: the periodic re-assertion, a slice
// per sync, sets right within one round of resyncSlices what an event the
// informers never delivered would have changed, without a SetAll, and
// hands the speaker nothing when nothing was missed.
func TestVerifyRoundRepairsMissedEvents(t *testing.T) {
	for _, tc := range []struct {
		name string
		// miss changes the caches without telling the announcer.
		miss func(t *testing.T, h *changeHarness)
		want []string
	}{
		{
			name: "nothing missed: nothing to hand over",
			miss: func(*testing.T, *changeHarness) {},
		},
		{
			name: "a Service's deletion missed: its VIP withdrawn",
			miss: func(t *testing.T, h *changeHarness) {
				old, err := h.a.services.Services("default").Get("c3")
				if err != nil {
					t.Fatal(err)
				}
				if err := h.stores["service"].Delete(old); err != nil {
					t.Fatal(err)
				}
			},
			want: calls("withdraw", "203.0.113.3"),
		},
		{
			name: "a Node's readiness missed: the VIPs via it follow",
			miss: func(t *testing.T, h *changeHarness) {
				old, err := h.a.nodes.Get("b1")
				if err != nil {
					t.Fatal(err)
				}
				n := old.DeepCopy()
				n.Status.Conditions[0].Status = v1.ConditionFalse
				if err := h.stores["node"].Update(n); err != nil {
					t.Fatal(err)
				}
			},
			want: append(calls("announce", clusterV4()...), "withdraw 203.0.113.102"),
		},
		{
			name: "an EndpointSlice's change missed: that Local VIP follows",
			miss: func(t *testing.T, h *changeHarness) {
				old, err := h.a.slices.EndpointSlices("default").Get("l1-x")
				if err != nil {
					t.Fatal(err)
				}
				s := old.DeepCopy()
				n, ready := "a2", true
				s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{"192.0.2.10"}, NodeName: &n, Conditions: discoveryv1.EndpointConditions{Ready: &ready}})
				if err := h.stores["slice"].Update(s); err != nil {
					t.Fatal(err)
				}
			},
			want: calls("announce", "203.0.113.101"),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newChangeHarness(t, proportionalityObjects()...)
			tc.miss(t, h)
			for range resyncSlices {
				h.a.dirty.markVerify()
				if err := h.a.sync(context.Background()); err != nil {
					t.Fatalf("sync: %v", err)
				}
			}
			h.wantCalls(t, "speaker calls over a round", tc.want)
			got := h.sp.state()
			if err := h.a.syncAll(context.Background()); err != nil {
				t.Fatalf("syncAll: %v", err)
			}
			if diff := cmp.Diff(h.sp.state(), got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }), cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
				t.Errorf("after a round, the speaker's state differs from a full sync's (-full +round):\n%s", diff)
			}
		})
	}
}

// hopNodes returns the names of the nodes the speaker announces an IPv4
// vip via, sorted.
func (h *changeHarness) hopNodes(vip netip.Addr) []string {
	var out []string
	for _, hop := range h.sp.state()[netip.PrefixFrom(vip, 32)].NextHops {
		out = append(out, hop.Node)
	}
	slices.Sort(out)
	return out
}

// countingNodes counts the listings of all Nodes.
type countingNodes struct {
	corelisters.NodeLister
	lists atomic.Int32
}

func (c *countingNodes) List(sel labels.Selector) ([]*v1.Node, error) {
	c.lists.Add(1)
	return c.NodeLister.List(sel)
}

// TestSyncServiceCandidates: an EnsureLoadBalancer (syncService) works
// with the candidates the index was computed with, without listing the
// Nodes, while no Node change is marked for the sync loop; with one
// marked, it lists them, and a new Node carries the Service's VIP at once.
func TestSyncServiceCandidates(t *testing.T) {
	for _, tc := range []struct {
		name      string
		addNode   bool
		wantLists int32
		wantHops  []string
	}{
		{name: "index current", wantLists: 0, wantHops: []string{"a1", "a2", "b1"}},
		{name: "a Node change marked", addNode: true, wantLists: 1, wantHops: []string{"a1", "a2", "a3", "b1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newChangeHarness(t, proportionalityObjects()...)
			nodes := &countingNodes{NodeLister: h.a.nodes}
			h.a.nodes = nodes
			if tc.addNode {
				if err := h.stores["node"].Add(node("a3", []string{"198.51.100.13"})); err != nil {
					t.Fatal(err)
				}
				h.a.nodesChanged()
			}
			svc, err := h.a.services.Services("default").Get("c1")
			if err != nil {
				t.Fatal(err)
			}
			vip := netip.MustParseAddr("203.0.113.1")
			if _, err := h.a.syncService(context.Background(), svc, []netip.Addr{vip}); err != nil {
				t.Fatal(err)
			}
			if got := nodes.lists.Load(); got != tc.wantLists {
				t.Errorf("Nodes listed %d times, want %d", got, tc.wantLists)
			}
			if hops := h.hopNodes(vip); !slices.Equal(hops, tc.wantHops) {
				t.Errorf("next hops of %s: %v, want %v", vip, hops, tc.wantHops)
			}
		})
	}
}

// TestSyncServiceOldCandidatesSetRight: an Ensure that ran with the old
// candidates while a Node change was on its way (in the store, its event
// not yet handled, or taken by the sync loop but not yet applied) is set
// right by the sync that applies the change: a new Node gains the VIP, a
// deleted one loses it.
func TestSyncServiceOldCandidatesSetRight(t *testing.T) {
	vip := netip.MustParseAddr("203.0.113.1")
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, h *changeHarness)
		stale  []string
		want   []string
	}{
		{"a Node added", func(t *testing.T, h *changeHarness) {
			if err := h.stores["node"].Add(node("a3", []string{"198.51.100.13"})); err != nil {
				t.Fatal(err)
			}
		}, []string{"a1", "a2", "b1"}, []string{"a1", "a2", "a3", "b1"}},
		{"a Node deleted", func(t *testing.T, h *changeHarness) {
			n, err := h.a.nodes.Get("a2")
			if err != nil {
				t.Fatal(err)
			}
			if err := h.stores["node"].Delete(n); err != nil {
				t.Fatal(err)
			}
		}, []string{"a1", "a2", "b1"}, []string{"a1", "b1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newChangeHarness(t, proportionalityObjects()...)
			tc.change(t, h)
			svc, err := h.a.services.Services("default").Get("c1")
			if err != nil {
				t.Fatal(err)
			}
			svc = svc.DeepCopy()
			svc.Annotations[service.AnnotationBGPCommunities] = "65000:1"
			if _, err := h.a.syncService(context.Background(), svc, []netip.Addr{vip}); err != nil {
				t.Fatal(err)
			}
			if got := h.hopNodes(vip); !slices.Equal(got, tc.stale) {
				t.Fatalf("next hops after the Ensure: %v, want the old candidates' %v", got, tc.stale)
			}
			h.a.nodesChanged() // the event arrives
			if err := h.a.sync(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := h.hopNodes(vip); !slices.Equal(got, tc.want) {
				t.Errorf("next hops after the sync: %v, want %v", got, tc.want)
			}
		})
	}
}
