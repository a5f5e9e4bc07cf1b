package e2e

import (
	"context"
	"fmt"
	"maps"
	"math"
	"net/netip"
	"slices"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/baremetal-ccm/baremetal-ccm/bgp"
	"github.com/baremetal-ccm/baremetal-ccm/test/fabric"
	"github.com/baremetal-ccm/baremetal-ccm/test/lab"
	"github.com/baremetal-ccm/baremetal-ccm/test/lbservice"
)

// weightTolerance is how far a next hop's share of the kernel weights may
// be from its share of the endpoints: FRR before 10.0 truncates weights
// to hundredths of the total (1:2:3 becomes 16:33:50).
const weightTolerance = 0.02

// endpointsSlice is the EndpointSlice of Service svc with count[i] ready
// endpoints on nodes[i]: pods named svc-<node>-<j>, with documentation
// addresses that shift with gen (so that a new gen changes the slice
// without changing any count).
func endpointsSlice(svc string, nodes []*lab.Node, count []int, gen int) *discoveryv1.EndpointSlice {
	ready := true
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: svc + "-1", Namespace: "default",
			Labels: map[string]string{discoveryv1.LabelServiceName: svc, discoveryv1.LabelManagedBy: "e2e"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080))}},
	}
	for i, n := range nodes {
		for j := range count[i] {
			s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
				Addresses:  []string{fmt.Sprintf("192.0.2.%d", 100+(gen%2)*50+10*i+j)},
				NodeName:   ptr(n.Name),
				TargetRef:  &v1.ObjectReference{Kind: "Pod", Namespace: "default", Name: fmt.Sprintf("%s-%s-%d", svc, n.Name, j)},
				Conditions: discoveryv1.EndpointConditions{Ready: &ready},
			})
		}
	}
	return s
}

// ratioOf maps the nodes' IPv4 addresses to count.
func ratioOf(nodes []*lab.Node, count []int) map[netip.Addr]int {
	out := map[netip.Addr]int{}
	for i, n := range nodes {
		out[n.Addr4] = count[i]
	}
	return out
}

// waitWeights polls the rack's ToR every 5 ms until its kernel route for
// vip has want's next hops with weights in want's ratio, and returns the
// weights and when it saw them.
func waitWeights(t *testing.T, r *lab.Rack, vip netip.Addr, want map[netip.Addr]int) (map[netip.Addr]int, time.Time) {
	t.Helper()
	var got map[netip.Addr]int
	err := fabric.Eventually(context.Background(), waitTimeout, 5*time.Millisecond, func() error {
		var err error
		if got, err = fabric.NextHopWeights(context.Background(), r.NS, lab.HostPrefix(vip)); err != nil {
			return err
		}
		return fabric.CheckWeightRatio(got, want, weightTolerance)
	})
	if err != nil {
		t.Fatalf("%s: %v", r.Name, err)
	}
	return got, time.Now()
}

// linkBandwidths returns the extended communities of the ToR's paths for
// vip, by next hop ("" for a path without).
func linkBandwidths(t *testing.T, r *lab.Rack, vip netip.Addr) map[string][]string {
	t.Helper()
	paths, err := r.FRR.BGPPaths(context.Background(), lab.HostPrefix(vip).String())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, p := range paths {
		ec := ""
		if p.ExtendedCommunity != nil {
			ec = p.ExtendedCommunity.String
		}
		if len(p.Nexthops) > 0 {
			out[p.Nexthops[0].IP] = append(out[p.Nexthops[0].IP], ec)
		}
	}
	return out
}

// updatesFrom returns how many UPDATEs the ToR has received from each
// replica.
func (e *env) updatesFrom(t *testing.T, r *lab.Rack) []int {
	t.Helper()
	var out []int
	for _, c := range e.l.CCMs {
		n, err := r.FRR.UpdatesReceived(context.Background(), c.Addr4.String())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
	}
	return out
}

// (issue 17) externalTrafficPolicy: Local with 1, 2 and 3 ready endpoints
// on the three nodes of rack A: the ToR's kernel route has next-hop
// weights in the ratio 1:2:3, new connections from the client split
// within ±20 % of it, a node scaling from 1 to 3 endpoints changes the
// weights (the time is logged), a change that keeps the counts sends
// nothing, and every replica sends one UPDATE for one node's change.
func (e *env) weightedECMP(t *testing.T) {
	ctx := context.Background()
	c := e.l.CP.Client
	rackA, rackB := e.l.Racks[0], e.l.Racks[1]
	nodes := rackA.Nodes
	count := []int{1, 2, 3}
	gen := 0
	if _, err := c.DiscoveryV1().EndpointSlices("default").Create(ctx, endpointsSlice("weighted", nodes, count, gen), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.DiscoveryV1().EndpointSlices("default").Delete(context.Background(), "weighted-1", metav1.DeleteOptions{})
	})
	vip := e.create(t, lbservice.New("weighted", 80, lbservice.SingleStack(v1.IPv4Protocol), func(s *v1.Service) {
		s.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
	}))[0]

	// Everything the requests go through: ToR A's weighted route, no
	// route on ToR B (its rack has no endpoint), the client's route via
	// ToR A alone, and each node answering on the VIP.
	weights, _ := waitWeights(t, rackA, vip, ratioOf(nodes, count))
	t.Logf("endpoints 1:2:3 -> %s kernel weights %s", rackA.Name, fabric.FormatWeights(weights))
	waitHops(t, rackB, vip, nil, waitTimeout)
	if err := fabric.Eventually(ctx, waitTimeout, 50*time.Millisecond, func() error {
		routes, err := fabric.Routes(ctx, e.l.Client, lab.HostPrefix(vip))
		if err != nil {
			return err
		}
		var got []netip.Addr
		for _, r := range routes {
			got = append(got, r.Gateways()...)
		}
		if !slices.Equal(got, []netip.Addr{rackA.Core4}) {
			return fmt.Errorf("client: route for %s via %v, want via %s only", vip, got, rackA.Core4)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	url := lab.URL(vip.String(), 80)
	for _, n := range nodes {
		if err := fabric.Eventually(ctx, waitTimeout, 100*time.Millisecond, func() error {
			return e.l.NodeAnswers(ctx, n, url)
		}); err != nil {
			t.Fatal(err)
		}
	}
	lbs := linkBandwidths(t, rackA, vip)
	for i, n := range nodes {
		want := fmt.Sprintf("LB:%d:%d (%d.000 Mbps)", lab.CCMASN, count[i]*bgp.LinkBandwidthUnit, count[i])
		got := lbs[n.Addr4.String()]
		if len(got) != len(e.l.CCMs) || slices.ContainsFunc(got, func(s string) bool { return s != want }) {
			t.Errorf("%s's paths via %s carry %q, want %q from each replica", rackA.Name, n.Name, got, want)
		}
	}

	// New connections split in proportion to the endpoints.
	const requests = 2000
	rs := e.probe(t, vip, requests, 0)
	if f := rs.Failed(); len(f) > 0 {
		t.Errorf("%d of %d requests failed, first: %+v", len(f), requests, f[0])
	}
	spread := rs.Spread()
	t.Logf("%d new connections split %v over endpoints 1:2:3 (kernel weights %s)", requests, spread, fabric.FormatWeights(weights))
	for i, n := range nodes {
		want := float64(requests) * float64(count[i]) / 6
		if got := float64(spread[n.Name]); math.Abs(got-want) > 0.2*want {
			t.Errorf("%s answered %v of %d requests, want %.0f ± 20 %%", n.Name, got, requests, want)
		}
	}

	// A change that keeps the counts (new addresses) sends nothing; one
	// node's change sends each replica's path via that node again, one
	// UPDATE each.
	before := e.updatesFrom(t, rackA)
	update := func(count []int) time.Time {
		t.Helper()
		gen++
		start := time.Now()
		if _, err := c.DiscoveryV1().EndpointSlices("default").Update(ctx, endpointsSlice("weighted", nodes, count, gen), metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		return start
	}
	update(count)
	// a1 scales 1 -> 3, then back and forth: each time the weights are
	// timed from the EndpointSlice update to the ToR's kernel route.
	var took []time.Duration
	for i, a1 := range []int{3, 1, 3, 1, 3} {
		count = []int{a1, 2, 3}
		start := update(count)
		weights, seen := waitWeights(t, rackA, vip, ratioOf(nodes, count))
		took = append(took, seen.Sub(start))
		t.Logf("a1 -> %d endpoints: %s kernel weights %s, %v after the EndpointSlice update", a1, rackA.Name, fabric.FormatWeights(weights), seen.Sub(start).Round(time.Millisecond))
		if i == 0 {
			e.checkOneUpdateEach(t, rackA, before)
		}
	}
	slices.Sort(took)
	t.Logf("weights changed %v after the EndpointSlice update (median %v, target 1 s)", took, took[len(took)/2])
}

// checkOneUpdateEach waits until the ToR has received an UPDATE from
// every replica since before, and checks that it was exactly one.
func (e *env) checkOneUpdateEach(t *testing.T, r *lab.Rack, before []int) {
	t.Helper()
	var after []int
	if err := fabric.Eventually(context.Background(), waitTimeout, 50*time.Millisecond, func() error {
		after = e.updatesFrom(t, r)
		for i := range after {
			if after[i] == before[i] {
				return fmt.Errorf("no UPDATE from %s yet", e.l.CCMs[i].Name)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for i := range after {
		if d := after[i] - before[i]; d != 1 {
			t.Errorf("%s sent %s %d UPDATEs for an unchanged count and one node's change, want 1", e.l.CCMs[i].Name, r.Name, d)
		}
	}
}

// (issue 17) A Cluster Service is unchanged: its paths carry no
// link-bandwidth community and the ToR's weights are equal.
func (e *env) clusterEqualWeights(t *testing.T) {
	vip := e.create(t, lbservice.New("equal", 80, lbservice.SingleStack(v1.IPv4Protocol)))[0]
	e.waitServing(t, vip, nil)
	for _, r := range e.l.Racks {
		want := map[netip.Addr]int{}
		for _, n := range r.Nodes {
			want[n.Addr4] = 1
		}
		var got map[netip.Addr]int
		if err := fabric.Eventually(context.Background(), waitTimeout, 50*time.Millisecond, func() error {
			var err error
			got, err = fabric.NextHopWeights(context.Background(), r.NS, lab.HostPrefix(vip))
			if err != nil {
				return err
			}
			if !maps.Equal(got, want) {
				return fmt.Errorf("%s: weights %s, want %s", r.Name, fabric.FormatWeights(got), fabric.FormatWeights(want))
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		for nh, ecs := range linkBandwidths(t, r, vip) {
			for _, ec := range ecs {
				if ec != "" {
					t.Errorf("%s: a path via %s carries %q, want no extended community", r.Name, nh, ec)
				}
			}
		}
		t.Logf("%s: Cluster Service, kernel weights %s", r.Name, fabric.FormatWeights(got))
	}
}
