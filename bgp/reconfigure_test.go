package bgp

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	api "github.com/osrg/gobgp/v3/api"
)

func established(r *testRouter) int {
	_, _, e := r.counts()
	return e
}

// TestReconfigure: routers added, removed and changed at runtime take
// effect without touching the sessions of unchanged routers.
func TestReconfigure(t *testing.T) {
	checkNoLeaks(t)
	ctx := testContext(t)
	ra := startRouter(t, "127.0.0.2", "127.0.0.1", routerOptions{noUpdateWatch: true})
	rb := startRouter(t, "127.0.0.3", "127.0.0.1", routerOptions{noUpdateWatch: true})
	cfg := Config{ASN: speakerASN, RouterID: netip.MustParseAddr("192.0.2.1"), ExportPrefixes: testExportPrefixes, Peers: []Peer{ra.peer("a", "")}}
	s := startSpeaker(t, cfg)
	waitEstablished(t, s, "a")
	h := []NextHop{
		{Node: "n1", Addr: netip.MustParseAddr("198.51.100.11"), Rack: "rack-a"},
		{Node: "n2", Addr: netip.MustParseAddr("198.51.100.12"), Rack: "rack-b"},
		{Node: "n3", Addr: netip.MustParseAddr("198.51.100.13"), Rack: "rack-b"},
	}
	if err := s.Announce(ctx, Advertisement{Prefix: vip4, NextHops: h}); err != nil {
		t.Fatal(err)
	}
	ra.waitNextHops("a has all", map[netip.Prefix][]netip.Addr{vip4: addrs(h)})
	aPaths := ra.paths()
	time.Sleep(1100 * time.Millisecond) // path ages have a resolution of one second

	// Add b with rack-b: a is untouched.
	cfg.Peers = append(cfg.Peers, rb.peer("b", "rack-b"))
	if err := s.Reconfigure(ctx, cfg); err != nil {
		t.Fatalf("Reconfigure(add b) = %v", err)
	}
	waitEstablished(t, s, "a", "b")
	rb.waitNextHops("b has rack-b", map[netip.Prefix][]netip.Addr{vip4: addrs(h[1:])})

	// Move b to rack-a: b is reset and gets n1.
	cfg.Peers[1].Rack = "rack-a"
	if err := s.Reconfigure(ctx, cfg); err != nil {
		t.Fatalf("Reconfigure(b to rack-a) = %v", err)
	}
	rb.waitNextHops("b has rack-a", map[netip.Prefix][]netip.Addr{vip4: addrs(h[:1])})
	waitEstablished(t, s, "a", "b")
	if e := established(rb); e != 2 {
		t.Errorf("b was established %d times, want 2 (reset by its change)", e)
	}
	// a saw neither a reset nor a path sent again.
	if e := established(ra); e != 1 {
		t.Errorf("a was established %d times, want 1", e)
	}
	if diff := cmp.Diff(aPaths, ra.paths(), equateNetip); diff != "" {
		t.Errorf("a's paths changed (-before +after):\n%s", diff)
	}

	// Remove a.
	cfg.Peers = cfg.Peers[1:]
	if err := s.Reconfigure(ctx, cfg); err != nil {
		t.Fatalf("Reconfigure(remove a) = %v", err)
	}
	ra.waitNextHops("a lost the session", map[netip.Prefix][]netip.Addr{})
	if ps := s.Peers(); len(ps) != 1 || ps[0].Name != "b" {
		t.Errorf("Peers() = %+v, want only b", ps)
	}
	// Only rack-a has a router now: paths via rack-b are withdrawn from
	// the RIB, not just filtered.
	s.mu.Lock()
	n := len(s.vips[vip4].paths)
	s.mu.Unlock()
	if n != 1 {
		t.Errorf("the speaker keeps %d paths for %s, want 1", n, vip4)
	}

	// maxPathsPerPrefix is part of every session (ADD-PATH send-max):
	// b is reset.
	cfg.MaxPathsPerPrefix = 8
	if err := s.Reconfigure(ctx, cfg); err != nil {
		t.Fatalf("Reconfigure(maxPathsPerPrefix) = %v", err)
	}
	eventually(t, "b re-established", func() error {
		if e := established(rb); e != 3 {
			return fmt.Errorf("b established %d times", e)
		}
		return nil
	})
	rb.waitNextHops("b has rack-a again", map[netip.Prefix][]netip.Addr{vip4: addrs(h[:1])})
}

// TestRestartOnGlobalChange: a new router ID restarts GoBGP with an empty
// RIB, and everything desired is announced again. (No in-process router:
// GoBGP's StartBgp writes package globals that another GoBGP in the same
// process reads without synchronization; a CCM runs one GoBGP at a time.)
func TestRestartOnGlobalChange(t *testing.T) {
	checkNoLeaks(t)
	ctx := testContext(t)
	nowhere := Peer{Name: "nowhere", Address: netip.MustParseAddr("127.0.0.9"), ASN: routerASN, Port: uint16(freePort(t, "127.0.0.9"))}
	cfg := Config{ASN: speakerASN, RouterID: netip.MustParseAddr("192.0.2.1"), ExportPrefixes: testExportPrefixes, Peers: []Peer{nowhere}}
	s := startSpeaker(t, cfg)
	h := hops("198.51.100.10", "", 1, 3)
	if err := s.Announce(ctx, Advertisement{Prefix: vip4, NextHops: h}); err != nil {
		t.Fatal(err)
	}
	rib := func() map[uint32]netip.Addr {
		out := map[uint32]netip.Addr{}
		err := s.gobgp().ListPath(ctx, &api.ListPathRequest{TableType: api.TableType_GLOBAL, Family: familyIPv4}, func(d *api.Destination) {
			for _, p := range d.Paths {
				rp, err := decodePath(p)
				if err == nil {
					out[rp.ID] = rp.NextHop
				}
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	before := rib()
	if len(before) != 3 {
		t.Fatalf("RIB = %v, want 3 paths", before)
	}
	cfg.RouterID = netip.MustParseAddr("192.0.2.2")
	if err := s.Reconfigure(ctx, cfg); err != nil {
		t.Fatalf("Reconfigure(router ID) = %v", err)
	}
	g, err := s.gobgp().GetBgp(ctx, &api.GetBgpRequest{})
	if err != nil || g.Global.RouterId != "192.0.2.2" {
		t.Errorf("GetBgp() = %v, %v; want router ID 192.0.2.2", g, err)
	}
	if diff := cmp.Diff(before, rib(), equateNetip); diff != "" {
		t.Errorf("RIB after the restart (-before +after):\n%s", diff)
	}
	if ps := s.Peers(); len(ps) != 1 || ps[0].Name != "nowhere" {
		t.Errorf("Peers() = %+v, want nowhere", ps)
	}
	if err := s.Announce(ctx, Advertisement{Prefix: vip4, NextHops: h[:1]}); err != nil {
		t.Fatal(err)
	}
	if got := rib(); len(got) != 1 {
		t.Errorf("RIB after Announce = %v, want one path", got)
	}
}

// TestListenPort: no listening socket unless listenPort > 0.
func TestListenPort(t *testing.T) {
	checkNoLeaks(t)
	ctx := testContext(t)
	s := startSpeaker(t, Config{})
	g, err := s.gobgp().GetBgp(ctx, &api.GetBgpRequest{})
	if err != nil || g.Global.ListenPort != -1 {
		t.Errorf("GoBGP listen port = %v, %v; want -1", g, err)
	}
	port := freePort(t, "127.0.0.1")
	s2 := startSpeaker(t, Config{ListenPort: port})
	g, err = s2.gobgp().GetBgp(ctx, &api.GetBgpRequest{})
	if err != nil || g.Global.ListenPort != port {
		t.Errorf("GoBGP listen port = %v, %v; want %d", g, err, port)
	}
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		t.Errorf("dialing the listening speaker: %v", err)
	} else {
		c.Close()
	}
	s2.Stop()
	if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second); err == nil {
		c.Close()
		t.Errorf("the stopped speaker still listens on %d", port)
	}
}

// TestMD5: a session with the right TCP MD5 password comes up, one with a
// wrong password does not.
func TestMD5(t *testing.T) {
	checkNoLeaks(t)
	good := startRouter(t, "127.0.0.2", "127.0.0.1", routerOptions{password: "s3cret"})
	bad := startRouter(t, "127.0.0.3", "127.0.0.1", routerOptions{password: "s3cret"})
	pg := good.peer("good", "")
	pg.PasswordFile = writeFile(t, "s3cret\n")
	pb := bad.peer("bad", "")
	pb.PasswordFile = writeFile(t, "wrong")
	s := startSpeaker(t, Config{Peers: []Peer{pg, pb}})
	waitEstablished(t, s, "good")
	time.Sleep(3 * time.Second) // several connection attempts
	for _, p := range s.Peers() {
		if p.Name == "bad" && p.State == StateEstablished {
			t.Errorf("the session with the wrong password is %v", p.State)
		}
	}
	if e := established(bad); e != 0 {
		t.Errorf("the router with another password established %d sessions", e)
	}
}
