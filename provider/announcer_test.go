package provider

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	cloudproviderapi "k8s.io/cloud-provider/api"
	"k8s.io/klog/v2/textlogger"

	"github.com/baremetal-ccm/baremetal-ccm/bgp"
	"github.com/baremetal-ccm/baremetal-ccm/ipam"
	"github.com/baremetal-ccm/baremetal-ccm/provider/config"
	"github.com/baremetal-ccm/baremetal-ccm/provider/service"
)

// fakeSpeaker records the desired state it is handed.
type fakeSpeaker struct {
	mu   sync.Mutex
	advs map[netip.Prefix]bgp.Advertisement
}

func (f *fakeSpeaker) Announce(_ context.Context, adv bgp.Advertisement) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.advs[adv.Prefix] = adv
	return nil
}

func (f *fakeSpeaker) Withdraw(_ context.Context, p netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.advs, p)
	return nil
}

func (f *fakeSpeaker) SetAll(_ context.Context, advs []bgp.Advertisement) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.advs = map[netip.Prefix]bgp.Advertisement{}
	for _, a := range advs {
		f.advs[a.Prefix] = a
	}
	return nil
}

func (f *fakeSpeaker) Peers() []bgp.PeerStatus {
	return []bgp.PeerStatus{{Name: "tor-a", Rack: "rack-a", State: bgp.StateEstablished}, {Name: "tor-b", Rack: "rack-b", State: bgp.StateEstablished}}
}

// hops returns the next-hop addresses per VIP.
func (f *fakeSpeaker) hops() map[string][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string][]string{}
	for p, a := range f.advs {
		for _, h := range a.NextHops {
			out[p.Addr().String()] = append(out[p.Addr().String()], h.Addr.String()+"@"+h.Rack)
		}
		slices.Sort(out[p.Addr().String()])
	}
	return out
}

type fakeHealth map[string]bool

// fakeAllocations is the leader's allocator: "namespace/name" -> the
// addresses the Service holds.
type fakeAllocations map[string][]netip.Addr

func (f fakeAllocations) Assigned(namespace, name string) []netip.Addr {
	return f[namespace+"/"+name]
}

func (f fakeAllocations) Holders(addr netip.Addr) []ipam.Assignment {
	var out []ipam.Assignment
	for _, key := range slices.Sorted(maps.Keys(f)) {
		if slices.Contains(f[key], addr) {
			ns, name, _ := strings.Cut(key, "/")
			out = append(out, ipam.Assignment{Namespace: ns, Name: name, Addr: addr})
		}
	}
	return out
}

func (h fakeHealth) Healthy(node string) bool { ok, known := h[node]; return !known || ok }

const announcerConfig = `
region: lab
racks:
- name: rack-a
  subnets: [198.51.100.0/25, 2001:db8:1::/64]
- name: rack-b
  subnets: [198.51.100.128/25]
`

type nodeOpt func(*v1.Node)

func node(name string, addrs []string, opts ...nodeOpt) *v1.Node {
	n := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}}}
	for _, a := range addrs {
		n.Status.Addresses = append(n.Status.Addresses, v1.NodeAddress{Type: v1.NodeInternalIP, Address: a})
	}
	n.Status.Conditions = []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue}}
	for _, o := range opts {
		o(n)
	}
	return n
}

func notReady(n *v1.Node) { n.Status.Conditions[0].Status = v1.ConditionFalse }
func excluded(n *v1.Node) { n.Labels[v1.LabelNodeExcludeBalancers] = "" }
func shutdown(n *v1.Node) {
	n.Spec.Taints = append(n.Spec.Taints, v1.Taint{Key: cloudproviderapi.TaintNodeShutdown, Effect: v1.TaintEffectNoSchedule})
}
func deleting(n *v1.Node) {
	now := metav1.Now()
	n.DeletionTimestamp = &now
	n.Finalizers = []string{"x"}
}

func lbService(name string, policy v1.ServiceExternalTrafficPolicy, ips ...string) *v1.Service {
	s := &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Annotations: map[string]string{}},
		Spec:       v1.ServiceSpec{Type: v1.ServiceTypeLoadBalancer, ExternalTrafficPolicy: policy},
	}
	for _, ip := range ips {
		s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, v1.LoadBalancerIngress{IP: ip})
	}
	return s
}

func affinity(s *v1.Service) *v1.Service {
	s.Spec.SessionAffinity = v1.ServiceAffinityClientIP
	return s
}

func endpointSlice(svc string, nodes map[string]bool) *discoveryv1.EndpointSlice {
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: svc + "-x", Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	for n, ready := range nodes {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{"192.0.2.9"}, NodeName: &n, Conditions: discoveryv1.EndpointConditions{Ready: &ready}})
	}
	return es
}

// testDeps are the announcer's dependencies in a unit test: every address
// may be announced, and warnings are recorded.
func testDeps(cfg *config.Config, sp speaker, alloc allocations, health healthView) announcerDeps {
	return announcerDeps{
		config:      func() *config.Config { return cfg },
		speaker:     func() speaker { return sp },
		alloc:       alloc,
		health:      health,
		mayAnnounce: func(netip.Addr) bool { return true },
		warn:        &fakeWarner{},
	}
}

// fakeWarner records the warnings in force.
type fakeWarner struct {
	mu     sync.Mutex
	active map[string]string // key/reason -> message
	count  int
}

func (w *fakeWarner) warnOnce(ref objectRef, reason, msg string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.active == nil {
		w.active = map[string]string{}
	}
	if w.active[ref.key+"/"+reason] != msg {
		w.count++
	}
	w.active[ref.key+"/"+reason] = msg
}

func (w *fakeWarner) clear(ref objectRef, reason string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.active, ref.key+"/"+reason)
}

func (w *fakeWarner) beginSweep() {}
func (w *fakeWarner) endSweep()   {}

func startAnnouncer(t *testing.T, health healthView, assigned map[string][]netip.Addr, objs ...runtime.Object) (*announcer, *fakeSpeaker) {
	t.Helper()
	cfg, err := config.Parse([]byte(announcerConfig))
	if err != nil {
		t.Fatal(err)
	}
	sp := &fakeSpeaker{advs: map[netip.Prefix]bgp.Advertisement{}}
	factory := informers.NewSharedInformerFactory(fake.NewClientset(objs...), 0)
	a := newAnnouncer(factory, testDeps(cfg, sp, fakeAllocations(assigned), health))
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	return a, sp
}

func TestAnnouncerNextHops(t *testing.T) {
	nodes := []runtime.Object{
		node("a1", []string{"198.51.100.11", "2001:db8:1::11"}),
		node("a2", []string{"198.51.100.12", "2001:db8:1::12"}),
		node("b1", []string{"198.51.100.140"}),
	}
	for _, tc := range []struct {
		name     string
		objs     []runtime.Object
		health   fakeHealth
		assigned map[string][]netip.Addr
		want     map[string][]string
	}{
		{
			name: "cluster policy: every eligible node of the family, with its rack",
			objs: []runtime.Object{lbService("web", v1.ServiceExternalTrafficPolicyCluster, "203.0.113.1", "2001:db8:100::1")},
			want: map[string][]string{
				"203.0.113.1":     {"198.51.100.11@rack-a", "198.51.100.12@rack-a", "198.51.100.140@rack-b"},
				"2001:db8:100::1": {"2001:db8:1::11@rack-a", "2001:db8:1::12@rack-a"},
			},
		},
		{
			name: "not ready, excluded, shut down and deleting nodes carry nothing",
			objs: []runtime.Object{
				lbService("web", v1.ServiceExternalTrafficPolicyCluster, "203.0.113.1"),
				node("x1", []string{"198.51.100.21"}, notReady), node("x2", []string{"198.51.100.22"}, excluded),
				node("x3", []string{"198.51.100.23"}, shutdown), node("x4", []string{"198.51.100.24"}, deleting),
			},
			want: map[string][]string{"203.0.113.1": {"198.51.100.11@rack-a", "198.51.100.12@rack-a", "198.51.100.140@rack-b"}},
		},
		{
			name:   "unhealthy nodes carry nothing",
			objs:   []runtime.Object{lbService("web", v1.ServiceExternalTrafficPolicyCluster, "203.0.113.1")},
			health: fakeHealth{"a2": false},
			want:   map[string][]string{"203.0.113.1": {"198.51.100.11@rack-a", "198.51.100.140@rack-b"}},
		},
		{
			name:   "every node unhealthy: fail open",
			objs:   []runtime.Object{lbService("web", v1.ServiceExternalTrafficPolicyCluster, "203.0.113.1")},
			health: fakeHealth{"a1": false, "a2": false, "b1": false},
			want:   map[string][]string{"203.0.113.1": {"198.51.100.11@rack-a", "198.51.100.12@rack-a", "198.51.100.140@rack-b"}},
		},
		{
			name: "local policy: only nodes with a ready endpoint",
			objs: []runtime.Object{
				lbService("web", v1.ServiceExternalTrafficPolicyLocal, "203.0.113.1"),
				endpointSlice("web", map[string]bool{"a2": true, "b1": false}),
			},
			want: map[string][]string{"203.0.113.1": {"198.51.100.12@rack-a"}},
		},
		{
			name: "local policy without a ready endpoint: withdrawn",
			objs: []runtime.Object{lbService("web", v1.ServiceExternalTrafficPolicyLocal, "203.0.113.1")},
			want: map[string][]string{},
		},
		{
			// 203.0.113.1 ranks a1, b1, a2 (bgp's rendezvous hash).
			name: "sessionAffinity ClientIP: the first node in rank order alone",
			objs: []runtime.Object{affinity(lbService("web", v1.ServiceExternalTrafficPolicyCluster, "203.0.113.1"))},
			want: map[string][]string{"203.0.113.1": {"198.51.100.11@rack-a"}},
		},
		{
			name:   "sessionAffinity ClientIP, the first node unhealthy: the next",
			objs:   []runtime.Object{affinity(lbService("web", v1.ServiceExternalTrafficPolicyCluster, "203.0.113.1"))},
			health: fakeHealth{"a1": false},
			want:   map[string][]string{"203.0.113.1": {"198.51.100.140@rack-b"}},
		},
		{
			name: "sessionAffinity ClientIP, Local: the first node with an endpoint",
			objs: []runtime.Object{
				affinity(lbService("web", v1.ServiceExternalTrafficPolicyLocal, "203.0.113.1")),
				endpointSlice("web", map[string]bool{"a2": true, "b1": true}),
			},
			want: map[string][]string{"203.0.113.1": {"198.51.100.140@rack-b"}},
		},
		{
			name: "a VIP shared with a ClientIP affinity Service: one node for all",
			objs: []runtime.Object{
				lbService("web", v1.ServiceExternalTrafficPolicyCluster, "203.0.113.1"),
				affinity(lbService("sticky", v1.ServiceExternalTrafficPolicyCluster, "203.0.113.1")),
			},
			want: map[string][]string{"203.0.113.1": {"198.51.100.11@rack-a"}},
		},
		{
			name:     "the leader's allocation wins over a stale status",
			objs:     []runtime.Object{lbService("web", v1.ServiceExternalTrafficPolicyCluster, "203.0.113.1")},
			assigned: map[string][]netip.Addr{"default/web": {netip.MustParseAddr("203.0.113.2")}},
			want:     map[string][]string{"203.0.113.2": {"198.51.100.11@rack-a", "198.51.100.12@rack-a", "198.51.100.140@rack-b"}},
		},
		{
			name: "not ours: a loadBalancerClass, or not a LoadBalancer",
			objs: []runtime.Object{
				func() *v1.Service {
					s := lbService("other", v1.ServiceExternalTrafficPolicyCluster, "203.0.113.3")
					class := "example.com/other"
					s.Spec.LoadBalancerClass = &class
					return s
				}(),
				func() *v1.Service {
					s := lbService("plain", v1.ServiceExternalTrafficPolicyCluster, "203.0.113.4")
					s.Spec.Type = v1.ServiceTypeClusterIP
					return s
				}(),
			},
			want: map[string][]string{},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			health := tc.health
			if health == nil {
				health = fakeHealth{}
			}
			a, sp := startAnnouncer(t, health, tc.assigned, append(slices.Clone(nodes), tc.objs...)...)
			if err := a.syncAll(context.Background()); err != nil {
				t.Fatalf("syncAll: %v", err)
			}
			if diff := cmp.Diff(tc.want, sp.hops()); diff != "" {
				t.Errorf("next hops (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAnnouncerSharedAddressAndDelete(t *testing.T) {
	a1 := lbService("a", v1.ServiceExternalTrafficPolicyCluster, "203.0.113.1")
	a1.Annotations[service.AnnotationBGPCommunities] = "65000:1"
	b1 := lbService("b", v1.ServiceExternalTrafficPolicyCluster, "203.0.113.1")
	b1.Annotations[service.AnnotationBGPCommunities] = "65000:2"
	b1.Annotations[service.AnnotationBGPLocalPref] = "200"
	a, sp := startAnnouncer(t, fakeHealth{}, nil, node("a1", []string{"198.51.100.11"}), a1, b1)
	ctx := context.Background()
	if err := a.syncAll(ctx); err != nil {
		t.Fatal(err)
	}
	adv := sp.advs[netip.MustParsePrefix("203.0.113.1/32")]
	if want := []bgp.Community{65000<<16 | 1, 65000<<16 | 2}; !slices.Equal(adv.Communities, want) || adv.LocalPref != 200 {
		t.Errorf("shared VIP attributes = %v, localPref %d; want %v, 200", adv.Communities, adv.LocalPref, want)
	}
	// One holder goes: the address stays announced for the other.
	if err := a.withdrawService(ctx, a1, []netip.Addr{netip.MustParseAddr("203.0.113.1")}); err != nil {
		t.Fatal(err)
	}
	if got := sp.hops()["203.0.113.1"]; len(got) != 1 {
		t.Errorf("after one of two sharers left, next hops = %v, want the node", got)
	}
	// Both gone: withdrawn.
	a2, sp2 := startAnnouncer(t, fakeHealth{}, nil, node("a1", []string{"198.51.100.11"}), a1)
	if err := a2.syncAll(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a2.withdrawService(ctx, a1, []netip.Addr{netip.MustParseAddr("203.0.113.1")}); err != nil {
		t.Fatal(err)
	}
	if got := sp2.hops(); len(got) != 0 {
		t.Errorf("after the only holder left, next hops = %v, want none", got)
	}
}

func TestSyncServiceReportsRouters(t *testing.T) {
	a, _ := startAnnouncer(t, fakeHealth{}, nil, node("a1", []string{"198.51.100.11"}), node("b1", []string{"198.51.100.140"}, notReady))
	svc := lbService("web", v1.ServiceExternalTrafficPolicyCluster)
	done, err := a.syncService(context.Background(), svc, []netip.Addr{netip.MustParseAddr("203.0.113.7")})
	if err != nil {
		t.Fatal(err)
	}
	want := announcedVIPs{{vip: netip.MustParseAddr("203.0.113.7"), nodes: 1, routers: 1}}
	if diff := cmp.Diff(want, done, cmp.AllowUnexported(announced{}), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("syncService (-want +got):\n%s", diff)
	}
}

// TestSyncServiceWhenStopping: a sync whose context has ended (the
// replica stops) says so and announces nothing; it does not blame the
// cloud config for the speaker that stopping removed.
func TestSyncServiceWhenStopping(t *testing.T) {
	a, sp := startAnnouncer(t, fakeHealth{}, nil, node("a1", []string{"198.51.100.11"}))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := a.syncService(ctx, lbService("web", v1.ServiceExternalTrafficPolicyCluster), []netip.Addr{netip.MustParseAddr("203.0.113.7")})
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "stopping") {
		t.Errorf("syncService with an ended context: error %v, want one saying the replica stops, wrapping context.Canceled", err)
	}
	if got := sp.hops(); len(got) != 0 {
		t.Errorf("announced %v, want nothing", got)
	}
}

// TestSyncServiceSeesEveryHolder: one Service's sync looks only at the
// holders of its VIP, and finds all of them: the Services whose status has
// it and the ones the leader has allocated it to whose status does not say
// so yet, not a Service whose status is out of date.
func TestSyncServiceSeesEveryHolder(t *testing.T) {
	local := v1.ServiceExternalTrafficPolicyLocal
	vip := netip.MustParseAddr("203.0.113.5")
	a, sp := startAnnouncer(t, fakeHealth{},
		map[string][]netip.Addr{
			"default/allocated": {vip},
			"default/moved":     {netip.MustParseAddr("203.0.113.9")},
		},
		node("a1", []string{"198.51.100.11"}), node("a2", []string{"198.51.100.12"}), node("b1", []string{"198.51.100.140"}),
		lbService("in-status", local, vip.String()), endpointSlice("in-status", map[string]bool{"a1": true}),
		lbService("allocated", local), endpointSlice("allocated", map[string]bool{"a2": true}),
		// Its status still has the VIP, but the allocator moved it.
		lbService("moved", local, vip.String()), endpointSlice("moved", map[string]bool{"b1": true}),
		lbService("elsewhere", local, "203.0.113.6"), endpointSlice("elsewhere", map[string]bool{"b1": true}),
	)
	ctx := context.Background()
	joining := lbService("joining", local)
	if _, err := a.syncService(ctx, joining, []netip.Addr{vip}); err != nil {
		t.Fatal(err)
	}
	want := []string{"198.51.100.11@rack-a", "198.51.100.12@rack-a"}
	if diff := cmp.Diff(want, sp.hops()[vip.String()]); diff != "" {
		t.Errorf("next hops of %s after syncService (-want +got):\n%s", vip, diff)
	}
	if _, ok := sp.hops()["203.0.113.6"]; ok {
		t.Errorf("syncService of %s announced 203.0.113.6, which is not its address", vip)
	}
	inStatus, err := a.services.Services("default").Get("in-status")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.withdrawService(ctx, inStatus, []netip.Addr{vip}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"198.51.100.12@rack-a"}, sp.hops()[vip.String()]); diff != "" {
		t.Errorf("next hops of %s after in-status left (-want +got):\n%s", vip, diff)
	}
}

// TestAnnouncerFollowsChanges checks that a change in the cluster reaches
// the speaker by itself, well within a second.
func TestAnnouncerFollowsChanges(t *testing.T) {
	client := fake.NewClientset(node("a1", []string{"198.51.100.11"}), node("a2", []string{"198.51.100.12"}),
		lbService("web", v1.ServiceExternalTrafficPolicyCluster, "203.0.113.1"))
	cfg, _ := config.Parse([]byte(announcerConfig))
	sp := &fakeSpeaker{advs: map[netip.Prefix]bgp.Advertisement{}}
	factory := informers.NewSharedInformerFactory(client, 0)
	a := newAnnouncer(factory, testDeps(cfg, sp, fakeAllocations(nil), fakeHealth{}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	factory.Start(ctx.Done())
	go a.run(ctx)
	waitHops(t, sp, "203.0.113.1", 2)
	n, _ := client.CoreV1().Nodes().Get(ctx, "a2", metav1.GetOptions{})
	notReady(n)
	if _, err := client.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	waitHops(t, sp, "203.0.113.1", 1)
	t.Logf("node NotReady reached the speaker in %s", time.Since(start))
}

func waitHops(t *testing.T, sp *fakeSpeaker, vip string, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute) // ends as soon as it is done
	for len(sp.hops()[vip]) != n {
		if time.Now().After(deadline) {
			t.Fatalf("%s: next hops %v, want %d", vip, sp.hops()[vip], n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var _ = fmt.Sprint

// TestAnnouncedInLog: the "Ensured load balancer" line shows what was
// announced, not {}.
func TestAnnouncedInLog(t *testing.T) {
	var buf bytes.Buffer
	logger := textlogger.NewLogger(textlogger.NewConfig(textlogger.Output(&buf)))
	logger.Info("Ensured load balancer", "announced", announcedVIPs{{vip: netip.MustParseAddr("203.0.113.7"), nodes: 3, routers: 2}})
	if want := `announced=[{"vip":"203.0.113.7","nodes":3,"routers":2}]`; !strings.Contains(buf.String(), want) {
		t.Errorf("log line %q does not contain %s", buf.String(), want)
	}
}
