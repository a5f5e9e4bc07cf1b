package bgp

import (
	"fmt"
	"net/netip"
	"strconv"
	"testing"
	"time"
)

// settle waits until the router's path counters stop changing for quiet.
func (r *testRouter) settle(quiet time.Duration) {
	r.t.Helper()
	last := ""
	stableSince := time.Now()
	eventually(r.t, "router quiet", func() error {
		a, w, e := r.counts()
		now := fmt.Sprint(a, w, e)
		if now != last {
			last, stableSince = now, time.Now()
		}
		if time.Since(stableSince) < quiet {
			return fmt.Errorf("paths still arriving")
		}
		return nil
	})
}

func sum(m map[pathKey]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// TestNoReannouncement: announcing the same desired state again, alone or
// in bulk, sends nothing; a change sends only the difference.
func TestNoReannouncement(t *testing.T) {
	checkNoLeaks(t)
	ctx := testContext(t)
	r := startRouter(t, "127.0.0.2", "127.0.0.1", routerOptions{})
	s := startSpeaker(t, Config{Peers: []Peer{r.peer("tor", "")}})
	waitEstablished(t, s, "tor")

	var advs []Advertisement
	want := map[netip.Prefix][]netip.Addr{}
	for i := 0; i < 5; i++ {
		p := netip.PrefixFrom(netip.MustParseAddr("203.0.113."+strconv.Itoa(20+i)), 32)
		h := hops("198.51.100.10", "", 1, 3)
		advs = append(advs, Advertisement{Prefix: p, NextHops: h, Communities: []Community{65000<<16 | 1}})
		want[p] = addrs(h)
	}
	if err := s.SetAll(ctx, advs); err != nil {
		t.Fatal(err)
	}
	r.waitNextHops("initial state", want)
	r.settle(500 * time.Millisecond)
	a0, w0, e0 := r.counts()
	if sum(a0) != 15 || sum(w0) != 0 || e0 != 1 {
		t.Fatalf("after the first SetAll the router got %d announcements, %d withdrawals, %d sessions; want 15, 0, 1", sum(a0), sum(w0), e0)
	}

	// The same state again, in every form, with the lists in another order.
	for i := range advs {
		h := advs[i].NextHops
		advs[i].NextHops = []NextHop{h[2], h[0], h[1]}
		if err := s.Announce(ctx, advs[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetAll(ctx, advs); err != nil {
		t.Fatal(err)
	}
	r.settle(time.Second)
	a1, w1, _ := r.counts()
	if sum(a1) != sum(a0) || sum(w1) != 0 {
		t.Errorf("re-announcing the same state sent %d announcements and %d withdrawals, want none", sum(a1)-sum(a0), sum(w1))
	}

	// One more node for one VIP: one announcement. One VIP fewer in bulk:
	// three withdrawals.
	advs[0].NextHops = hops("198.51.100.10", "", 1, 4)
	want[advs[0].Prefix] = addrs(advs[0].NextHops)
	gone := advs[4].Prefix
	delete(want, gone)
	if err := s.SetAll(ctx, advs[:4]); err != nil {
		t.Fatal(err)
	}
	r.waitNextHops("one node added, one VIP gone", want)
	r.settle(500 * time.Millisecond)
	a2, w2, e2 := r.counts()
	if got := sum(a2) - sum(a1); got != 1 {
		t.Errorf("adding a node sent %d announcements, want 1", got)
	}
	if sum(w2) != 3 {
		t.Errorf("removing a VIP sent %d withdrawals, want 3", sum(w2))
	}
	for k := range w2 {
		if k.prefix != gone {
			t.Errorf("withdrawn %v, only %s should be", k, gone)
		}
	}
	if e2 != 1 {
		t.Errorf("the session was established %d times, want 1 (path changes must not reset it)", e2)
	}
}

// TestRackFiltering: a router with a rack gets only paths via nodes of its
// rack, a router without a rack gets all; a node that moves rack moves
// between routers.
func TestRackFiltering(t *testing.T) {
	checkNoLeaks(t)
	ctx := testContext(t)
	ra := startRouter(t, "127.0.0.2", "127.0.0.1", routerOptions{})
	rb := startRouter(t, "127.0.0.3", "127.0.0.1", routerOptions{})
	rall := startRouter(t, "127.0.0.4", "127.0.0.1", routerOptions{})
	s := startSpeaker(t, Config{Peers: []Peer{ra.peer("tor-a", "rack-a"), rb.peer("tor-b", "rack-b"), rall.peer("spine", "")}})
	waitEstablished(t, s, "tor-a", "tor-b", "spine")

	a := hops("198.51.100.10", "rack-a", 1, 2)
	b := hops("198.51.100.20", "rack-b", 1, 2)
	for i := range b {
		b[i].Node = "b-" + b[i].Node
	}
	none := []NextHop{{Node: "loner", Addr: netip.MustParseAddr("198.51.100.99")}}
	all := append(append(append([]NextHop{}, a...), b...), none...)
	if err := s.Announce(ctx, Advertisement{Prefix: vip4, NextHops: all}); err != nil {
		t.Fatal(err)
	}
	ra.waitNextHops("rack-a router", map[netip.Prefix][]netip.Addr{vip4: addrs(a)})
	rb.waitNextHops("rack-b router", map[netip.Prefix][]netip.Addr{vip4: addrs(b)})
	rall.waitNextHops("router without rack", map[netip.Prefix][]netip.Addr{vip4: addrs(all)})
	for _, p := range append(ra.paths(), rall.paths()...) {
		if len(p.Large) != 0 {
			t.Errorf("%v carries large communities %v: the rack markers must be stripped", p, p.Large)
		}
	}

	// node-2 moves from rack-a to rack-b.
	moved := all[1]
	moved.Rack = "rack-b"
	all[1] = moved
	if err := s.Announce(ctx, Advertisement{Prefix: vip4, NextHops: all}); err != nil {
		t.Fatal(err)
	}
	ra.waitNextHops("rack-a router after the move", map[netip.Prefix][]netip.Addr{vip4: addrs(a[:1])})
	rb.waitNextHops("rack-b router after the move", map[netip.Prefix][]netip.Addr{vip4: append(addrs(b), moved.Addr)})
	rall.waitNextHops("router without rack after the move", map[netip.Prefix][]netip.Addr{vip4: addrs(all)})

	st := map[string]PeerStatus{}
	for _, p := range s.Peers() {
		st[p.Name] = p
	}
	for name, want := range map[string]int{"tor-a": 1, "tor-b": 3, "spine": 5} {
		f := st[name].Families[0]
		if !f.Negotiated || !f.AddPath || f.Paths != want || st[name].SinglePath {
			t.Errorf("Peers()[%s] IPv4 = %+v (single path %v), want negotiated with ADD-PATH and %d paths", name, f, st[name].SinglePath, want)
		}
	}
}

// TestSubsetting: with 20 nodes and maxPathsPerPrefix 16, each VIP goes
// out via 16 nodes chosen by rendezvous hashing; removing one node changes
// only the paths via that node, plus at most one replacement per VIP, and
// adding it back restores the previous choice.
//
// It is long because its steps build on one router's state (which paths
// it has): a split would repeat the set-up per step.
func TestSubsetting(t *testing.T) {
	checkNoLeaks(t)
	ctx := testContext(t)
	r := startRouter(t, "127.0.0.2", "127.0.0.1", routerOptions{})
	s := startSpeaker(t, Config{MaxPathsPerPrefix: 16, Peers: []Peer{r.peer("tor", "")}})
	waitEstablished(t, s, "tor")

	all := hops("198.51.100.100", "", 1, 20)
	const nVIPs = 40
	var advs []Advertisement
	for i := 0; i < nVIPs; i++ {
		p := netip.PrefixFrom(netip.MustParseAddr("203.0.113."+strconv.Itoa(100+i)), 32)
		advs = append(advs, Advertisement{Prefix: p, NextHops: all})
	}
	if err := s.SetAll(ctx, advs); err != nil {
		t.Fatal(err)
	}
	eventually(t, "16 paths per VIP", func() error {
		nh := r.nextHops()
		if len(nh) != nVIPs {
			return fmt.Errorf("%d VIPs", len(nh))
		}
		for p, l := range nh {
			if len(l) != 16 {
				return fmt.Errorf("%s has %d paths", p, len(l))
			}
		}
		return nil
	})
	r.settle(500 * time.Millisecond)
	before := r.nextHops()
	// Spread: every node carries some VIPs (16 of 20 nodes per VIP).
	use := map[netip.Addr]int{}
	for _, l := range before {
		for _, a := range l {
			use[a]++
		}
	}
	if len(use) != 20 {
		t.Errorf("%d of 20 nodes are used, want all", len(use))
	}
	// The choice is the rendezvous one.
	for _, adv := range advs[:3] {
		want := map[netip.Addr]bool{}
		for _, h := range rank(adv.Prefix.Addr(), adv.NextHops)[:16] {
			want[h.Addr] = true
		}
		for _, a := range before[adv.Prefix] {
			if !want[a] {
				t.Errorf("%s goes via %s, which is not among its 16 highest-weight nodes", adv.Prefix, a)
			}
		}
	}

	a0, w0, _ := r.counts()
	gone := all[6] // node-7
	rest := append(append([]NextHop{}, all[:6]...), all[7:]...)
	for i := range advs {
		advs[i].NextHops = rest
	}
	if err := s.SetAll(ctx, advs); err != nil {
		t.Fatal(err)
	}
	eventually(t, "node-7 gone", func() error {
		for p, l := range r.nextHops() {
			for _, a := range l {
				if a == gone.Addr {
					return fmt.Errorf("%s still via %s", p, a)
				}
			}
			if len(l) != 16 {
				return fmt.Errorf("%s has %d paths", p, len(l))
			}
		}
		return nil
	})
	r.settle(500 * time.Millisecond)
	after := r.nextHops()
	a1, w1, _ := r.counts()
	for _, adv := range advs {
		old, cur := set(before[adv.Prefix]), set(after[adv.Prefix])
		var added, removed []netip.Addr
		for a := range cur {
			if !old[a] {
				added = append(added, a)
			}
		}
		for a := range old {
			if !cur[a] {
				removed = append(removed, a)
			}
		}
		switch {
		case old[gone.Addr] && (len(removed) != 1 || removed[0] != gone.Addr || len(added) != 1):
			t.Errorf("%s: removed %v, added %v; want only %s replaced by one node", adv.Prefix, removed, added, gone.Addr)
		case !old[gone.Addr] && (len(removed) != 0 || len(added) != 0):
			t.Errorf("%s did not use %s but changed: removed %v, added %v", adv.Prefix, gone.Addr, removed, added)
		}
	}
	// On the wire: one withdrawal and one announcement per VIP that used
	// node-7, nothing else.
	users := 0
	for _, l := range before {
		if set(l)[gone.Addr] {
			users++
		}
	}
	if got := sum(w1) - sum(w0); got != users {
		t.Errorf("%d withdrawals, want %d (one per VIP that used %s)", got, users, gone.Addr)
	}
	if got := sum(a1) - sum(a0); got != users {
		t.Errorf("%d announcements, want %d (one replacement per VIP that used %s)", got, users, gone.Addr)
	}

	// node-7 comes back: the previous choice returns.
	for i := range advs {
		advs[i].NextHops = all
	}
	if err := s.SetAll(ctx, advs); err != nil {
		t.Fatal(err)
	}
	r.waitNextHops("node-7 back", before)
}

func set(l []netip.Addr) map[netip.Addr]bool {
	m := map[netip.Addr]bool{}
	for _, a := range l {
		m[a] = true
	}
	return m
}

// TestRouterWithoutAddPath gets exactly one path per VIP, via the node of
// highest rendezvous weight, and is reported.
func TestRouterWithoutAddPath(t *testing.T) {
	checkNoLeaks(t)
	ctx := testContext(t)
	multi := startRouter(t, "127.0.0.2", "127.0.0.1", routerOptions{})
	single := startRouter(t, "127.0.0.3", "127.0.0.1", routerOptions{noAddPath: true})
	s := startSpeaker(t, Config{Peers: []Peer{multi.peer("multi", ""), single.peer("single", "")}})
	waitEstablished(t, s, "multi", "single")

	h := hops("198.51.100.10", "", 1, 5)
	h6 := hops("2001:db8:ff::10", "", 1, 5)
	if err := s.SetAll(ctx, []Advertisement{{Prefix: vip4, NextHops: h}, {Prefix: vip6, NextHops: h6}}); err != nil {
		t.Fatal(err)
	}
	top4 := rank(vip4.Addr(), h)[0].Addr
	top6 := rank(vip6.Addr(), h6)[0].Addr
	multi.waitNextHops("ADD-PATH router", map[netip.Prefix][]netip.Addr{vip4: addrs(h), vip6: addrs(h6)})
	single.waitNextHops("router without ADD-PATH", map[netip.Prefix][]netip.Addr{vip4: {top4}, vip6: {top6}})
	single.settle(500 * time.Millisecond)
	if got := single.nextHops(); len(got[vip4]) != 1 || len(got[vip6]) != 1 {
		t.Errorf("router without ADD-PATH has %v, want one path per VIP", got)
	}

	for _, p := range s.Peers() {
		want := p.Name == "single"
		if p.SinglePath != want {
			t.Errorf("Peers()[%s].SinglePath = %v, want %v", p.Name, p.SinglePath, want)
		}
		for _, f := range p.Families {
			wantPaths := 5
			if want {
				wantPaths = 1
			}
			if !f.Negotiated || f.AddPath == want || f.Paths != wantPaths {
				t.Errorf("Peers()[%s] %s = %+v, want negotiated, ADD-PATH %v, %d paths", p.Name, f.Family, f, !want, wantPaths)
			}
		}
	}

	// The single path moves only when its node goes.
	var rest []NextHop
	for _, x := range h {
		if x.Addr != top4 {
			rest = append(rest, x)
		}
	}
	if err := s.Announce(ctx, Advertisement{Prefix: vip4, NextHops: rest}); err != nil {
		t.Fatal(err)
	}
	single.waitNextHops("best node gone", map[netip.Prefix][]netip.Addr{vip4: {rank(vip4.Addr(), rest)[0].Addr}, vip6: {top6}})
}

// TestIPv6Session carries IPv4 and IPv6 VIPs over a session between IPv6
// addresses.
func TestIPv6Session(t *testing.T) {
	checkNoLeaks(t)
	ctx := testContext(t)
	r := startRouter(t, "::1", "::1", routerOptions{})
	s := startSpeaker(t, Config{Peers: []Peer{r.peer("tor6", "")}})
	waitEstablished(t, s, "tor6")
	h4 := hops("198.51.100.10", "", 1, 2)
	h6 := hops("2001:db8:ff::10", "", 1, 2)
	if err := s.SetAll(ctx, []Advertisement{{Prefix: vip4, NextHops: h4}, {Prefix: vip6, NextHops: h6}}); err != nil {
		t.Fatal(err)
	}
	r.waitNextHops("both families over IPv6", map[netip.Prefix][]netip.Addr{vip4: addrs(h4), vip6: addrs(h6)})
}

// TestRackedRouterWithoutAddPath: GoBGP picks one best path per VIP for all
// routers without ADD-PATH; a rack's router without ADD-PATH gets a VIP
// only when that path is via its rack, and Peers counts the VIPs it
// misses.
func TestRackedRouterWithoutAddPath(t *testing.T) {
	checkNoLeaks(t)
	ctx := testContext(t)
	ra := startRouter(t, "127.0.0.2", "127.0.0.1", routerOptions{noAddPath: true})
	rb := startRouter(t, "127.0.0.3", "127.0.0.1", routerOptions{})
	s := startSpeaker(t, Config{Peers: []Peer{ra.peer("a", "rack-a"), rb.peer("b", "rack-b")}})
	waitEstablished(t, s, "a", "b")
	h := append(hops("198.51.100.10", "rack-a", 1, 2), hops("198.51.100.20", "rack-b", 3, 4)...)
	var advs []Advertisement
	wantA := map[netip.Prefix][]netip.Addr{}
	missing := 0
	for i := 0; i < 20; i++ {
		p := netip.PrefixFrom(netip.MustParseAddr("203.0.113."+strconv.Itoa(40+i)), 32)
		advs = append(advs, Advertisement{Prefix: p, NextHops: h})
		if top := rank(p.Addr(), h)[0]; top.Rack == "rack-a" {
			wantA[p] = []netip.Addr{top.Addr}
		} else {
			missing++
		}
	}
	if missing == 0 || missing == 20 {
		t.Fatalf("test data: %d of 20 VIPs have their best node in rack-b; want some, not all", missing)
	}
	if err := s.SetAll(ctx, advs); err != nil {
		t.Fatal(err)
	}
	ra.waitNextHops("rack-a router without ADD-PATH", wantA)
	var st PeerStatus
	for _, p := range s.Peers() {
		if p.Name == "a" {
			st = p
		}
	}
	f := st.Families[0]
	if !st.SinglePath || f.AddPath || f.Paths != len(wantA) || f.MissingVIPs != missing {
		t.Errorf("Peers()[a] = %+v, want single path, %d paths, %d missing VIPs", st, len(wantA), missing)
	}
}
