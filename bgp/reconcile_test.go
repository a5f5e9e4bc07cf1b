package bgp

import (
	"errors"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// opCounts counts the fake router's changes by kind.
func opCounts(ops []string) map[string]int {
	out := map[string]int{}
	for _, op := range ops {
		kind, _, _ := strings.Cut(op, " ")
		out[kind]++
	}
	return out
}

// pathIDs are the identifiers of the announced paths of prefix.
func pathIDs(f *fakeRouter, prefix netip.Prefix) []uint32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ids []uint32
	for k := range f.paths {
		if k.prefix == prefix {
			ids = append(ids, k.id)
		}
	}
	slices.Sort(ids)
	return ids
}

// hopsOf is "next hop[:m<marker index>]" of every announced path of prefix.
func hopsOf(f *fakeRouter, prefix netip.Prefix) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for k, p := range f.paths {
		if k.prefix != prefix {
			continue
		}
		s := p.NextHop.String()
		if p.hasMarker() {
			s += ":m" + strconv.FormatUint(uint64(p.Marker.Local2), 10)
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

func nh(node, addr, rack string) NextHop {
	return NextHop{Node: node, Addr: netip.MustParseAddr(addr), Rack: rack}
}

// TestReconcilePaths: Announce against the fake router sends exactly the
// difference from what is announced, keeps identifiers across
// replacements, and refuses what it must refuse without changing anything.
func TestReconcilePaths(t *testing.T) {
	ctx := testContext(t)
	s, fr := startFakeSpeaker(t, Config{Peers: []Peer{fakePeer("all", "192.0.2.101", ""), fakePeer("r1", "192.0.2.102", "r1")}})
	r := fr.last()
	r.takeOps()
	n1, n2, n3 := nh("n1", "198.51.100.1", ""), nh("n2", "198.51.100.2", ""), nh("n3", "198.51.100.3", "r1")
	comms := []Community{65000<<16 | 1}
	steps := []struct {
		name     string
		adv      Advertisement
		failAdd  bool
		wantErr  []error
		wantOps  map[string]int
		wantHops []string
		sameIDs  bool
	}{
		{name: "new VIP", adv: Advertisement{Prefix: vip4, NextHops: []NextHop{n1, n2}},
			wantOps: map[string]int{"addPath": 2}, wantHops: []string{"198.51.100.1", "198.51.100.2"}},
		{name: "the same again", adv: Advertisement{Prefix: vip4, NextHops: []NextHop{n1, n2}},
			wantOps: map[string]int{}, wantHops: []string{"198.51.100.1", "198.51.100.2"}, sameIDs: true},
		{name: "the same, reordered", adv: Advertisement{Prefix: vip4, NextHops: []NextHop{n2, n1}},
			wantOps: map[string]int{}, wantHops: []string{"198.51.100.1", "198.51.100.2"}, sameIDs: true},
		{name: "communities change: replaced in place", adv: Advertisement{Prefix: vip4, NextHops: []NextHop{n1, n2}, Communities: comms},
			wantOps: map[string]int{"addPath": 2}, wantHops: []string{"198.51.100.1", "198.51.100.2"}, sameIDs: true},
		{name: "a node of rack r1 joins", adv: Advertisement{Prefix: vip4, NextHops: []NextHop{n1, n2, n3}, Communities: comms},
			wantOps: map[string]int{"addPath": 1}, wantHops: []string{"198.51.100.1", "198.51.100.2", "198.51.100.3:m1"}},
		{name: "it moves to rack r2: new path, then the old one goes", adv: Advertisement{Prefix: vip4, NextHops: []NextHop{n1, n2, nh("n3", "198.51.100.3", "r2")}, Communities: comms},
			wantOps: map[string]int{"addPath": 1, "deletePath": 1}, wantHops: []string{"198.51.100.1", "198.51.100.2", "198.51.100.3:m2"}},
		{name: "a node renumbered: replaced in place", adv: Advertisement{Prefix: vip4, NextHops: []NextHop{n1, nh("n2", "198.51.100.22", ""), nh("n3", "198.51.100.3", "r2")}, Communities: comms},
			wantOps: map[string]int{"addPath": 1}, wantHops: []string{"198.51.100.1", "198.51.100.22", "198.51.100.3:m2"}, sameIDs: true},
		{name: "a later node with an earlier one's address is dropped", adv: Advertisement{Prefix: vip4, NextHops: []NextHop{n1, nh("n2", "198.51.100.22", ""), nh("n3", "198.51.100.3", "r2"), nh("rogue", "198.51.100.1", "")}, Communities: comms},
			wantOps: map[string]int{}, wantHops: []string{"198.51.100.1", "198.51.100.22", "198.51.100.3:m2"}, sameIDs: true},
		{name: "listed first, it wins the address", adv: Advertisement{Prefix: vip4, NextHops: []NextHop{nh("rogue", "198.51.100.1", ""), n1, nh("n2", "198.51.100.22", ""), nh("n3", "198.51.100.3", "r2")}, Communities: comms},
			wantOps: map[string]int{"addPath": 1, "deletePath": 1}, wantHops: []string{"198.51.100.1", "198.51.100.22", "198.51.100.3:m2"}},
		{name: "outside the export prefixes", adv: Advertisement{Prefix: netip.MustParsePrefix("192.0.2.10/32"), NextHops: []NextHop{n1}},
			wantErr: []error{ErrInvalidAdvertisement}, wantOps: map[string]int{}, wantHops: []string{"198.51.100.1", "198.51.100.22", "198.51.100.3:m2"}, sameIDs: true},
		{name: "communities too large for an UPDATE", adv: Advertisement{Prefix: vip4, NextHops: []NextHop{n1}, Communities: manyCommunities(1100)},
			wantErr: []error{ErrInvalidAdvertisement, ErrInvalidAttributes}, wantOps: map[string]int{}, wantHops: []string{"198.51.100.1", "198.51.100.22", "198.51.100.3:m2"}, sameIDs: true},
		{name: "a rack marker", adv: Advertisement{Prefix: vip4, NextHops: []NextHop{n1}, LargeCommunities: []LargeCommunity{marker(speakerASN, 1)}},
			wantErr: []error{ErrInvalidAdvertisement, ErrInvalidAttributes}, wantOps: map[string]int{}, wantHops: []string{"198.51.100.1", "198.51.100.22", "198.51.100.3:m2"}, sameIDs: true},
		{name: "the router fails", adv: Advertisement{Prefix: vip4, NextHops: []NextHop{n1, nh("n2", "198.51.100.22", ""), nh("n3", "198.51.100.3", "r2"), nh("n4", "198.51.100.4", "")}, Communities: comms},
			failAdd: true, wantErr: []error{errRouter}, wantOps: map[string]int{}, wantHops: []string{"198.51.100.1", "198.51.100.22", "198.51.100.3:m2"}, sameIDs: true},
		// n1 takes its address back from rogue, and n4 joins.
		{name: "the same once it works", adv: Advertisement{Prefix: vip4, NextHops: []NextHop{n1, nh("n2", "198.51.100.22", ""), nh("n3", "198.51.100.3", "r2"), nh("n4", "198.51.100.4", "")}, Communities: comms},
			wantOps: map[string]int{"addPath": 2, "deletePath": 1}, wantHops: []string{"198.51.100.1", "198.51.100.22", "198.51.100.3:m2", "198.51.100.4"}},
	}
	prevIDs := pathIDs(r, vip4)
	for _, st := range steps {
		if st.failAdd {
			r.failOn("addPath", errRouter)
		}
		err := s.Announce(ctx, st.adv)
		r.failOn("addPath", nil)
		for _, want := range st.wantErr {
			if !errors.Is(err, want) {
				t.Errorf("%s: Announce() = %v, want %v", st.name, err, want)
			}
		}
		if len(st.wantErr) == 0 && err != nil {
			t.Errorf("%s: Announce() = %v", st.name, err)
		}
		if diff := cmp.Diff(st.wantOps, opCounts(r.takeOps())); diff != "" {
			t.Errorf("%s: router changes (-want +got):\n%s", st.name, diff)
		}
		if diff := cmp.Diff(st.wantHops, hopsOf(r, vip4)); diff != "" {
			t.Errorf("%s: next hops (-want +got):\n%s", st.name, diff)
		}
		ids := pathIDs(r, vip4)
		if st.sameIDs && !slices.Equal(ids, prevIDs) {
			t.Errorf("%s: identifiers %v, want %v as before", st.name, ids, prevIDs)
		}
		prevIDs = ids
	}
	if err := s.Withdraw(ctx, vip4); err != nil {
		t.Fatalf("Withdraw() = %v", err)
	}
	if got := opCounts(r.takeOps()); got["deletePath"] != 4 || len(r.announced()) != 0 {
		t.Errorf("Withdraw: changes %v, paths %v; want 4 withdrawals, nothing left", got, r.announced())
	}
}

// TestSetAllIsolatesBadVIPs: one VIP that cannot be announced is reported
// and leaves the others, and its own previous state, alone.
func TestSetAllIsolatesBadVIPs(t *testing.T) {
	ctx := testContext(t)
	s, fr := startFakeSpeaker(t, Config{Peers: []Peer{fakePeer("all", "192.0.2.101", "")}})
	r := fr.last()
	other := netip.MustParsePrefix("203.0.113.11/32")
	h := []NextHop{nh("n1", "198.51.100.1", "")}
	var tooManyLarge []LargeCommunity
	for i := range MaxAttributeBytes/12 + 1 {
		tooManyLarge = append(tooManyLarge, LargeCommunity{65000, 1, uint32(i)})
	}
	if err := s.SetAll(ctx, []Advertisement{{Prefix: vip4, NextHops: h}, {Prefix: other, NextHops: h}}); err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string]Advertisement{
		"IPv4 communities": {Prefix: vip4, NextHops: h, Communities: manyCommunities(1100)},
		"IPv6 communities": {Prefix: vip6, NextHops: []NextHop{nh("n1", "2001:db8:ff::1", "")}, Communities: manyCommunities(1100)},
		"large":            {Prefix: vip4, NextHops: h, LargeCommunities: tooManyLarge},
	} {
		advs := []Advertisement{bad, {Prefix: other, NextHops: append(h, nh("n2", "198.51.100.2", ""))}}
		if bad.Prefix != vip4 {
			advs = append(advs, Advertisement{Prefix: vip4, NextHops: h})
		}
		err := s.SetAll(ctx, advs)
		if !errors.Is(err, ErrInvalidAttributes) {
			t.Errorf("%s: SetAll() = %v, want ErrInvalidAttributes", name, err)
		}
		want := map[netip.Prefix][]string{vip4: {"198.51.100.1"}, other: {"198.51.100.1", "198.51.100.2"}}
		got := map[netip.Prefix][]string{vip4: hopsOf(r, vip4), other: hopsOf(r, other)}
		if diff := cmp.Diff(want, got, equateNetip); diff != "" || len(r.announced()) != 2 {
			t.Errorf("%s: paths (-want +got):\n%s\nall: %v", name, diff, r.announced())
		}
		if err := s.SetAll(ctx, []Advertisement{{Prefix: vip4, NextHops: h}, {Prefix: other, NextHops: h}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Withdraw(ctx, vip4); err != nil {
		t.Fatal(err)
	}
	if err := s.SetAll(ctx, []Advertisement{{Prefix: vip4, NextHops: h, Communities: manyCommunities(1100)}}); !errors.Is(err, ErrInvalidAttributes) {
		t.Errorf("SetAll(a new VIP too large) = %v, want ErrInvalidAttributes", err)
	}
	if got := hopsOf(r, vip4); len(got) != 0 {
		t.Errorf("a VIP refused as too large has paths %v", got)
	}
}

// TestSubsettingFake: a VIP gets at most maxPathsPerPrefix paths per view.
func TestSubsettingFake(t *testing.T) {
	ctx := testContext(t)
	s, fr := startFakeSpeaker(t, Config{MaxPathsPerPrefix: 4, Peers: []Peer{fakePeer("all", "192.0.2.101", ""), fakePeer("r1", "192.0.2.102", "r1")}})
	h := append(hops("198.51.100.10", "", 1, 10), hops("198.51.100.100", "r1", 1, 10)...)
	for i := range h {
		h[i].Node = h[i].Rack + h[i].Node
	}
	if err := s.Announce(ctx, Advertisement{Prefix: vip4, NextHops: h}); err != nil {
		t.Fatal(err)
	}
	// Every view takes its first 4 in rank order: the rackless router's
	// the first 4 overall, r1's the first 4 of r1.
	want := map[string]bool{}
	var inR1 int
	for i, hop := range rank(vip4.Addr(), h) {
		if i < 4 {
			want[hop.Addr.String()] = true
		}
		if hop.Rack == "r1" && inR1 < 4 {
			want[hop.Addr.String()] = true
			inR1++
		}
	}
	got := map[string]bool{}
	for _, hop := range hopsOf(fr.last(), vip4) {
		got[strings.TrimSuffix(hop, ":m1")] = true
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("next hops (-want +got):\n%s", diff)
	}
}

// TestReconcilePeers: Reconfigure touches only the routers that changed,
// sets the policy before connecting them, and changes of the export
// prefixes only change the policy and withdraw what they no longer cover.
func TestReconcilePeers(t *testing.T) {
	ctx := testContext(t)
	a, b := fakePeer("a", "192.0.2.101", ""), fakePeer("b", "192.0.2.102", "r1")
	cfg := Config{ASN: speakerASN, RouterID: netip.MustParseAddr("192.0.2.1"), ExportPrefixes: testExportPrefixes, Peers: []Peer{a, b}}
	s, fr := startFakeSpeaker(t, cfg)
	r := fr.last()
	if diff := cmp.Diff([]string{"addPeer a", "addPeer b", "setPolicy "}, r.takeOps()); diff != "" {
		t.Errorf("start (-want +got):\n%s", diff)
	}
	if err := s.Announce(ctx, Advertisement{Prefix: vip4, NextHops: []NextHop{nh("n1", "198.51.100.1", "")}}); err != nil {
		t.Fatal(err)
	}
	r.takeOps()
	c := fakePeer("c", "192.0.2.103", "r2")
	bPort := b
	bPort.Port = 1179
	narrow := []netip.Prefix{netip.MustParsePrefix("203.0.113.128/25")}
	steps := []struct {
		name   string
		change func(*Config)
		want   []string
	}{
		{"add c", func(c2 *Config) { c2.Peers = []Peer{a, b, c} }, []string{"addPeer c", "setPolicy "}},
		{"nothing changes", func(*Config) {}, []string{"setPolicy "}},
		{"b's port changes", func(c2 *Config) { c2.Peers = []Peer{a, bPort, c} }, []string{"addPeer b", "deletePeer b", "setPolicy "}},
		{"a goes: its paths too", func(c2 *Config) { c2.Peers = []Peer{bPort, c} }, []string{"deletePath 203.0.113.10/32#1", "deletePeer a", "setPolicy "}},
		{"a comes back", func(c2 *Config) { c2.Peers = []Peer{a, bPort, c} }, []string{"addPath 203.0.113.10/32#1", "addPeer a", "setPolicy "}},
		{"export prefixes narrow", func(c2 *Config) { c2.ExportPrefixes = narrow }, []string{"deletePath 203.0.113.10/32#1", "setPolicy "}},
		{"hold time: every session", func(c2 *Config) { c2.HoldTime = 30e9 }, []string{"addPeer a", "addPeer b", "addPeer c", "deletePeer a", "deletePeer b", "deletePeer c", "setPolicy "}},
	}
	for _, st := range steps {
		st.change(&cfg)
		if err := s.Reconfigure(ctx, cfg); err != nil {
			t.Fatalf("%s: Reconfigure() = %v", st.name, err)
		}
		if diff := cmp.Diff(st.want, r.takeOps()); diff != "" {
			t.Errorf("%s: router changes (-want +got):\n%s", st.name, diff)
		}
	}
	r.mu.Lock()
	p := r.policy
	r.mu.Unlock()
	want := routingPolicy{ASN: speakerASN, Rackless: []netip.Addr{a.Address}, ExportPrefixes: narrow, Racks: []rackRouters{
		{Marker: marker(speakerASN, 1), Routers: []netip.Addr{b.Address}},
		{Marker: marker(speakerASN, 2), Routers: []netip.Addr{c.Address}},
	}}
	if diff := cmp.Diff(want, p, equateNetip); diff != "" {
		t.Errorf("policy (-want +got):\n%s", diff)
	}
	if err := s.Announce(ctx, Advertisement{Prefix: vip4, NextHops: []NextHop{nh("n1", "198.51.100.1", "")}}); !errors.Is(err, ErrInvalidAdvertisement) {
		t.Errorf("Announce(outside the narrowed prefixes) = %v, want ErrInvalidAdvertisement", err)
	}
}

// TestRestartDoesNotBlockPeers: while a Reconfigure restarts the router,
// Peers answers (states unknown); afterwards everything is announced to
// the new router and the old one is stopped.
func TestRestartDoesNotBlockPeers(t *testing.T) {
	ctx := testContext(t)
	cfg := Config{ASN: speakerASN, RouterID: netip.MustParseAddr("192.0.2.1"), ExportPrefixes: testExportPrefixes, Peers: []Peer{fakePeer("a", "192.0.2.101", "")}}
	s, fr := startFakeSpeaker(t, cfg)
	old := fr.last()
	if err := s.Announce(ctx, Advertisement{Prefix: vip4, NextHops: []NextHop{nh("n1", "198.51.100.1", "")}}); err != nil {
		t.Fatal(err)
	}
	block := make(chan struct{})
	fr.mu.Lock()
	fr.block = block
	fr.mu.Unlock()
	cfg.RouterID = netip.MustParseAddr("192.0.2.2")
	done := make(chan error, 1)
	go func() { done <- s.Reconfigure(ctx, cfg) }()
	// The old router is stopped before the new one starts.
	eventually(t, "old router stopped", func() error {
		old.mu.Lock()
		defer old.mu.Unlock()
		if !old.stopped {
			return errors.New("still running")
		}
		return nil
	})
	peers := make(chan []PeerStatus, 1)
	go func() { peers <- s.Peers() }()
	select {
	case ps := <-peers:
		if len(ps) != 0 {
			t.Errorf("Peers() during the restart = %+v, want none applied yet", ps)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Peers() blocked by the restart")
	}
	close(block)
	if err := <-done; err != nil {
		t.Fatalf("Reconfigure() = %v", err)
	}
	r := fr.last()
	if r == old || r.global.RouterID != cfg.RouterID {
		t.Fatalf("router after the restart has %v, want a new one with router ID %s", r.global, cfg.RouterID)
	}
	if diff := cmp.Diff(map[netip.Prefix][]string{vip4: {"1:198.51.100.1"}}, r.announced(), equateNetip); diff != "" {
		t.Errorf("paths after the restart (-want +got):\n%s", diff)
	}
}

// TestPeerStatusFromRouter: Peers reports the router's sessions, the
// capabilities and the prefix-limit counter.
func TestPeerStatusFromRouter(t *testing.T) {
	ctx := testContext(t)
	a := fakePeer("a", "192.0.2.101", "")
	s, fr := startFakeSpeaker(t, Config{Peers: []Peer{a}})
	if err := s.Announce(ctx, Advertisement{Prefix: vip4, NextHops: []NextHop{nh("n1", "198.51.100.1", ""), nh("n2", "198.51.100.2", "")}}); err != nil {
		t.Fatal(err)
	}
	r := fr.last()
	since := time.Unix(1700000000, 0)
	r.mu.Lock()
	r.states[a.Address] = peerState{Address: a.Address, State: StateEstablished, Since: since,
		Families: map[Family]bool{IPv4Unicast: true}, AddPath: map[Family]bool{IPv4Unicast: true}, PrefixLimitExceeded: 3}
	r.mu.Unlock()
	want := []PeerStatus{{Name: "a", Address: a.Address, ASN: routerASN, State: StateEstablished, Since: since,
		MaxPrefixes: DefaultMaxPrefixes, PrefixLimitExceeded: 3,
		Families: []FamilyStatus{{Family: IPv4Unicast, Negotiated: true, AddPath: true, Paths: 2}, {Family: IPv6Unicast}}}}
	if diff := cmp.Diff(want, s.Peers(), equateNetip); diff != "" {
		t.Errorf("Peers() (-want +got):\n%s", diff)
	}
}
