//go:build bench

// The benchmarks are built only with -tags bench (make bench-bgp), so that
// no test of `make test` is ever skipped.

package bgp

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/baremetal-ccm/baremetal-ccm/test/fabric"
	"github.com/go-logr/logr"
	api "github.com/osrg/gobgp/v3/api"
)

// The announcement benchmark: go test -tags bench -run '^TestBenchmarkAnnounce$' -v ./bgp/
//
// 10,000 VIPs x 8 next hops = 80,000 paths to one router, a GoBGP in a
// child process (so that the figures of this process are the speaker's),
// measured until the router holds every path. Then the same paths are
// injected into a bare GoBGP with AddPath, without our reconciliation:
// the limit. BGP_BENCH_VIPS and BGP_BENCH_HOPS change the size.
//
// It is long because it measures one scenario end to end, and its steps
// share the router process and the measured figures.
func TestBenchmarkAnnounce(t *testing.T) {
	nVIPs := envInt(t, "BGP_BENCH_VIPS", 10000)
	nHops := envInt(t, "BGP_BENCH_HOPS", 8)
	total := nVIPs * nHops
	ctx := context.Background() // no test logger: logging is not what we measure
	router := startRouterProcess(t, total)

	advs := benchAdvertisements(nVIPs, nHops)
	peer := Peer{Name: "router", Address: router.addr, ASN: routerASN, Port: uint16(router.port), LocalAddress: netip.MustParseAddr("127.0.0.1")}

	// Our speaker.
	runtime.GC()
	s, err := NewSpeaker(ctx, Config{ASN: speakerASN, RouterID: netip.MustParseAddr("192.0.2.1"), MaxPathsPerPrefix: 16, ExportPrefixes: testExportPrefixes, Peers: []Peer{peer}})
	if err != nil {
		t.Fatal(err)
	}
	waitEstablished(t, s, "router")
	start := time.Now()
	if err := s.SetAll(ctx, advs); err != nil {
		t.Fatal(err)
	}
	setAll := time.Since(start)
	router.waitReceived(t, total)
	all := time.Since(start)
	heap, rss, hwm := memory()
	t.Logf("speaker: %d VIPs x %d next hops = %d paths: SetAll returned after %v, router has all after %v (%.0f paths/s)",
		nVIPs, nHops, total, setAll.Round(time.Millisecond), all.Round(time.Millisecond), float64(total)/all.Seconds())
	t.Logf("speaker memory with %d paths announced: Go heap in use %.1f MiB, RSS %.1f MiB, peak RSS %.1f MiB", total, heap, rss, hwm)

	// A second SetAll with the same state: the cost of a resync.
	start = time.Now()
	if err := s.SetAll(ctx, advs); err != nil {
		t.Fatal(err)
	}
	t.Logf("speaker: unchanged SetAll of %d VIPs took %v", nVIPs, time.Since(start).Round(time.Millisecond))
	s.Stop()
	router.waitReceived(t, 0)
	if all > 10*time.Second || rss > 300 {
		t.Errorf("targets: all paths within 10s (%v), RSS at most 300 MiB (%.1f)", all, rss)
	}

	// The limit: the same paths, AddPath by AddPath, into a GoBGP with the
	// same neighbor and policies, without reconciliation.
	paths := rawPaths(advs)
	srv, err := startGoBGP(ctx, discardLogger(), &api.Global{Asn: speakerASN, RouterId: "192.0.2.1", ListenPort: -1}, "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.stop(discardLogger())
	if err := srv.bgp.SetPolicies(ctx, policies(&routingPolicy{ASN: speakerASN, Rackless: []netip.Addr{peer.Address}, ExportPrefixes: testExportPrefixes})); err != nil {
		t.Fatal(err)
	}
	if err := assignPolicies(ctx, srv.bgp); err != nil {
		t.Fatal(err)
	}
	cfg := (Config{MaxPathsPerPrefix: 16}).withDefaults()
	n := neighborOf(&peer, "", &cfg)
	if err := srv.bgp.AddPeer(ctx, &api.AddPeerRequest{Peer: apiPeer(&n)}); err != nil {
		t.Fatal(err)
	}
	router.waitEstablished(t, srv)
	// One caller, then reconcileWorkers callers (each with its own share
	// of the VIPs), as the speaker does.
	for _, callers := range []int{1, reconcileWorkers} {
		start = time.Now()
		var wg sync.WaitGroup
		var failed atomic.Bool
		for c := range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := c * nHops; i < len(paths); i += callers * nHops {
					for _, p := range paths[i : i+nHops] {
						if _, err := srv.bgp.AddPath(ctx, &api.AddPathRequest{Path: p}); err != nil {
							failed.Store(true)
							return
						}
					}
				}
			}()
		}
		wg.Wait()
		if failed.Load() {
			t.Fatal("AddPath failed")
		}
		added := time.Since(start)
		router.waitReceived(t, total)
		rawAll := time.Since(start)
		t.Logf("raw GoBGP, %d caller(s): %d AddPath calls took %v, router has all after %v (%.0f paths/s)",
			callers, total, added.Round(time.Millisecond), rawAll.Round(time.Millisecond), float64(total)/rawAll.Seconds())
		if err := srv.bgp.DeletePath(ctx, &api.DeletePathRequest{}); err != nil { // every local path
			t.Fatal(err)
		}
		router.waitReceived(t, 0)
	}
}

func fabricEventually(timeout, every time.Duration, f func() error) error {
	return fabric.Eventually(context.Background(), timeout, every, f)
}

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}

func discardLogger() logr.Logger { return logr.Discard() }

// benchAdvertisements: IPv6 VIPs (the documentation ranges hold only 768
// IPv4 addresses) via the same nHops nodes.
func benchAdvertisements(nVIPs, nHops int) []Advertisement {
	nodes := hops("2001:db8:ff::", "", 1, nHops)
	advs := make([]Advertisement, nVIPs)
	base := netip.MustParseAddr("2001:db8:1::").As16()
	for i := range advs {
		a := base
		a[14], a[15] = byte(i>>8), byte(i)
		a[13] = byte(i >> 16)
		advs[i] = Advertisement{Prefix: netip.PrefixFrom(netip.AddrFrom16(a), 128), NextHops: nodes}
	}
	return advs
}

// rawPaths are the GoBGP paths the speaker would announce for advs.
func rawPaths(advs []Advertisement) []*api.Path {
	var out []*api.Path
	for _, adv := range advs {
		attrs := &pathAttributes{Prefix: adv.Prefix, Communities: adv.Communities, LargeCommunities: adv.LargeCommunities, LocalPref: adv.LocalPref}
		for i, h := range adv.NextHops {
			out = append(out, apiPath(&routePath{Attrs: attrs, ID: uint32(i + 1), NextHop: h.Addr, MED: med(weight(adv.Prefix.Addr(), h.Node))}))
		}
	}
	return out
}

// memory returns the Go heap in use, the RSS and the peak RSS, in MiB.
func memory() (heap, rss, hwm float64) {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	heap = float64(m.HeapInuse) / (1 << 20)
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb / 1024
		case "VmHWM:":
			hwm = kb / 1024
		}
	}
	return heap, rss, hwm
}

// routerProcess is a GoBGP router in a child process (this test binary
// running TestBenchmarkRouterProcess). It reports how many paths it has
// received whenever the number changes.
type routerProcess struct {
	addr netip.Addr
	port int32
	cmd  *exec.Cmd

	mu       sync.Mutex
	cond     *sync.Cond
	received int
	sessions int
}

func startRouterProcess(t *testing.T, total int) *routerProcess {
	t.Helper()
	r := &routerProcess{addr: netip.MustParseAddr("127.0.0.2")}
	r.cond = sync.NewCond(&r.mu)
	r.port = freePort(t, r.addr.String())
	r.cmd = exec.Command(os.Args[0], "-test.run=^TestBenchmarkRouterProcess$", "-test.v")
	r.cmd.Env = append(os.Environ(), "BGP_BENCH_ROUTER="+r.addr.String(), "BGP_BENCH_ROUTER_PORT="+strconv.Itoa(int(r.port)))
	r.cmd.Stderr = os.Stderr
	stdin, err := r.cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := r.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var n int
			r.mu.Lock()
			if _, err := fmt.Sscanf(sc.Text(), "received %d", &n); err == nil {
				r.received = n
			} else if _, err := fmt.Sscanf(sc.Text(), "established %d", &n); err == nil {
				r.sessions = n
			}
			r.cond.Broadcast()
			r.mu.Unlock()
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	t.Cleanup(func() {
		stdin.Close() // the router stops when its stdin closes
		_ = r.cmd.Wait()
		<-done
	})
	return r
}

func (r *routerProcess) wait(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	timer := time.AfterFunc(time.Until(deadline), func() {
		r.mu.Lock()
		r.cond.Broadcast()
		r.mu.Unlock()
	})
	defer timer.Stop()
	r.mu.Lock()
	defer r.mu.Unlock()
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("router process: %s: timed out with %d paths", what, r.received)
		}
		r.cond.Wait()
	}
}

func (r *routerProcess) waitReceived(t *testing.T, n int) {
	t.Helper()
	r.wait(t, fmt.Sprintf("waiting for %d paths", n), func() bool { return r.received == n })
}

func (r *routerProcess) waitEstablished(t *testing.T, _ *gobgpServer) {
	t.Helper()
	r.mu.Lock()
	want := r.sessions + 1
	r.mu.Unlock()
	r.wait(t, "waiting for the session", func() bool { return r.sessions >= want })
}

// TestBenchmarkRouterProcess is the router of TestBenchmarkAnnounce, run in
// a child process.
func TestBenchmarkRouterProcess(t *testing.T) {
	addr := os.Getenv("BGP_BENCH_ROUTER")
	if addr == "" {
		return // not a test of its own: the child process TestBenchmarkAnnounce starts
	}
	port, _ := strconv.Atoi(os.Getenv("BGP_BENCH_ROUTER_PORT"))
	ctx := context.Background()
	global := &api.Global{Asn: routerASN, RouterId: "192.0.2.254", ListenPort: int32(port), ListenAddresses: []string{addr}}
	var mu sync.Mutex
	sessions := 0
	srv, err := startGoBGP(ctx, discardLogger(), global, "", &api.WatchEventRequest{Peer: &api.WatchEventRequest_Peer{}}, func(ev *api.WatchEventResponse) {
		if p := ev.GetPeer(); p != nil && p.Type == api.WatchEventResponse_PeerEvent_STATE && p.Peer.State.SessionState == api.PeerState_ESTABLISHED {
			mu.Lock()
			sessions++
			fmt.Printf("established %d\n", sessions)
			mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.stop(discardLogger())
	n := &api.Peer{
		Conf:      &api.PeerConf{NeighborAddress: "127.0.0.1", PeerAsn: speakerASN},
		Transport: &api.Transport{PassiveMode: true},
	}
	for _, fam := range []*api.Family{familyIPv4, familyIPv6} {
		n.AfiSafis = append(n.AfiSafis, &api.AfiSafi{
			Config:   &api.AfiSafiConfig{Family: fam, Enabled: true},
			AddPaths: &api.AddPaths{Config: &api.AddPathsConfig{Receive: true}},
		})
	}
	if err := srv.bgp.AddPeer(ctx, &api.AddPeerRequest{Peer: n}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(stop)
	}()
	last := -1
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		var received uint64
		_ = srv.bgp.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
			for _, as := range p.AfiSafis {
				if as.State != nil {
					received += as.State.Received
				}
			}
		})
		if int(received) != last {
			last = int(received)
			mu.Lock()
			fmt.Printf("received %d\n", last)
			mu.Unlock()
		}
	}
}

// TestBenchmarkFRR announces the same 80,000 paths to FRR as the ToR (in a
// namespace, as in the FRR tests) and measures until bgpd holds them all
// and until the kernel has every VIP's ECMP route:
// go test -tags bench -run '^TestBenchmarkFRR$' -v ./bgp/ (root, FRR).
func TestBenchmarkFRR(t *testing.T) {
	nVIPs := envInt(t, "BGP_BENCH_VIPS", 10000)
	nHops := envInt(t, "BGP_BENCH_HOPS", 8)
	total := nVIPs * nHops
	ctx := context.Background()
	r := newToR(t, 3, torConfig{})
	var h []NextHop
	a := r.addr6
	for i := 0; i < 10; i++ {
		a = a.Next()
	}
	for i := 0; i < nHops; i++ {
		a = a.Next()
		h = append(h, NextHop{Node: fmt.Sprintf("node-%d", i), Addr: a})
	}
	advs := benchAdvertisements(nVIPs, nHops)
	for i := range advs {
		advs[i].NextHops = h
	}
	s, err := NewSpeaker(ctx, Config{ASN: speakerASN, RouterID: netip.MustParseAddr("192.0.2.1"), MaxPathsPerPrefix: 16, ExportPrefixes: testExportPrefixes, Peers: []Peer{r.peer(0)}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	waitEstablished(t, s, "tor")
	start := time.Now()
	if err := s.SetAll(ctx, advs); err != nil {
		t.Fatal(err)
	}
	t.Logf("FRR: SetAll of %d paths returned after %v", total, time.Since(start).Round(time.Millisecond))
	var inBGP, inKernel time.Duration
	err = fabricEventually(10*time.Minute, 250*time.Millisecond, func() error {
		if inBGP == 0 {
			var sum map[string]struct {
				Peers map[string]struct {
					PfxRcd int `json:"pfxRcd"`
				} `json:"peers"`
			}
			if err := r.frr.VtyshJSON(ctx, "show bgp summary json", &sum); err != nil {
				return err
			}
			n := 0
			for _, af := range sum {
				for _, p := range af.Peers {
					n += p.PfxRcd
				}
			}
			if n < total {
				return fmt.Errorf("bgpd has %d paths", n)
			}
			inBGP = time.Since(start)
		}
		out, err := r.ns.IP(ctx, "-6", "route", "show", "proto", "bgp")
		if err != nil {
			return err
		}
		if n, nh := strings.Count(string(out), "nhid"), strings.Count(string(out), "nexthop via"); n < nVIPs || nh < total {
			return fmt.Errorf("the kernel has %d of %d routes, %d of %d next hops", n, nVIPs, nh, total)
		}
		inKernel = time.Since(start)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("FRR: bgpd has all %d paths after %v, the kernel all %d %d-way ECMP routes after %v", total, inBGP.Round(time.Millisecond), nVIPs, nHops, inKernel.Round(time.Millisecond))
	heap, rss, hwm := memory()
	t.Logf("speaker memory with %d paths announced: Go heap in use %.1f MiB, RSS %.1f MiB, peak RSS %.1f MiB", total, heap, rss, hwm)
}
