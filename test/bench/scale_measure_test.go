//go:build bench

package bench

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	v1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/baremetal-ccm/baremetal-ccm/provider/service"
	"github.com/baremetal-ccm/baremetal-ccm/test/bgprouter"
	"github.com/baremetal-ccm/baremetal-ccm/test/lbservice"
)

// scaleTimeout bounds each wait of the scale benchmark that is not itself
// measured: generous, the state it waits for takes seconds at this scale.
const scaleTimeout = 10 * time.Minute

// waitAllAddresses waits until n Services of namespace default have all
// the addresses they ask for (two for a dual-stack one) and returns them
// by Service name.
func (l *scaleLab) waitAllAddresses(t *testing.T, n int) map[string][]string {
	t.Helper()
	list := l.pollServices(t, 500*time.Millisecond, "Services with all their addresses", n, func(s *v1.Service) bool {
		return s.Spec.Type == v1.ServiceTypeLoadBalancer && len(s.Status.LoadBalancer.Ingress) >= len(s.Spec.IPFamilies)
	})
	got := map[string][]string{}
	for _, s := range list {
		for _, in := range s.Status.LoadBalancer.Ingress {
			got[s.Name] = append(got[s.Name], in.IP)
		}
	}
	return got
}

// waitAnnouncedConditions waits until each of the n Services says it is
// announced (service.ConditionAnnounced True): the leader's status writer,
// which writes at most patchQPS a second, has caught up with them, so
// that what follows is measured without 10,000 status writes (and the
// service controller's syncs they cause) under way.
func (l *scaleLab) waitAnnouncedConditions(t *testing.T, n int) {
	t.Helper()
	start := time.Now()
	l.pollServices(t, 2*time.Second, "Services with "+service.ConditionAnnounced+" True", n, func(s *v1.Service) bool {
		c := apimeta.FindStatusCondition(s.Status.Conditions, service.ConditionAnnounced)
		return c != nil && c.Status == metav1.ConditionTrue
	})
	t.Logf("every Service's %s condition True %s later", service.ConditionAnnounced, time.Since(start).Round(time.Second))
}

// pollServices lists the Services every `every` until exactly n of them
// match, and returns those; it fails the test after scaleTimeout, saying
// how many of what matched.
func (l *scaleLab) pollServices(t *testing.T, every time.Duration, what string, n int, match func(*v1.Service) bool) []*v1.Service {
	t.Helper()
	var matched []*v1.Service
	for deadline := time.Now().Add(scaleTimeout); time.Now().Before(deadline); time.Sleep(every) {
		list, err := l.cl.c.CoreV1().Services("default").List(context.Background(), metav1.ListOptions{})
		if err != nil {
			continue
		}
		matched = matched[:0]
		for i := range list.Items {
			if match(&list.Items[i]) {
				matched = append(matched, &list.Items[i])
			}
		}
		if len(matched) == n {
			return matched
		}
	}
	t.Fatalf("%s: %d, want %d after %s", what, len(matched), n, scaleTimeout)
	return nil
}

// converged tells how far router's table from source is from want: VIPs
// with the wanted number of paths, and the VIPs that differ (at most 5).
func converged(r *bgprouter.Router, source string, want map[netip.Prefix]int) (int, []string, error) {
	table, err := r.Paths(source)
	if err != nil {
		return 0, nil, err
	}
	ok := 0
	var off []string
	for p, n := range want {
		if len(table[p]) == n {
			ok++
		} else if len(off) < 5 {
			off = append(off, fmt.Sprintf("%s has %d paths, want %d", p, len(table[p]), n))
		}
	}
	for p := range table {
		if _, wanted := want[p]; !wanted && len(off) < 5 {
			off = append(off, fmt.Sprintf("%s is not a VIP", p))
		}
	}
	return ok, off, nil
}

// waitConverged waits until both routers have exactly want from source.
func (l *scaleLab) waitConverged(t *testing.T, source string, want map[netip.Prefix]int, what string) {
	t.Helper()
	for i, r := range l.routers {
		var ok int
		var off []string
		var err error
		for deadline := time.Now().Add(scaleTimeout); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			if ok, off, err = converged(r, source, want); err == nil && len(off) == 0 {
				break
			}
		}
		if err != nil || len(off) > 0 {
			t.Fatalf("%s: router %d: %d of %d VIPs right from %s after %s (%v); e.g. %v", what, i+1, ok, len(want), source, scaleTimeout, err, off)
		}
	}
}

// waitNoPaths waits until neither router has a path from source.
func (l *scaleLab) waitNoPaths(t *testing.T, source string) {
	t.Helper()
	for i, r := range l.routers {
		var n int
		for deadline := time.Now().Add(scaleTimeout); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			table, err := r.Paths(source)
			if n = len(table); err == nil && n == 0 {
				break
			}
		}
		if n != 0 {
			t.Fatalf("router %d still has %d prefixes from %s after %s", i+1, n, source, scaleTimeout)
		}
	}
}

// waitAccepting waits until every router accepts source's connection
// again (its session ACTIVE: passive, listening).
func (l *scaleLab) waitAccepting(t *testing.T, source string) {
	t.Helper()
	for i, r := range l.routers {
		var st api.PeerState_SessionState
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
			states, err := r.States()
			if err != nil {
				t.Fatal(err)
			}
			if st = states[source]; st == api.PeerState_ACTIVE {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("router %d: %s's session %s after 1m, want ACTIVE", i+1, source, st)
			}
		}
	}
}

// watchAll follows source's paths at every router.
func (l *scaleLab) watchAll(t *testing.T, source string) []*bgprouter.Watch {
	t.Helper()
	var ws []*bgprouter.Watch
	for _, r := range l.routers {
		ws = append(ws, r.WatchNeighbor(t, source))
	}
	return ws
}

// lastEvent is when the last path event of any of ws arrived.
func lastEvent(t *testing.T, ws []*bgprouter.Watch) time.Time {
	t.Helper()
	var last time.Time
	for _, w := range ws {
		if err := w.Err(); err != nil {
			t.Fatal(err)
		}
		if w.Last().After(last) {
			last = w.Last()
		}
	}
	return last
}

// measureSteadyState is (c) and (f): the replica's RSS, CPU, sockets and
// goroutines over a minute with nothing changing but the 1,000 probes a
// second, and GoBGP's share of the heap.
func (l *scaleLab) measureSteadyState(t *testing.T, source string) {
	const window = 60 * time.Second
	pid := l.replicas[source].PID()
	client := adminHTTPClient(t, l.cl.cp, time.Minute)
	cpu0 := processCPU(t, pid)
	var maxRSS int64
	start := time.Now()
	for time.Since(start) < window {
		maxRSS = max(maxRSS, rssBytes(t, pid))
		time.Sleep(5 * time.Second)
	}
	cpu := processCPU(t, pid) - cpu0
	elapsed := time.Since(start)
	rss := rssBytes(t, pid)
	maxRSS = max(maxRSS, rss)
	sockets := socketCount(t, pid)
	timeWait := timeWaitTo(t, l.healthPort)
	goroutines := "?"
	if b, err := debugGet(client, l.ports[source], "/debug/pprof/goroutine?debug=1"); err == nil {
		goroutines = strings.TrimPrefix(strings.SplitN(string(b), "\n", 2)[0], "goroutine profile: ")
	} else {
		t.Errorf("goroutines: %v", err)
	}
	t.Logf("(c) RSS %d MiB now, %d MiB at most over %s; CPU %.1f%% of one core (%.1f s in %s)",
		rss>>20, maxRSS>>20, window, 100*cpu.Seconds()/elapsed.Seconds(), cpu.Seconds(), elapsed.Round(time.Second))
	if maxRSS > 400<<20 {
		t.Errorf("(c) RSS up to %d MiB, want ≤ 400 MiB", maxRSS>>20)
	}
	t.Logf("(f) %d nodes probed every second: %d sockets open, %d TIME_WAIT to the healthz port, goroutines %s", scaleNodes, sockets, timeWait, goroutines)
	heap, err := debugGet(client, l.ports[source], "/debug/pprof/heap")
	if err != nil {
		t.Fatalf("heap profile: %v", err)
	}
	path := filepath.Join(t.TempDir(), "heap.pb.gz")
	if out := os.Getenv("BMCCM_BENCH_HEAP"); out != "" {
		path = out
	}
	if err := os.WriteFile(path, heap, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("(c) heap in use: %s; GoBGP's part: %s (profile %s)", heapShare(t, path, ""), heapShare(t, path, `github\.com/osrg/gobgp`), path)
}

// heapShare is go tool pprof's summary of the in-use heap, of the
// functions matching focus if it is not empty.
func heapShare(t *testing.T, path, focus string) string {
	t.Helper()
	args := []string{"tool", "pprof", "-top", "-nodefraction=0", "-sample_index=inuse_space"}
	if focus != "" {
		args = append(args, "-focus="+focus)
	}
	out, err := exec.Command("go", append(args, path)...).CombinedOutput()
	if err != nil {
		t.Fatalf("go tool pprof: %v: %s", err, out)
	}
	if focus == "" {
		m := regexp.MustCompile(`of ([0-9.]+[kMG]?B) total`).FindStringSubmatch(string(out))
		if m == nil {
			t.Fatalf("go tool pprof: no total in %s", out)
		}
		return m[1]
	}
	// With a focus the header reads "Showing nodes accounting for X, P% of
	// T total", X the focused functions' in-use memory.
	m := regexp.MustCompile(`(?m)^Showing nodes accounting for ([0-9.]+[kMG]?B), ([0-9.]+%) of`).FindStringSubmatch(string(out))
	if m == nil {
		return "none (" + strings.TrimSpace(string(out)) + ")"
	}
	return m[1] + " (" + m[2] + ")"
}

// measureNodeFailure is (b): a node's healthz starts answering 503; from
// the CCM's log line saying the node fails its check (detection) to the
// last path event at the routers once its paths are gone from every VIP.
func (l *scaleLab) measureNodeFailure(t *testing.T, want map[netip.Prefix]int) {
	const trials = 5
	ws := l.watchAll(t, replicaA)
	var afterDetect, total []time.Duration
	for trial := range trials {
		name, v4, v6 := scaleNode((trial*97 + 13) % scaleNodes)
		via, carried := l.pathsVia(t, v4, v6)
		if carried == 0 {
			t.Fatalf("%s carries no VIP at router 1", name)
		}
		withdrawn := withdrawals(ws)
		logFrom := len(l.replicas[replicaA].Log())
		failed := time.Now()
		if err := l.healthz.set(l.healthAddr[name], answer503); err != nil {
			t.Fatal(err)
		}
		detected := l.waitLogTime(t, replicaA, logFrom, `"Node fails its health check: unhealthy" node="`+name+`"`)
		l.waitPathsGone(t, ws, withdrawn, via, v4, v6)
		gone := lastEvent(t, ws)
		afterDetect = append(afterDetect, gone.Sub(detected))
		total = append(total, gone.Sub(failed))
		t.Logf("trial %d: %s carried %d VIPs; detected %s after failing, paths gone from both routers %s after detection",
			trial, name, carried, detected.Sub(failed).Round(time.Millisecond), gone.Sub(detected).Round(time.Millisecond))
		if err := l.healthz.set(l.healthAddr[name], healthy); err != nil {
			t.Fatal(err)
		}
		l.waitConverged(t, replicaA, want, name+" healthy again")
	}
	t.Logf("(b) detection → paths gone at both routers: %s", summarize(afterDetect))
	t.Logf("(b) healthz failing → paths gone at both routers: %s", summarize(total))
	if m := summarize(afterDetect).Max; m > time.Second {
		t.Errorf("(b) paths gone up to %s after detection, want ≤ 1s", m.Round(time.Millisecond))
	}
}

// pathsVia returns, for each router, the VIPs it has a path of via v4 or
// v6, and how many VIPs that is in all. It reads the routers' whole
// tables: before a measurement, not during one.
func (l *scaleLab) pathsVia(t *testing.T, v4, v6 netip.Addr) ([][]netip.Prefix, int) {
	t.Helper()
	via := make([][]netip.Prefix, len(l.routers))
	vips := map[netip.Prefix]bool{}
	for i, r := range l.routers {
		table, err := r.Paths(replicaA)
		if err != nil {
			t.Fatal(err)
		}
		for p, hops := range table {
			if slices.Contains(hops, v4) || slices.Contains(hops, v6) {
				via[i] = append(via[i], p)
				vips[p] = true
			}
		}
	}
	return via, len(vips)
}

// withdrawals counts the withdrawals ws have seen.
func withdrawals(ws []*bgprouter.Watch) int64 {
	var n int64
	for _, w := range ws {
		n += w.Withdrawals()
	}
	return n
}

// waitPathsGone waits until no router has a path via v4 or v6 of the VIPs
// in via (per router, from pathsVia). It watches the withdrawal counters,
// free to read, until they have counted one withdrawal per such path
// since from, and only then asks the routers, for those VIPs alone: a
// poll of 10,000 VIPs' tables would load the routers it measures.
func (l *scaleLab) waitPathsGone(t *testing.T, ws []*bgprouter.Watch, from int64, via [][]netip.Prefix, v4, v6 netip.Addr) {
	t.Helper()
	var paths int64
	for _, ps := range via {
		paths += int64(len(ps))
	}
	deadline := time.Now().Add(scaleTimeout)
	for withdrawals(ws)-from < paths {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d paths via %s/%s withdrawn after %s", withdrawals(ws)-from, paths, v4, v6, scaleTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for i, r := range l.routers {
		for _, p := range via[i] {
			for {
				hops, err := r.PathsTo(replicaA, p)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Contains(hops, v4) && !slices.Contains(hops, v6) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("router %d still has %s via %s/%s after %s", i+1, p, v4, v6, scaleTimeout)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
}

// klogTime matches a klog header: severity, MMDD, time of day (UTC here).
var klogTime = regexp.MustCompile(`^[IWEF](\d{4} \d{2}:\d{2}:\d{2}\.\d{6})`)

// klogLineTime is the time klog stamped on line, in year (klog's header
// has none).
func klogLineTime(line string, year int) (time.Time, bool) {
	m := klogTime.FindStringSubmatch(line)
	if m == nil {
		return time.Time{}, false
	}
	ts, err := time.ParseInLocation("0102 15:04:05.000000", m[1], time.Local)
	if err != nil {
		return time.Time{}, false
	}
	return ts.AddDate(year, 0, 0), true
}

// waitLogTime waits for a line containing match in the replica's log after
// byte offset from, and returns the time klog stamped on it.
func (l *scaleLab) waitLogTime(t *testing.T, source string, from int, match string) time.Time {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		sc := bufio.NewScanner(strings.NewReader(l.replicas[source].Log()[from:]))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if !strings.Contains(sc.Text(), match) {
				continue
			}
			ts, ok := klogLineTime(sc.Text(), time.Now().Year())
			if !ok {
				t.Fatalf("no klog time in %q", sc.Text())
			}
			return ts
		}
	}
	t.Fatalf("no log line with %s after 1m", match)
	return time.Time{}
}

// measureOneMore is (d): n Services created one at a time, each with a
// free address it asks for, so that the routers can be asked for exactly
// that prefix: create → all paths at both routers.
func (l *scaleLab) measureOneMore(t *testing.T, n int) {
	inUse := map[netip.Addr]bool{}
	for _, ips := range l.waitAllAddresses(t, scaleServiceCount()) {
		for _, ip := range ips {
			inUse[netip.MustParseAddr(ip)] = true
		}
	}
	free := v6Pool.Masked().Addr()
	var took []time.Duration
	logFrom := len(l.replicas[replicaA].Log())
	created := map[string]time.Time{}
	routed := map[string]time.Time{}
	profiled := l.profile(t, replicaA, 25, os.Getenv("BMCCM_BENCH_PROFILE_ONE_MORE"), "(d) ")
	defer func() { <-profiled }()
	for i := range n {
		for free = free.Next(); inUse[free]; free = free.Next() {
		}
		prefix := netip.PrefixFrom(free, 128)
		name := fmt.Sprintf("more-%03d", i)
		// Pacing, not a wait for a condition: the previous Service's paths
		// are at both routers; the pause keeps this creation from
		// overlapping the CCM's follow-up writes of the last (status).
		time.Sleep(200 * time.Millisecond)
		start := time.Now()
		s := lbservice.New(name, 80, lbservice.SingleStack(v1.IPv6Protocol))
		s.Annotations[service.AnnotationLoadBalancerIPs] = free.String()
		if _, err := l.cl.c.CoreV1().Services("default").Create(context.Background(), s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		created[name] = start
		var at time.Duration
		for _, r := range l.routers {
			for {
				hops, err := r.PathsTo(replicaA, prefix)
				if err != nil {
					t.Fatal(err)
				}
				if len(hops) == wantHops(scaleNodes) {
					break
				}
				if time.Since(start) > time.Minute {
					t.Fatalf("%s (%s): %d paths at router %s after 1m, want %d", name, prefix, len(hops), r.Address, wantHops(scaleNodes))
				}
				time.Sleep(5 * time.Millisecond)
			}
			at = time.Since(start)
		}
		routed[name] = start.Add(at)
		took = append(took, at)
	}
	sum := summarize(took)
	t.Logf("(d) one more Service at %d → all its paths at both routers: %s", scaleServiceCount(), sum)
	log := l.replicas[replicaA].Log()[logFrom:]
	keepLog(t, "replica-A-during-d.log", log)
	l.logOneMoreSegments(t, log, created, routed)
	if sum.P99 > 100*time.Millisecond {
		t.Errorf("(d) p99 %s, want ≤ 100ms", sum.P99.Round(time.Millisecond))
	}
}

// logOneMoreSegments splits (d)'s times at the leader's log lines: from
// the creation to the service controller's "Ensuring load balancer"
// (the apiserver, the watch, the controller's queue), from there to the
// provider's "Ensured load balancer" (allocation, and the paths handed to
// the speaker), and from there to the last path at the routers (GoBGP,
// the routers, this test's polling).
func (l *scaleLab) logOneMoreSegments(t *testing.T, log string, created, routed map[string]time.Time) {
	t.Helper()
	// The first of each: the service controller syncs a Service again
	// after the CCM's own writes (finalizer, status).
	ensuring, ensured := map[string]time.Time{}, map[string]time.Time{}
	for _, line := range strings.Split(log, "\n") {
		seen, name := ensuring, ""
		if _, rest, ok := strings.Cut(line, "Ensuring load balancer for service default/"); ok {
			name = rest
		} else if strings.Contains(line, `"Ensured load balancer"`) {
			seen = ensured
			if _, rest, ok := strings.Cut(line, `service="default/`); ok {
				name, _, _ = strings.Cut(rest, `"`)
			}
		}
		if _, ours := created[name]; !ours {
			continue
		}
		if _, done := seen[name]; done {
			continue
		}
		if ts, ok := klogLineTime(line, time.Now().Year()); ok {
			seen[name] = ts
		}
	}
	var toController, inProvider, toRouters []time.Duration
	for name, c := range created {
		a, ok1 := ensuring[name]
		b, ok2 := ensured[name]
		if !ok1 || !ok2 {
			continue
		}
		toController = append(toController, a.Sub(c))
		inProvider = append(inProvider, b.Sub(a))
		toRouters = append(toRouters, routed[name].Sub(b))
	}
	if len(toController) == 0 {
		t.Logf("(d) no Ensuring/Ensured log lines of the leader: no breakdown (its verbosity is below 2?)")
		return
	}
	t.Logf("(d) created → service controller's Ensuring: %s", summarize(toController))
	t.Logf("(d) Ensuring → provider's Ensured (allocation, paths to the speaker): %s", summarize(inProvider))
	t.Logf("(d) Ensured → all paths at both routers: %s", summarize(toRouters))
}

// apiFloor is how long the apiserver takes to list what the CCM's
// informers list at start (Services, Nodes, EndpointSlices), concurrently
// as they do, from the watch cache (resourceVersion 0).
func (l *scaleLab) apiFloor(t *testing.T) time.Duration {
	t.Helper()
	ctx := context.Background()
	opts := metav1.ListOptions{ResourceVersion: "0"}
	lists := []func() error{
		func() error { _, err := l.cl.c.CoreV1().Services("").List(ctx, opts); return err },
		func() error { _, err := l.cl.c.CoreV1().Nodes().List(ctx, opts); return err },
		func() error { _, err := l.cl.c.DiscoveryV1().EndpointSlices("").List(ctx, opts); return err },
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(lists))
	for i, list := range lists {
		wg.Go(func() { errs[i] = list() })
	}
	wg.Wait()
	took := time.Since(start)
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return took
}

// measureColdStart is (a): the only replica stopped, then started with
// every Service present and holding its addresses → every VIP with all
// its paths at both routers, beside the apiserver's listing floor.
func (l *scaleLab) measureColdStart(t *testing.T, want map[netip.Prefix]int) {
	l.replicas[replicaA].Stop()
	l.waitNoPaths(t, replicaA)
	// A cold start meets routers that wait for it: not the few seconds
	// after a session ended in which a router refuses the neighbor
	// (GoBGP's idle hold), which a start right after a stop also meets
	// (see (e)).
	l.waitAccepting(t, replicaA)
	var floors []time.Duration
	for range 3 {
		floors = append(floors, l.apiFloor(t))
	}
	floor := summarize(floors).Min
	ws := l.watchAll(t, replicaA)
	start := time.Now()
	l.startReplica(t, replicaA)
	profiled := l.profileStart(t, replicaA, 20)
	l.waitConverged(t, replicaA, want, "cold start")
	<-profiled
	done := lastEvent(t, ws).Sub(start)
	established := l.waitLogTime(t, replicaA, 0, `"BGP session established"`).Sub(start)
	t.Logf("(a) the replica's way there:\n%s", milestones(l.replicas[replicaA].Log(), start,
		"Starting service controller", "Caches are synced", "First route sync", "Desired state handed to the speaker",
		"successfully acquired lease", "BGP session established", "First sync"))
	t.Logf("(a) cold start with %d VIPs: every path at both routers %s after the start (first BGP session up after %s); the apiserver lists it all in %s (floor), ratio %.1f×",
		len(want), done.Round(time.Millisecond), established.Round(time.Millisecond), floor.Round(time.Millisecond), done.Seconds()/floor.Seconds())
	if done > 2*floor {
		t.Errorf("(a) %s, want ≤ 2× the floor %s", done.Round(time.Millisecond), floor.Round(time.Millisecond))
	}
}

// profileStart writes a CPU profile of the replica's first seconds to
// $BMCCM_BENCH_PROFILE (nothing without it): from as soon as its secure
// port answers. Wait for the returned channel.
func (l *scaleLab) profileStart(t *testing.T, source string, seconds int) <-chan struct{} {
	return l.profile(t, source, seconds, os.Getenv("BMCCM_BENCH_PROFILE"), "first ")
}

// profile writes a CPU profile of the replica's next seconds to out
// (nothing when out is empty), retrying while its secure port does not
// answer yet. what says which seconds, for the log.
func (l *scaleLab) profile(t *testing.T, source string, seconds int, out, what string) <-chan struct{} {
	done := make(chan struct{})
	if out == "" {
		close(done)
		return done
	}
	client := adminHTTPClient(t, l.cl.cp, time.Duration(seconds+30)*time.Second)
	go func() {
		defer close(done)
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			b, err := debugGet(client, l.ports[source], fmt.Sprintf("/debug/pprof/profile?seconds=%d", seconds))
			if err != nil {
				continue
			}
			if err := os.WriteFile(out, b, 0o644); err != nil {
				t.Error(err)
			}
			t.Logf("CPU profile of the replica's %s%d s written to %s", what, seconds, out)
			return
		}
		t.Errorf("no CPU profile: the replica's secure port did not answer in 1m")
	}()
	return done
}

// milestones are the first log line with each of patterns, with its time
// since start.
func milestones(log string, start time.Time, patterns ...string) string {
	var out []string
	for _, p := range patterns {
		for _, line := range strings.Split(log, "\n") {
			if !strings.Contains(line, p) {
				continue
			}
			if ts, ok := klogLineTime(line, start.Year()); ok {
				out = append(out, fmt.Sprintf("  %8s  %s", ts.Sub(start).Round(time.Millisecond), strings.TrimSpace(line[strings.Index(line, "]")+1:])))
			}
			break
		}
	}
	return strings.Join(out, "\n")
}

// measureKillRestart is (e): replica B runs beside A; A is killed with
// SIGKILL and started again → no address changes, no path withdrawn from
// B meanwhile, and how long until every path of A is back.
func (l *scaleLab) measureKillRestart(t *testing.T, want map[netip.Prefix]int, before map[string][]string) {
	l.startReplica(t, replicaB)
	l.waitConverged(t, replicaB, want, "replica B up")
	wB := l.watchAll(t, replicaB)
	wA := l.watchAll(t, replicaA)
	var bDown atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { l.watchSessions(stop, replicaB, &bDown) })
	bLogFrom := len(l.replicas[replicaB].Log())
	l.replicas[replicaA].Kill()
	l.waitNoPaths(t, replicaA)
	start := time.Now()
	l.startReplica(t, replicaA)
	l.waitConverged(t, replicaA, want, "A restarted")
	back := lastEvent(t, wA).Sub(start)
	after := l.waitAllAddresses(t, len(before))
	close(stop)
	wg.Wait()
	changed := 0
	for name, ips := range before {
		if !slices.Equal(after[name], ips) {
			changed++
			if changed <= 5 {
				t.Errorf("(e) %s: addresses %v before, %v after", name, ips, after[name])
			}
		}
	}
	var withdrawn int64
	for _, w := range wB {
		withdrawn += w.Withdrawals()
	}
	l.waitConverged(t, replicaB, want, "replica B after A's restart")
	bLog := l.replicas[replicaB].Log()[bLogFrom:]
	t.Logf("(e) SIGKILL and restart with %d VIPs: A's paths all back %s after its start; %d addresses changed; %d paths withdrawn from B, B's sessions seen down %d times; meanwhile B saw %d nodes fail their health check",
		len(want), back.Round(time.Millisecond), changed, withdrawn, bDown.Load(), strings.Count(bLog, healthCheckFailed))
	keepLog(t, "replica-B-during-e.log", bLog)
	if withdrawn != 0 || bDown.Load() != 0 {
		t.Errorf("(e) the surviving replica lost paths: %d withdrawn, sessions down %d times", withdrawn, bDown.Load())
	}
}

// healthCheckFailed is how a replica logs a node that starts failing its
// health check (provider/health/checker.go).
const healthCheckFailed = "Node fails its health check: unhealthy"

// keepLog writes log to name in $BMCCM_BENCH_LOGDIR, for reading after
// the run; a no-op without it.
func keepLog(t *testing.T, name, log string) {
	t.Helper()
	dir := os.Getenv("BMCCM_BENCH_LOGDIR")
	if dir == "" {
		return
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(log), 0o644); err != nil {
		t.Errorf("keeping the log: %v", err)
		return
	}
	t.Logf("log kept in %s", path)
}

// watchSessions counts, every 200 ms until stop, the routers that do not
// have source's session up.
func (l *scaleLab) watchSessions(stop <-chan struct{}, source string, down *atomic.Int64) {
	for {
		select {
		case <-stop:
			return
		case <-time.After(200 * time.Millisecond):
		}
		for _, r := range l.routers {
			up, err := r.Established()
			if err == nil && !slices.Contains(up, source) {
				down.Add(1)
			}
		}
	}
}

// processCPU is the user + system CPU time pid has used.
func processCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	_, _, cpu, ok := readProcStat(fmt.Sprintf("/proc/%d/stat", pid))
	if !ok {
		t.Fatalf("cannot read /proc/%d/stat", pid)
	}
	return cpu
}

// rssBytes is pid's resident set (VmRSS).
func rssBytes(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("VmRSS %q: %v", rest, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// socketCount is how many sockets pid has open.
func socketCount(t *testing.T, pid int) int {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, fd := range fds {
		if target, err := os.Readlink(filepath.Join(dir, fd.Name())); err == nil && strings.HasPrefix(target, "socket:") {
			n++
		}
	}
	return n
}

// timeWaitTo counts the IPv4 TCP connections to port in TIME_WAIT.
func timeWaitTo(t *testing.T, port int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	suffix := fmt.Sprintf(":%04X", port)
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		// sl local_address rem_address st ...; TIME_WAIT is 06.
		if len(f) > 3 && f[3] == "06" && strings.HasSuffix(f[2], suffix) {
			n++
		}
	}
	return n
}
