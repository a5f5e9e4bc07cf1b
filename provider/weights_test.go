package provider

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/baremetal-ccm/baremetal-ccm/bgp"
	"github.com/baremetal-ccm/baremetal-ccm/provider/config"
	"github.com/baremetal-ccm/baremetal-ccm/provider/service"
)

// podEndpoint is a ready endpoint of pod on node, at addr.
func podEndpoint(pod, node, addr string) discoveryv1.Endpoint {
	ready := true
	return discoveryv1.Endpoint{
		Addresses:  []string{addr},
		NodeName:   &node,
		TargetRef:  &v1.ObjectReference{Kind: "Pod", Namespace: "default", Name: pod},
		Conditions: discoveryv1.EndpointConditions{Ready: &ready},
	}
}

// slice is an EndpointSlice of svc named name with eps.
func slice(svc, name string, family discoveryv1.AddressType, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: family,
		Endpoints:   eps,
	}
}

// podsOn returns n ready endpoints on node, pods prefix-0..n-1.
func podsOn(prefix, node string, n int) []discoveryv1.Endpoint {
	var out []discoveryv1.Endpoint
	for i := range n {
		out = append(out, podEndpoint(fmt.Sprintf("%s-%d", prefix, i), node, fmt.Sprintf("192.0.2.%d", len(prefix)*10+i)))
	}
	return out
}

func TestReadyEndpointCounts(t *testing.T) {
	notReady := podEndpoint("sick", "a1", "192.0.2.50")
	notReady.Conditions.Ready = ptr(false)
	unknown := podEndpoint("unknown", "a1", "192.0.2.51")
	unknown.Conditions.Ready = nil
	noNode := podEndpoint("nowhere", "a1", "192.0.2.52")
	noNode.NodeName = nil
	noRef := func(addr string) discoveryv1.Endpoint {
		ep := podEndpoint("", "b1", addr)
		ep.TargetRef = nil
		return ep
	}
	for _, tc := range []struct {
		name   string
		slices []*discoveryv1.EndpointSlice
		want   map[string]int
	}{
		{"none", nil, map[string]int{}},
		{"one per node", []*discoveryv1.EndpointSlice{slice("web", "w1", discoveryv1.AddressTypeIPv4,
			podEndpoint("p1", "a1", "192.0.2.1"), podEndpoint("p2", "a2", "192.0.2.2"), podEndpoint("p3", "a2", "192.0.2.3"))},
			map[string]int{"a1": 1, "a2": 2}},
		{"a dual-stack Service lists each pod once per family: counted once", []*discoveryv1.EndpointSlice{
			slice("web", "w4", discoveryv1.AddressTypeIPv4, podEndpoint("p1", "a1", "192.0.2.1"), podEndpoint("p2", "a1", "192.0.2.2")),
			slice("web", "w6", discoveryv1.AddressTypeIPv6, podEndpoint("p1", "a1", "2001:db8::1"), podEndpoint("p2", "a1", "2001:db8::2")),
		}, map[string]int{"a1": 2}},
		{"a pod in two slices while they are rebalanced: counted once", []*discoveryv1.EndpointSlice{
			slice("web", "w1", discoveryv1.AddressTypeIPv4, podEndpoint("p1", "a1", "192.0.2.1")),
			slice("web", "w2", discoveryv1.AddressTypeIPv4, podEndpoint("p1", "a1", "192.0.2.1"), podEndpoint("p2", "a1", "192.0.2.2")),
		}, map[string]int{"a1": 2}},
		{"not ready is left out, unknown readiness counts, no node is left out", []*discoveryv1.EndpointSlice{
			slice("web", "w1", discoveryv1.AddressTypeIPv4, notReady, unknown, noNode),
		}, map[string]int{"a1": 1}},
		{"without targetRef, by address", []*discoveryv1.EndpointSlice{
			slice("web", "w1", discoveryv1.AddressTypeIPv4, noRef("192.0.2.60"), noRef("192.0.2.61"), noRef("192.0.2.60")),
		}, map[string]int{"b1": 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := readyEndpointCounts(tc.slices); !maps.Equal(got, tc.want) {
				t.Errorf("readyEndpointCounts() = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestShareBounds(t *testing.T) {
	for _, tc := range []struct {
		endpoints int
		want      uint32
	}{{0, 0}, {1, 1}, {250, 250}, {bgp.MaxShare, bgp.MaxShare}, {bgp.MaxShare + 1, bgp.MaxShare}, {-1, 0}} {
		if got := share(tc.endpoints); got != tc.want {
			t.Errorf("share(%d) = %d, want %d", tc.endpoints, got, tc.want)
		}
	}
}

// weightedConfig is announcerConfig with a bgp section.
func weightedConfig(t *testing.T, weighted string) *config.Config {
	t.Helper()
	yaml := announcerConfig + "bgp:\n  asn: 64512\n"
	if weighted != "" {
		yaml += "  weightedECMP: {" + weighted + "}\n"
	}
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// shares returns "address=share" of every next hop per VIP ("VIP
// transitive" when the VIP asks for the transitive community).
func (f *fakeSpeaker) shares() map[string][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string][]string{}
	for p, a := range f.advs {
		key := p.Addr().String()
		if a.TransitiveLinkBandwidth {
			key += " transitive"
		}
		for _, h := range a.NextHops {
			out[key] = append(out[key], fmt.Sprintf("%s=%d", h.Addr, h.Share))
		}
		slices.Sort(out[key])
	}
	return out
}

func withAnnotation(s *v1.Service, k, v string) *v1.Service {
	s.Annotations[k] = v
	return s
}

// TestAnnouncerShares: a Local Service's next hops carry its ready
// endpoints per node as shares; a Cluster Service's, an opted-out
// Service's and every Service's with bgp.weightedECMP false carry none;
// the holders of a shared address add up.
func TestAnnouncerShares(t *testing.T) {
	nodes := []runtime.Object{
		node("a1", []string{"198.51.100.11", "2001:db8:1::11"}),
		node("a2", []string{"198.51.100.12", "2001:db8:1::12"}),
		node("a3", []string{"198.51.100.13"}),
	}
	local := func(name string, ips ...string) *v1.Service {
		return lbService(name, v1.ServiceExternalTrafficPolicyLocal, ips...)
	}
	webPods := slice("web", "web-1", discoveryv1.AddressTypeIPv4,
		slices.Concat(podsOn("w", "a1", 1), podsOn("ww", "a2", 2), podsOn("www", "a3", 3))...)
	for _, tc := range []struct {
		name     string
		weighted string // bgp.weightedECMP's fields; empty: the defaults
		objs     []runtime.Object
		want     map[string][]string
	}{
		{
			name: "local: shares are the ready endpoints per node (default on)",
			objs: []runtime.Object{local("web", "203.0.113.1"), webPods},
			want: map[string][]string{"203.0.113.1": {"198.51.100.11=1", "198.51.100.12=2", "198.51.100.13=3"}},
		},
		{
			name: "local, dual-stack: the same shares for both VIPs",
			objs: []runtime.Object{local("web", "203.0.113.1", "2001:db8:100::1"), webPods,
				slice("web", "web-6", discoveryv1.AddressTypeIPv6, podEndpoint("w-0", "a1", "2001:db8::1"), podEndpoint("ww-0", "a2", "2001:db8::2"), podEndpoint("ww-1", "a2", "2001:db8::3"))},
			want: map[string][]string{
				"203.0.113.1":     {"198.51.100.11=1", "198.51.100.12=2", "198.51.100.13=3"},
				"2001:db8:100::1": {"2001:db8:1::11=1", "2001:db8:1::12=2"},
			},
		},
		{
			name:     "local, transitive",
			weighted: "transitive: true",
			objs:     []runtime.Object{local("web", "203.0.113.1"), webPods},
			want:     map[string][]string{"203.0.113.1 transitive": {"198.51.100.11=1", "198.51.100.12=2", "198.51.100.13=3"}},
		},
		{
			name:     "cluster, transitive configured: no shares, not transitive",
			weighted: "transitive: true",
			objs:     []runtime.Object{lbService("web", v1.ServiceExternalTrafficPolicyCluster, "203.0.113.1"), webPods},
			want:     map[string][]string{"203.0.113.1": {"198.51.100.11=0", "198.51.100.12=0", "198.51.100.13=0"}},
		},
		{
			name: "cluster: no shares",
			objs: []runtime.Object{lbService("web", v1.ServiceExternalTrafficPolicyCluster, "203.0.113.1"), webPods},
			want: map[string][]string{"203.0.113.1": {"198.51.100.11=0", "198.51.100.12=0", "198.51.100.13=0"}},
		},
		{
			name:     "bgp.weightedECMP.enabled false: no shares",
			weighted: "enabled: false",
			objs:     []runtime.Object{local("web", "203.0.113.1"), webPods},
			want:     map[string][]string{"203.0.113.1": {"198.51.100.11=0", "198.51.100.12=0", "198.51.100.13=0"}},
		},
		{
			name: "opted out by annotation: no shares",
			objs: []runtime.Object{withAnnotation(local("web", "203.0.113.1"), service.AnnotationWeightedECMP, "false"), webPods},
			want: map[string][]string{"203.0.113.1": {"198.51.100.11=0", "198.51.100.12=0", "198.51.100.13=0"}},
		},
		{
			name: "a bad annotation value: no shares",
			objs: []runtime.Object{withAnnotation(local("web", "203.0.113.1"), service.AnnotationWeightedECMP, "nope"), webPods},
			want: map[string][]string{"203.0.113.1": {"198.51.100.11=0", "198.51.100.12=0", "198.51.100.13=0"}},
		},
		{
			name: "a shared address: the holders' endpoints add up",
			objs: []runtime.Object{
				local("web", "203.0.113.1"), webPods,
				local("dns", "203.0.113.1"), slice("dns", "dns-1", discoveryv1.AddressTypeIPv4, podsOn("d", "a1", 4)...),
			},
			want: map[string][]string{"203.0.113.1": {"198.51.100.11=5", "198.51.100.12=2", "198.51.100.13=3"}},
		},
		{
			name: "a shared address with one holder opted out: no shares",
			objs: []runtime.Object{
				local("web", "203.0.113.1"), webPods,
				withAnnotation(local("dns", "203.0.113.1"), service.AnnotationWeightedECMP, "false"),
				slice("dns", "dns-1", discoveryv1.AddressTypeIPv4, podsOn("d", "a1", 4)...),
			},
			want: map[string][]string{"203.0.113.1": {"198.51.100.11=0", "198.51.100.12=0", "198.51.100.13=0"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sp := &fakeSpeaker{advs: map[netip.Prefix]bgp.Advertisement{}}
			factory := informers.NewSharedInformerFactory(fake.NewClientset(append(slices.Clone(nodes), tc.objs...)...), 0)
			a := newAnnouncer(factory, testDeps(weightedConfig(t, tc.weighted), sp, fakeAllocations(nil), fakeHealth{}))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			factory.Start(ctx.Done())
			factory.WaitForCacheSync(ctx.Done())
			if err := a.syncAll(ctx); err != nil {
				t.Fatalf("syncAll: %v", err)
			}
			if diff := cmp.Diff(tc.want, sp.shares()); diff != "" {
				t.Errorf("next hops and shares (-want +got):\n%s", diff)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// countingSpeaker counts SetAll calls.
type countingSpeaker struct {
	*fakeSpeaker
	setAll atomic.Int32
}

func (c *countingSpeaker) SetAll(ctx context.Context, advs []bgp.Advertisement) error {
	c.setAll.Add(1)
	return c.fakeSpeaker.SetAll(ctx, advs)
}

// TestEndpointBurstCoalesced: fifty EndpointSlice changes in a row leave
// one sync queued, and that one sync hands the speaker the last counts.
func TestEndpointBurstCoalesced(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := fake.NewClientset(
		node("a1", []string{"198.51.100.11"}), node("a2", []string{"198.51.100.12"}),
		lbService("web", v1.ServiceExternalTrafficPolicyLocal, "203.0.113.1"),
		slice("web", "web-1", discoveryv1.AddressTypeIPv4, podsOn("w", "a1", 1)...),
	)
	sp := &countingSpeaker{fakeSpeaker: &fakeSpeaker{advs: map[netip.Prefix]bgp.Advertisement{}}}
	factory := informers.NewSharedInformerFactory(client, 0)
	a := newAnnouncer(factory, testDeps(weightedConfig(t, ""), sp, fakeAllocations(nil), fakeHealth{}))
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	// The informers' initial events queued the one key already.
	const burst = 50
	for i := 1; i <= burst; i++ {
		s := slice("web", "web-1", discoveryv1.AddressTypeIPv4, slices.Concat(podsOn("w", "a1", 1+i%3), podsOn("v", "a2", i))...)
		if _, err := client.DiscoveryV1().EndpointSlices("default").Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// The announcer's handler sees the events in order: once it has seen
	// a last one, of another Service, it has seen the burst.
	if _, err := client.DiscoveryV1().EndpointSlices("default").Create(ctx, slice("sentinel", "sentinel-1", discoveryv1.AddressTypeIPv4), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !a.dirtyService("default/sentinel") {
		if time.Now().After(deadline) {
			t.Fatal("the announcer's handler did not see the last event")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if eps, err := a.slices.EndpointSlices("default").Get("web-1"); err != nil || len(eps.Endpoints) != 3+burst {
		t.Fatalf("the informer does not have the last update (a1: 1+50%%3 = 3, a2: 50): %v", err)
	}
	if n := a.queue.Len(); n != 1 {
		t.Fatalf("after %d changes the queue holds %d syncs, want 1", burst, n)
	}
	if !a.processNext(ctx) {
		t.Fatal("the queue was shut down")
	}
	if n := a.queue.Len(); n != 0 {
		t.Errorf("after one sync %d more are queued, want none", n)
	}
	if got := sp.setAll.Load(); got != 1 {
		t.Errorf("SetAll called %d times, want 1", got)
	}
	want := map[string][]string{"203.0.113.1": {"198.51.100.11=3", "198.51.100.12=50"}}
	if diff := cmp.Diff(want, sp.shares()); diff != "" {
		t.Errorf("shares after the burst (-want +got):\n%s", diff)
	}
}
