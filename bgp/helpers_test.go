// Go 1.24+ listeners use MPTCP, on which Linux refuses TCP_MD5SIG: the
// in-process routers could not protect their listening sockets.
//
//go:debug multipathtcp=0
package bgp

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/baremetal-ccm/baremetal-ccm/test/fabric"
	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/ktesting"
)

// Generous bounds: a busy 2-core machine must not make the tests flaky.
const (
	waitTimeout = 30 * time.Second
	pollEvery   = 50 * time.Millisecond
	speakerASN  = 64512
	routerASN   = 64513
)

// testContext returns a context whose logger writes to t (V(2): GoBGP's
// Info and our own).
func testContext(t testing.TB) context.Context {
	logger := ktesting.NewLogger(t, ktesting.NewConfig(ktesting.Verbosity(2)))
	return klog.NewContext(context.Background(), logger)
}

// checkNoLeaks fails the test when, after every cleanup, more goroutines
// run than before it, apart from exactly one parked server loop per GoBGP
// stopped meanwhile (see gobgpServer). Call it first in a test, so that its
// cleanup runs last.
func checkNoLeaks(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	parkedBefore := parkedServeLoops.Load()
	t.Cleanup(func() {
		var n int
		err := fabric.Eventually(context.Background(), 10*time.Second, 20*time.Millisecond, func() error {
			parked := int(parkedServeLoops.Load() - parkedBefore)
			if n = runtime.NumGoroutine(); n > before+parked {
				return fmt.Errorf("%d goroutines, %d before the test and %d parked GoBGP server loops", n, before, parked)
			}
			return nil
		})
		if err != nil {
			var buf bytes.Buffer
			_ = pprof.Lookup("goroutine").WriteTo(&buf, 1)
			t.Errorf("goroutines leaked: %v\n%s", err, buf.String())
		}
	})
}

func eventually(t testing.TB, what string, f func() error) {
	t.Helper()
	if err := fabric.Eventually(context.Background(), waitTimeout, pollEvery, f); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// freePort returns a TCP port that is free on addr right now.
func freePort(t testing.TB, addr string) int32 {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return int32(l.Addr().(*net.TCPAddr).Port)
}

// routerPath is a path as a router received it.
type routerPath struct {
	Prefix      netip.Prefix
	ID          uint32
	NextHop     netip.Addr
	Communities []Community
	Large       []LargeCommunity
	LocalPref   uint32 // 0: absent
	MED         int64  // -1: absent
	Withdraw    bool
	Age         time.Time
}

func (p routerPath) String() string {
	return fmt.Sprintf("%s id=%d nh=%s", p.Prefix, p.ID, p.NextHop)
}

func decodePath(p *api.Path) (routerPath, error) {
	rp := routerPath{ID: p.Identifier, MED: -1, Withdraw: p.IsWithdraw}
	if p.Age != nil {
		rp.Age = p.Age.AsTime()
	}
	m, err := p.Nlri.UnmarshalNew()
	if err != nil {
		return rp, err
	}
	nlri, ok := m.(*api.IPAddressPrefix)
	if !ok {
		return rp, fmt.Errorf("NLRI %T", m)
	}
	a, err := netip.ParseAddr(nlri.Prefix)
	if err != nil {
		return rp, err
	}
	rp.Prefix = netip.PrefixFrom(a, int(nlri.PrefixLen))
	for _, pa := range p.Pattrs {
		m, err := pa.UnmarshalNew()
		if err != nil {
			return rp, err
		}
		switch v := m.(type) {
		case *api.NextHopAttribute:
			rp.NextHop, _ = netip.ParseAddr(v.NextHop)
		case *api.MpReachNLRIAttribute:
			if len(v.NextHops) > 0 {
				rp.NextHop, _ = netip.ParseAddr(v.NextHops[0])
			}
		case *api.CommunitiesAttribute:
			for _, c := range v.Communities {
				rp.Communities = append(rp.Communities, Community(c))
			}
		case *api.LargeCommunitiesAttribute:
			for _, c := range v.Communities {
				rp.Large = append(rp.Large, LargeCommunity{c.GlobalAdmin, c.LocalData1, c.LocalData2})
			}
		case *api.LocalPrefAttribute:
			rp.LocalPref = v.LocalPref
		case *api.MultiExitDiscAttribute:
			rp.MED = int64(v.Med)
		}
	}
	return rp, nil
}

type pathKey struct {
	prefix netip.Prefix
	id     uint32
}

// testRouter is an in-process GoBGP acting as a router: it listens on
// addr, accepts the speaker as a passive neighbor and counts every path
// it receives.
type testRouter struct {
	t       testing.TB
	srv     *gobgpServer
	addr    netip.Addr
	port    int32
	speaker netip.Addr

	mu          sync.Mutex
	announced   map[pathKey]int // announcements received per path
	withdrawn   map[pathKey]int
	established int
}

type routerOptions struct {
	asn       uint32 // default routerASN
	noAddPath bool
	password  string // TCP MD5
	// ttlSecurity: send with TTL 255 and accept only that (GTSM).
	ttlSecurity bool
	// noUpdateWatch: do not count received paths. GoBGP v3 converts
	// queued paths for table watchers without the FSM lock, which races
	// with a session that re-opens (a GoBGP bug that only matters to
	// table watchers, which the speaker does not use).
	noUpdateWatch bool
}

// startRouter starts a router on addr (for example 127.0.0.2 or ::1) for a
// speaker connecting from speaker. t.Cleanup stops it.
func startRouter(t testing.TB, addr, speaker string, o routerOptions) *testRouter {
	t.Helper()
	if o.asn == 0 {
		o.asn = routerASN
	}
	r := &testRouter{
		t:         t,
		addr:      netip.MustParseAddr(addr),
		port:      freePort(t, addr),
		speaker:   netip.MustParseAddr(speaker),
		announced: map[pathKey]int{},
		withdrawn: map[pathKey]int{},
	}
	ctx := testContext(t)
	global := &api.Global{Asn: o.asn, RouterId: "192.0.2.254", ListenPort: r.port, ListenAddresses: []string{addr}}
	watch := &api.WatchEventRequest{Peer: &api.WatchEventRequest_Peer{}}
	if !o.noUpdateWatch {
		watch.Table = &api.WatchEventRequest_Table{Filters: []*api.WatchEventRequest_Table_Filter{{Type: api.WatchEventRequest_Table_Filter_ADJIN}}}
	}
	srv, err := startGoBGP(ctx, klog.FromContext(ctx).WithName("router-"+addr), global, "", watch, r.onEvent)
	if err != nil {
		t.Fatalf("starting the test router: %v", err)
	}
	r.srv = srv
	t.Cleanup(func() { srv.stop(klog.FromContext(ctx)) })
	n := &api.Peer{
		Conf:      &api.PeerConf{NeighborAddress: speaker, PeerAsn: speakerASN, AuthPassword: o.password},
		Transport: &api.Transport{PassiveMode: true},
	}
	if o.ttlSecurity {
		n.TtlSecurity = &api.TtlSecurity{Enabled: true, TtlMin: 255}
	}
	for _, fam := range []*api.Family{familyIPv4, familyIPv6} {
		n.AfiSafis = append(n.AfiSafis, &api.AfiSafi{
			Config:   &api.AfiSafiConfig{Family: fam, Enabled: true},
			AddPaths: &api.AddPaths{Config: &api.AddPathsConfig{Receive: !o.noAddPath}},
		})
	}
	if err := srv.bgp.AddPeer(ctx, &api.AddPeerRequest{Peer: n}); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *testRouter) onEvent(ev *api.WatchEventResponse) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p := ev.GetPeer(); p != nil && p.Type == api.WatchEventResponse_PeerEvent_STATE &&
		p.Peer.State.SessionState == api.PeerState_ESTABLISHED {
		r.established++
	}
	tbl := ev.GetTable()
	if tbl == nil {
		return
	}
	for _, p := range tbl.Paths {
		if p.Nlri == nil { // end-of-RIB
			continue
		}
		rp, err := decodePath(p)
		if err != nil {
			continue
		}
		k := pathKey{rp.Prefix, rp.ID}
		if rp.Withdraw {
			r.withdrawn[k]++
		} else {
			r.announced[k]++
		}
	}
}

// peer is the speaker's Peer entry for this router.
func (r *testRouter) peer(name, rack string) Peer {
	return Peer{Name: name, Address: r.addr, ASN: routerASN, Port: uint16(r.port), Rack: rack, LocalAddress: r.speaker}
}

// counts returns copies of the per-path announcement and withdrawal
// counters and how often the session became Established.
func (r *testRouter) counts() (announced, withdrawn map[pathKey]int, established int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	announced, withdrawn = map[pathKey]int{}, map[pathKey]int{}
	for k, v := range r.announced {
		announced[k] = v
	}
	for k, v := range r.withdrawn {
		withdrawn[k] = v
	}
	return announced, withdrawn, r.established
}

// paths returns the router's Adj-RIB-In from the speaker, sorted.
func (r *testRouter) paths() []routerPath {
	r.t.Helper()
	var out []routerPath
	for _, fam := range []*api.Family{familyIPv4, familyIPv6} {
		err := r.srv.bgp.ListPath(context.Background(), &api.ListPathRequest{TableType: api.TableType_ADJ_IN, Name: r.speaker.String(), Family: fam}, func(d *api.Destination) {
			for _, p := range d.Paths {
				rp, err := decodePath(p)
				if err != nil {
					r.t.Errorf("decoding %v: %v", p, err)
					continue
				}
				out = append(out, rp)
			}
		})
		if err != nil {
			r.t.Fatalf("listing the router's paths: %v", err)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if c := out[i].Prefix.Addr().Compare(out[j].Prefix.Addr()); c != 0 {
			return c < 0
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// nextHops returns the router's next hops per VIP.
func (r *testRouter) nextHops() map[netip.Prefix][]netip.Addr {
	out := map[netip.Prefix][]netip.Addr{}
	for _, p := range r.paths() {
		out[p.Prefix] = append(out[p.Prefix], p.NextHop)
	}
	for _, l := range out {
		sort.Slice(l, func(i, j int) bool { return l[i].Less(l[j]) })
	}
	return out
}

// waitNextHops waits until the router's next hops per VIP are want.
func (r *testRouter) waitNextHops(what string, want map[netip.Prefix][]netip.Addr) {
	r.t.Helper()
	for _, l := range want {
		sort.Slice(l, func(i, j int) bool { return l[i].Less(l[j]) })
	}
	eventually(r.t, what, func() error {
		got := r.nextHops()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("router %s has next hops\n%v\nwant\n%v", r.addr, got, want)
		}
		return nil
	})
}

// testExportPrefixes are the export prefixes of startSpeaker's speakers
// unless a test sets its own: the documentation ranges the tests' VIPs
// are in.
var testExportPrefixes = []netip.Prefix{
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("2001:db8::/32"),
}

// gobgp returns the speaker's embedded GoBGP server.
func (s *Speaker) gobgp() *server.BgpServer {
	s.routerMu.RLock()
	defer s.routerMu.RUnlock()
	return s.router.(*gobgpRouter).srv.bgp
}

// startSpeaker starts a speaker; t.Cleanup stops it. Without export
// prefixes it gets testExportPrefixes.
func startSpeaker(t testing.TB, cfg Config) *Speaker {
	t.Helper()
	if cfg.ExportPrefixes == nil {
		cfg.ExportPrefixes = testExportPrefixes
	}
	if cfg.ASN == 0 {
		cfg.ASN = speakerASN
	}
	if !cfg.RouterID.IsValid() {
		cfg.RouterID = netip.MustParseAddr("192.0.2.1")
	}
	s, err := NewSpeaker(testContext(t), cfg)
	if err != nil {
		t.Fatalf("NewSpeaker() = %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

func waitEstablished(t testing.TB, s *Speaker, names ...string) {
	t.Helper()
	eventually(t, "sessions established", func() error {
		states := map[string]SessionState{}
		for _, p := range s.Peers() {
			states[p.Name] = p.State
		}
		for _, n := range names {
			if states[n] != StateEstablished {
				return fmt.Errorf("peer %s is %v", n, states[n])
			}
		}
		return nil
	})
}

// hops builds next hops node-<i> with addresses base+i, in rack.
func hops(base string, rack string, from, to int) []NextHop {
	var out []NextHop
	b := netip.MustParseAddr(base)
	for i := from; i <= to; i++ {
		a := b
		for j := 0; j < i; j++ {
			a = a.Next()
		}
		out = append(out, NextHop{Node: "node-" + strconv.Itoa(i), Addr: a, Rack: rack})
	}
	return out
}

func addrs(hs []NextHop) []netip.Addr {
	out := make([]netip.Addr, len(hs))
	for i, h := range hs {
		out[i] = h.Addr
	}
	return out
}

func writeFile(t testing.TB, content string) string {
	t.Helper()
	f := t.TempDir() + "/secret"
	if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}
