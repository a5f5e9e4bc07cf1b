//go:build bench

// The measurements are built only with -tags bench (make bench-e2e), so
// that no test of `make test` is ever skipped.

package bench

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/baremetal-ccm/baremetal-ccm/test/bgprouter"
	"github.com/baremetal-ccm/baremetal-ccm/test/ccm"
	"github.com/baremetal-ccm/baremetal-ccm/test/lbservice"
	"github.com/baremetal-ccm/baremetal-ccm/test/proc"
)

const benchNodeCount = 50

// The IPv4 documentation ranges hold 768 addresses: the Service benchmarks
// use IPv6 VIPs from a /112 (65,536).
var v6Pool = netip.MustParsePrefix("2001:db8:100::/112")

func v6Cluster(t *testing.T) *cluster {
	return startCluster(t, benchNodes(benchNodeCount), func(r *bgprouter.Router) string {
		// The nodes' 198.51.100.x / 2001:db8:1::x do not exist here: probing
		// them would only time out, and all failing means fail open anyway.
		return cloudConfig(r, v6Pool.String(), "  enabled: false\n")
	})
}

// wantHops is how many next hops a VIP gets with n eligible nodes.
func wantHops(n int) int { return min(n, maxPathsPerPrefix) }

// TestBenchCreateBurst: 1,000 LoadBalancer Services created at once (by 32
// workers) on a cluster of 50 Nodes; the time until all have an
// EXTERNAL-IP, and until all VIPs are in the router's table (target ≤ 20 s).
// The second case creates them while the CCM is stopped and measures from
// its start: the CCM's own throughput, without the creates competing for
// the apiserver.
func TestBenchCreateBurst(t *testing.T) {
	for _, tc := range []struct {
		name    string
		ccmDown bool
	}{
		{"created while the CCM runs", false},
		{"created before the CCM starts", true},
	} {
		t.Run(tc.name, func(t *testing.T) { benchBurst(t, tc.ccmDown) })
	}
}

func benchBurst(t *testing.T, ccmDown bool) {
	const services, workers = 1000, 32
	cl := v6Cluster(t)
	iw := watchIngress(t, cl.c)
	t.Logf("load average before: %s", proc.LoadAverage())
	if ccmDown {
		cl.ccm.Stop()
	}
	cpu := cpuTimes()
	start := time.Now()
	var profiled <-chan struct{}
	if !ccmDown {
		profiled = cl.profileCCM(t, 20)
	}
	jobs := make(chan int)
	errs := make(chan error, services)
	var created sync.WaitGroup
	for range workers {
		created.Go(func() {
			for i := range jobs {
				s := lbservice.New(fmt.Sprintf("burst-%04d", i), 80, lbservice.SingleStack(v1.IPv6Protocol))
				if _, err := cl.c.CoreV1().Services("default").Create(context.Background(), s, metav1.CreateOptions{}); err != nil {
					errs <- fmt.Errorf("creating %s: %w", s.Name, err)
				}
			}
		})
	}
	for i := range services {
		jobs <- i
	}
	close(jobs)
	created.Wait()
	allCreated := time.Since(start)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if ccmDown {
		start = time.Now()
		cl.ccm = ccm.Start(t, cl.ccmOpts)
	}

	// The router is polled by one goroutine; a full listing of 16,000
	// paths takes a while, which bounds the resolution (logged).
	type sample struct {
		at            time.Duration
		present, full int
		took          time.Duration
	}
	var samples []sample
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			table, took, err := routerTable(cl.router, v6Pool)
			if err == nil {
				s := sample{at: time.Since(start), present: len(table), took: took}
				for _, hops := range table {
					if len(hops) == wantHops(benchNodeCount) {
						s.full++
					}
				}
				samples = append(samples, s)
				if s.full == services {
					return
				}
			}
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	})

	deadline := time.After(setupTimeout)
	for iw.count() < services {
		select {
		case <-deadline:
			close(stop)
			wg.Wait()
			t.Fatalf("services with an EXTERNAL-IP: got %d, want %d after %s", iw.count(), services, setupTimeout)
		case <-time.After(50 * time.Millisecond):
		}
	}
	allIngress := iw.last().Sub(start)
	waitDone := make(chan struct{})
	go func() { wg.Wait(); close(waitDone) }()
	select {
	case <-waitDone:
	case <-time.After(setupTimeout):
		close(stop)
		<-waitDone
	}
	t.Logf("load average after: %s", proc.LoadAverage())
	t.Logf("CPU time used meanwhile: %s", cpuSince(cpu))
	if profiled != nil {
		<-profiled
	}

	var allPresent, allFull, maxList time.Duration
	for _, s := range samples {
		if s.present == services && allPresent == 0 {
			allPresent = s.at
		}
		if s.full == services && allFull == 0 {
			allFull = s.at
		}
		maxList = max(maxList, s.took)
	}
	last := samples[len(samples)-1]
	if allFull == 0 {
		t.Fatalf("router: %d of %d VIPs present, %d with %d next hops after %s", last.present, services, last.full, wantHops(benchNodeCount), setupTimeout)
	}
	t.Logf("%d services, %d nodes, %d creating workers: all created after %s", services, benchNodeCount, workers, allCreated.Round(time.Millisecond))
	if ccmDown {
		t.Logf("(the CCM stopped meanwhile; the times below are from its start)")
	}
	t.Logf("first EXTERNAL-IP after %s, all after %s", iw.first().Sub(start).Round(time.Millisecond), allIngress.Round(time.Millisecond))
	t.Logf("all VIPs in the router after %s, each with %d next hops after %s (router polled every 50 ms + listing, which took up to %s)",
		allPresent.Round(time.Millisecond), wantHops(benchNodeCount), allFull.Round(time.Millisecond), maxList.Round(time.Millisecond))
	if allFull > 20*time.Second {
		t.Errorf("all VIPs in the router after %s: want ≤ 20s", allFull.Round(time.Millisecond))
	}
}

// TestBenchCreateLatency: 100 Services created one at a time on an idle
// cluster of 50 Nodes: create → VIP in the router's table, p50 and p99
// (target p99 ≤ 300 ms). Each Service is deleted (and its VIP withdrawn)
// before the next is created, so the router's table stays small and
// polling it every 5 ms costs little.
func TestBenchCreateLatency(t *testing.T) {
	const services = 100
	cl := v6Cluster(t)
	iw := watchIngress(t, cl.c)
	t.Logf("load average before: %s", proc.LoadAverage())
	ctx := context.Background()

	var toRouter, toFull, toIngress, toWithdrawn, listing []time.Duration
	created := make([]time.Time, services)
	for i := range services {
		name := "single-" + strconv.Itoa(i)
		// Pacing, not a wait for a condition: the previous Service is gone
		// and its VIP withdrawn (checked at the end of the last round); the
		// pause keeps one creation from overlapping the CCM's follow-up
		// work on the last (events, status), as on an idle cluster.
		time.Sleep(200 * time.Millisecond)
		start := time.Now()
		created[i] = start
		if _, err := cl.c.CoreV1().Services("default").Create(ctx, lbservice.New(name, 80, lbservice.SingleStack(v1.IPv6Protocol)), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		var first time.Duration
		var vip netip.Addr
	poll:
		for deadline := start.Add(time.Minute); ; {
			table, took, err := routerTable(cl.router, v6Pool)
			if err != nil {
				t.Fatal(err)
			}
			listing = append(listing, took)
			for a, hops := range table {
				if first == 0 {
					first, vip = time.Since(start), a
				}
				if len(hops) == wantHops(benchNodeCount) {
					toFull = append(toFull, time.Since(start))
					break poll
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("service %s: VIP not in the router with %d next hops after 1m: %v", name, wantHops(benchNodeCount), table)
			}
			time.Sleep(5 * time.Millisecond)
		}
		toRouter = append(toRouter, first)
		// The status is written after the paths are handed to the speaker.
		for deadline := time.Now().Add(time.Minute); ; {
			if at, ip, ok := iw.at(name); ok {
				toIngress = append(toIngress, at.Sub(start))
				if ip != vip.String() {
					t.Errorf("service %s: EXTERNAL-IP %s, but the router got %s", name, ip, vip)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("service %s: no EXTERNAL-IP after 1m", name)
			}
			time.Sleep(5 * time.Millisecond)
		}

		del := time.Now()
		if err := cl.c.CoreV1().Services("default").Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		for deadline := del.Add(time.Minute); ; {
			table, _, err := routerTable(cl.router, v6Pool)
			if err != nil {
				t.Fatal(err)
			}
			if len(table) == 0 {
				toWithdrawn = append(toWithdrawn, time.Since(del))
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("service %s deleted: VIP still in the router after 1m: %v", name, table)
			}
			time.Sleep(5 * time.Millisecond)
		}
		for deadline := time.Now().Add(time.Minute); ; {
			_, err := cl.c.CoreV1().Services("default").Get(ctx, name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("service %s: not gone 1m after delete (finalizer kept?)", name)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	t.Logf("load average after: %s", proc.LoadAverage())
	t.Logf("router listing per poll: %s", summarize(listing))
	t.Logf("create → VIP in the router (first path):  %s", summarize(toRouter))
	t.Logf("create → VIP with all %d next hops:       %s", wantHops(benchNodeCount), summarize(toFull))
	t.Logf("create → EXTERNAL-IP seen by a watch:     %s", summarize(toIngress))
	t.Logf("delete → VIP withdrawn from the router:   %s", summarize(toWithdrawn))
	// Where the slowest went: the CCM's log of them (klog times are UTC).
	slow := make([]int, services)
	for i := range slow {
		slow[i] = i
	}
	slices.SortFunc(slow, func(a, b int) int { return cmp.Compare(toFull[b], toFull[a]) })
	for _, i := range slow[:3] {
		name := "single-" + strconv.Itoa(i)
		re := regexp.MustCompile(`default/` + name + `\b`)
		var lines []string
		for _, l := range strings.Split(cl.ccm.Log(), "\n") {
			if re.MatchString(l) {
				lines = append(lines, l)
			}
		}
		t.Logf("slow: %s created %s UTC, all next hops after %s; CCM log:\n%s",
			name, created[i].UTC().Format("15:04:05.000000"), toFull[i].Round(time.Millisecond), strings.Join(lines, "\n"))
	}
	if p99 := summarize(toFull).P99; p99 > 300*time.Millisecond {
		t.Errorf("create → router p99: got %s, want ≤ 300ms", p99.Round(time.Millisecond))
	}
}

// TestBenchHealthWithdraw: 50 Nodes whose kube-proxy healthz the test
// serves on 127.0.0.x, the health check at its defaults (every 1 s,
// timeout 500 ms, thresholds 2), 20 IPv4 Services. One node at a time
// starts failing — answering 503, refusing connections, or hanging — at a
// random moment of the probe interval; measured: until its next hop has
// left every VIP in the router (target ≤ 2 s).
func TestBenchHealthWithdraw(t *testing.T) {
	const services, trials = 20, 10
	v4Pool := netip.MustParsePrefix("203.0.113.0/24")
	port := freePort(t)
	nodes := loopbackNodes(benchNodeCount)
	servers := map[netip.Addr]*healthz{}
	for _, n := range nodes {
		servers[netip.MustParseAddr(n.ip)] = serveHealthz(t, fmt.Sprintf("%s:%d", n.ip, port))
	}
	cl := startCluster(t, nodes, func(r *bgprouter.Router) string {
		return cloudConfig(r, v4Pool.String(), fmt.Sprintf("  port: %d\n", port))
	})
	ctx := context.Background()
	for i := range services {
		if _, err := cl.c.CoreV1().Services("default").Create(ctx, lbservice.New(fmt.Sprintf("web-%02d", i), 80, lbservice.SingleStack(v1.IPv4Protocol)), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitTable := func(what string, ok func(map[netip.Addr][]netip.Addr) bool) (map[netip.Addr][]netip.Addr, time.Duration) {
		t.Helper()
		start := time.Now()
		var table map[netip.Addr][]netip.Addr
		for deadline := start.Add(setupTimeout); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			var err error
			if table, _, err = routerTable(cl.router, v4Pool); err != nil {
				t.Fatal(err)
			}
			if ok(table) {
				return table, time.Since(start)
			}
		}
		t.Fatalf("%s: not after %s; router table %v", what, setupTimeout, table)
		return nil, 0
	}
	settled := func(table map[netip.Addr][]netip.Addr) bool {
		if len(table) != services {
			return false
		}
		for _, hops := range table {
			if len(hops) != wantHops(benchNodeCount) {
				return false
			}
		}
		return true
	}
	table, _ := waitTable("all VIPs announced", settled)
	t.Logf("load average before: %s", proc.LoadAverage())

	results := map[healthMode][]time.Duration{}
	rng := rand.New(rand.NewPCG(5, 5))
	for _, mode := range []healthMode{answer503, refused, hanging} {
		for trial := range trials {
			// A node that carries VIPs now.
			var victim netip.Addr
			for _, n := range nodes[(trial*7+int(mode))%len(nodes):] {
				if a := netip.MustParseAddr(n.ip); len(carrying(table, a)) > 0 {
					victim = a
					break
				}
			}
			if !victim.IsValid() {
				t.Fatalf("no node carries a VIP: %v", table)
			}
			time.Sleep(time.Duration(rng.Int64N(int64(time.Second)))) // a random phase of the 1 s interval
			if err := servers[victim].set(mode); err != nil {
				t.Fatal(err)
			}
			_, took := waitTable(fmt.Sprintf("%s (%s) withdrawn", victim, mode), func(tb map[netip.Addr][]netip.Addr) bool {
				return len(carrying(tb, victim)) == 0
			})
			results[mode] = append(results[mode], took)
			if err := servers[victim].set(healthy); err != nil {
				t.Fatal(err)
			}
			table, _ = waitTable(fmt.Sprintf("%s healthy again", victim), func(tb map[netip.Addr][]netip.Addr) bool {
				return settled(tb) && len(carrying(tb, victim)) > 0
			})
		}
	}
	t.Logf("load average after: %s", proc.LoadAverage())
	for _, mode := range []healthMode{answer503, refused, hanging} {
		t.Logf("node healthz %-8s → its next hop gone from every VIP: %s", mode, summarize(results[mode]))
	}
	for _, mode := range []healthMode{answer503, refused} {
		if m := summarize(results[mode]).Max; m > 2*time.Second {
			t.Errorf("%s: withdrawn after up to %s, want ≤ 2s", mode, m.Round(time.Millisecond))
		}
	}
}
