package bgp

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var (
	// routeTestExports are the export prefixes (VIPs) of the route tests:
	// they must not overlap the route prefixes.
	routeTestExports  = []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("2001:db8:100::/48")}
	testRoutePrefixes = []netip.Prefix{netip.MustParsePrefix("198.18.0.0/16"), netip.MustParsePrefix("2001:db8:f000::/48")}
	podA              = netip.MustParsePrefix("198.18.1.0/24")
	podB              = netip.MustParsePrefix("198.18.2.0/24")
	podB6             = netip.MustParsePrefix("2001:db8:f000:2::/64")
)

func route(prefix netip.Prefix, node, nextHop, rack string) Route {
	return Route{Prefix: prefix, Node: node, NextHop: netip.MustParseAddr(nextHop), Rack: rack}
}

// TestSetRoutesReconciles: SetRoutes sends only the difference from what
// is announced; a new next hop replaces the path under its identifier; a
// change of routers (rack, AllRouters) announces a new path before the old
// one goes.
func TestSetRoutesReconciles(t *testing.T) {
	s, fr := startFakeSpeaker(t, Config{RoutePrefixes: testRoutePrefixes, ExportPrefixes: routeTestExports})
	ctx := testContext(t)
	a := route(podA, "node-a", "192.0.2.10", "rack-a")
	b6 := route(podB6, "node-b", "2001:db8:b::10", "rack-b")
	movedA := a
	movedA.NextHop = netip.MustParseAddr("192.0.2.11")
	rackB := movedA
	rackB.Rack = "rack-b"
	everywhere := rackB
	everywhere.AllRouters = true

	for _, step := range []struct {
		name   string
		routes []Route
		ops    []string
		hops   map[netip.Prefix][]string
	}{
		{"two routes", []Route{a, b6}, []string{"addPath 198.18.1.0/24#1", "addPath 2001:db8:f000:2::/64#1"},
			map[netip.Prefix][]string{podA: {"1:192.0.2.10:m1"}, podB6: {"1:2001:db8:b::10:m2"}}},
		{"unchanged", []Route{b6, a}, nil,
			map[netip.Prefix][]string{podA: {"1:192.0.2.10:m1"}, podB6: {"1:2001:db8:b::10:m2"}}},
		{"new next hop", []Route{movedA, b6}, []string{"addPath 198.18.1.0/24#1"},
			map[netip.Prefix][]string{podA: {"1:192.0.2.11:m1"}, podB6: {"1:2001:db8:b::10:m2"}}},
		{"other rack", []Route{rackB, b6}, []string{"addPath 198.18.1.0/24#2", "deletePath 198.18.1.0/24#1"},
			map[netip.Prefix][]string{podA: {"2:192.0.2.11:m2"}, podB6: {"1:2001:db8:b::10:m2"}}},
		{"all routers", []Route{everywhere, b6}, []string{"addPath 198.18.1.0/24#3", "deletePath 198.18.1.0/24#2"},
			map[netip.Prefix][]string{podA: {"3:192.0.2.11:m0"}, podB6: {"1:2001:db8:b::10:m2"}}},
		{"one gone", []Route{everywhere}, []string{"deletePath 2001:db8:f000:2::/64#1"},
			map[netip.Prefix][]string{podA: {"3:192.0.2.11:m0"}}},
		{"none", nil, []string{"deletePath 198.18.1.0/24#3"}, map[netip.Prefix][]string{}},
		{"back, numbered afresh", []Route{a}, []string{"addPath 198.18.1.0/24#1"},
			map[netip.Prefix][]string{podA: {"1:192.0.2.10:m1"}}},
	} {
		fr.last().takeOps()
		if err := s.SetRoutes(ctx, step.routes); err != nil {
			t.Fatalf("%s: SetRoutes() = %v", step.name, err)
		}
		if diff := cmp.Diff(step.ops, fr.last().takeOps()); diff != "" {
			t.Errorf("%s: router changes (-want +got):\n%s", step.name, diff)
		}
		if diff := cmp.Diff(step.hops, fr.last().announced(), equateNetip); diff != "" {
			t.Errorf("%s: announced (-want +got):\n%s", step.name, diff)
		}
		var want []Route
		for _, r := range step.routes {
			if r.Prefix == podA {
				want = append([]Route{r}, want...)
			} else {
				want = append(want, r)
			}
		}
		if diff := cmp.Diff(want, s.Routes(), equateNetip, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%s: Routes() (-want +got):\n%s", step.name, diff)
		}
	}
}

// TestSetRoutesRefuses: a route the speaker cannot announce is refused
// with ErrInvalidRoute and leaves its prefix as it was; the other routes
// are applied.
func TestSetRoutesRefuses(t *testing.T) {
	s, fr := startFakeSpeaker(t, Config{RoutePrefixes: testRoutePrefixes,
		ExportPrefixes: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("198.18.200.0/24")}})
	ctx := testContext(t)
	a := route(podA, "node-a", "192.0.2.10", "")
	b := route(podB, "node-b", "192.0.2.20", "")
	if err := s.SetRoutes(ctx, []Route{a, b}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		bad  Route
	}{
		{"outside the route prefixes", route(netip.MustParsePrefix("192.0.2.0/24"), "node-x", "192.0.2.10", "")},
		{"a default route", route(netip.MustParsePrefix("0.0.0.0/0"), "node-x", "192.0.2.10", "")},
		{"containing a route prefix", route(netip.MustParsePrefix("198.0.0.0/8"), "node-x", "192.0.2.10", "")},
		{"overlapping the VIPs", route(netip.MustParsePrefix("198.18.200.0/25"), "node-x", "192.0.2.10", "")},
		{"containing the VIPs", route(netip.MustParsePrefix("198.18.128.0/17"), "node-x", "192.0.2.10", "")},
		{"host bits", route(netip.MustParsePrefix("198.18.3.1/24"), "node-x", "192.0.2.10", "")},
		{"next hop of the other family", route(netip.MustParsePrefix("198.18.3.0/24"), "node-x", "2001:db8::1", "")},
		{"unspecified next hop", route(netip.MustParsePrefix("198.18.3.0/24"), "node-x", "0.0.0.0", "")},
		{"multicast next hop", route(netip.MustParsePrefix("198.18.3.0/24"), "node-x", "224.0.0.1", "")},
		{"no node", route(netip.MustParsePrefix("198.18.3.0/24"), "", "192.0.2.10", "")},
		{"a known prefix made bad", route(podB, "node-b", "2001:db8::1", "")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fr.last().takeOps()
			err := s.SetRoutes(ctx, []Route{a, tc.bad, b})
			if !errors.Is(err, ErrInvalidRoute) {
				t.Fatalf("SetRoutes(%v) = %v, want ErrInvalidRoute", tc.bad, err)
			}
			if ops := fr.last().takeOps(); len(ops) != 0 {
				t.Errorf("SetRoutes(%v) changed the router: %v", tc.bad, ops)
			}
			if got := s.Routes(); len(got) != 2 {
				t.Errorf("Routes() = %v, want the two valid ones", got)
			}
		})
	}
	if err := s.SetRoutes(ctx, []Route{a, b, {Prefix: podB, Node: "node-c", NextHop: netip.MustParseAddr("192.0.2.30")}}); !errors.Is(err, ErrInvalidRoute) {
		t.Errorf("SetRoutes(a prefix twice) = %v, want ErrInvalidRoute", err)
	}
}

// TestRoutesBesideVIPs: routes and VIPs are separate desired states: the
// announcer's SetAll leaves the routes alone, and SetRoutes the VIPs.
func TestRoutesBesideVIPs(t *testing.T) {
	s, fr := startFakeSpeaker(t, Config{RoutePrefixes: testRoutePrefixes, ExportPrefixes: routeTestExports,
		Peers: []Peer{fakePeer("tor", "192.0.2.254", "")}})
	ctx := testContext(t)
	if err := s.SetRoutes(ctx, []Route{route(podA, "node-a", "192.0.2.10", "")}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetAll(ctx, []Advertisement{{Prefix: vip4, NextHops: []NextHop{nh("node-a", "192.0.2.10", "")}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetAll(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if got := fr.last().announced(); !cmp.Equal(got, map[netip.Prefix][]string{podA: {"1:192.0.2.10"}}, equateNetip) {
		t.Errorf("after SetAll(none), announced %v, want the route only", got)
	}
	if err := s.SetAll(ctx, []Advertisement{{Prefix: vip4, NextHops: []NextHop{nh("node-a", "192.0.2.10", "")}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetRoutes(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if got := fr.last().announced(); !cmp.Equal(got, map[netip.Prefix][]string{vip4: {"1:192.0.2.10"}}, equateNetip) {
		t.Errorf("after SetRoutes(none), announced %v, want the VIP only", got)
	}
	// A VIP cannot be announced inside the route prefixes: those are not
	// export prefixes.
	inPods := Advertisement{Prefix: netip.MustParsePrefix("198.18.1.1/32"), NextHops: []NextHop{nh("node-a", "192.0.2.10", "")}}
	if err := s.Announce(ctx, inPods); !errors.Is(err, ErrInvalidAdvertisement) {
		t.Errorf("Announce(a VIP in the route prefixes) = %v, want ErrInvalidAdvertisement", err)
	}
}

// TestRoutesFollowConfig: routes outside new route prefixes are withdrawn
// and forgotten; a restarted GoBGP gets every route again.
func TestRoutesFollowConfig(t *testing.T) {
	cfg := Config{ASN: speakerASN, RouterID: netip.MustParseAddr("192.0.2.1"), ExportPrefixes: routeTestExports, RoutePrefixes: testRoutePrefixes}
	s, fr := startFakeSpeaker(t, cfg)
	ctx := testContext(t)
	a, b6 := route(podA, "node-a", "192.0.2.10", ""), route(podB6, "node-b", "2001:db8:b::10", "")
	if err := s.SetRoutes(ctx, []Route{a, b6}); err != nil {
		t.Fatal(err)
	}
	cfg.RouterID = netip.MustParseAddr("192.0.2.2")
	if err := s.Reconfigure(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if len(fr.started) != 2 {
		t.Fatalf("a new router ID started %d routers, want 2", len(fr.started))
	}
	want := map[netip.Prefix][]string{podA: {"1:192.0.2.10"}, podB6: {"1:2001:db8:b::10"}}
	if got := fr.last().announced(); !cmp.Equal(got, want, equateNetip) {
		t.Errorf("after a restart of GoBGP, announced %v, want %v", got, want)
	}
	fr.last().takeOps()
	cfg.RoutePrefixes = testRoutePrefixes[1:]
	if err := s.Reconfigure(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"deletePath 198.18.1.0/24#1", "setPolicy "}, fr.last().takeOps()); diff != "" {
		t.Errorf("shrinking the route prefixes: router changes (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]Route{b6}, s.Routes(), equateNetip); diff != "" {
		t.Errorf("Routes() after shrinking the route prefixes (-want +got):\n%s", diff)
	}
}

// TestRouteRackFiltering runs real GoBGP routers: a route goes to the
// routers of its node's rack and to those without a rack; with AllRouters
// to every router; the markers never leave the speaker.
func TestRouteRackFiltering(t *testing.T) {
	checkNoLeaks(t)
	ctx := testContext(t)
	ra := startRouter(t, "127.0.0.2", "127.0.0.1", routerOptions{})
	rb := startRouter(t, "127.0.0.3", "127.0.0.1", routerOptions{})
	spine := startRouter(t, "127.0.0.4", "127.0.0.1", routerOptions{})
	s := startSpeaker(t, Config{RoutePrefixes: testRoutePrefixes, ExportPrefixes: routeTestExports,
		Peers: []Peer{ra.peer("tor-a", "rack-a"), rb.peer("tor-b", "rack-b"), spine.peer("spine", "")}})
	waitEstablished(t, s, "tor-a", "tor-b", "spine")

	a := route(podA, "node-a", "192.0.2.10", "rack-a")
	b6 := route(podB6, "node-b", "2001:db8:b::10", "rack-b")
	flat := route(podB, "node-c", "192.0.2.30", "rack-a")
	flat.AllRouters = true
	if err := s.SetRoutes(ctx, []Route{a, b6, flat}); err != nil {
		t.Fatal(err)
	}
	// A VIP in the same rack keeps to its rack.
	if err := s.Announce(ctx, Advertisement{Prefix: vip4, NextHops: []NextHop{nh("node-a", "192.0.2.10", "rack-a")}}); err != nil {
		t.Fatal(err)
	}
	hop := func(r Route) []netip.Addr { return []netip.Addr{r.NextHop} }
	ra.waitNextHops("rack-a router", map[netip.Prefix][]netip.Addr{podA: hop(a), podB: hop(flat), vip4: hop(a)})
	rb.waitNextHops("rack-b router", map[netip.Prefix][]netip.Addr{podB6: hop(b6), podB: hop(flat)})
	spine.waitNextHops("router without rack", map[netip.Prefix][]netip.Addr{podA: hop(a), podB6: hop(b6), podB: hop(flat), vip4: hop(a)})
	for _, r := range []*testRouter{ra, rb, spine} {
		for _, p := range r.paths() {
			if len(p.Large) != 0 {
				t.Errorf("router %s: %v carries large communities %v: the markers must be stripped", r.addr, p, p.Large)
			}
		}
	}

	// The flat route's node moves: one replacement, no withdrawal.
	flat.NextHop = netip.MustParseAddr("192.0.2.31")
	if err := s.SetRoutes(ctx, []Route{a, b6, flat}); err != nil {
		t.Fatal(err)
	}
	rb.waitNextHops("rack-b router after the next hop changed", map[netip.Prefix][]netip.Addr{podB6: hop(b6), podB: hop(flat)})
	_, withdrawn, established := rb.counts()
	if n := withdrawn[pathKey{podB, 1}]; n != 0 {
		t.Errorf("the route with a new next hop was withdrawn %d times, want a replacement only", n)
	}
	if established != 1 {
		t.Errorf("the rack-b session was established %d times, want once", established)
	}
	if err := s.SetRoutes(ctx, nil); err != nil {
		t.Fatal(err)
	}
	spine.waitNextHops("routes gone, the VIP stays", map[netip.Prefix][]netip.Addr{vip4: hop(a)})
}
