//go:build bench

// The benchmarks are built only with -tags bench (make bench-health), so
// that no test of `make test` is ever skipped.

package health_test

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"k8s.io/klog/v2"

	"github.com/baremetal-ccm/baremetal-ccm/provider/health"
	"github.com/baremetal-ccm/baremetal-ccm/test/proc"
)

// The probe benchmark: go test -tags bench -count=1 -run '^TestBenchmarkProbes$' -v ./provider/health/
//
// 1,000 kube-proxy-like healthz endpoints, one per loopback address
// 127.1.x.y, served by a child process (this test binary running
// TestBenchmarkProbesServers, so that the figures of this process are the
// checker's), probed at the defaults (every second) for 30 s. It reports
// the CPU time of this process and of the servers, the requests and
// connections the servers saw, this process's sockets and goroutines, and
// the sockets in TIME_WAIT on the 127.1.0.0/16 addresses at the end (both
// ends: they live 60 s, so after 30 s they are half the steady state).
// HEALTH_BENCH_NODES and HEALTH_BENCH_SECONDS change the size.
//
// The file uses only the package's exported API, so that the same
// benchmark runs against an older version of the package (see
// docs/benchmarks.md).
func TestBenchmarkProbes(t *testing.T) {
	nodes := envInt(t, "HEALTH_BENCH_NODES", 1000)
	window := time.Duration(envInt(t, "HEALTH_BENCH_SECONDS", 30)) * time.Second
	klog.SetOutput(io.Discard)
	klog.LogToStderr(false)

	// The TIME_WAIT sockets of a previous run would count as this one's.
	waitStart := time.Now()
	for timeWait() > 0 {
		if time.Since(waitStart) > 90*time.Second {
			t.Fatalf("%d sockets of 127.1.0.0/16 still in TIME_WAIT after 90 s", timeWait())
		}
		time.Sleep(time.Second)
	}
	t.Logf("waited %s for no socket of 127.1.0.0/16 in TIME_WAIT", time.Since(waitStart).Round(time.Second))

	srv := startServers(t, nodes)
	targets := make(map[string]netip.AddrPort, nodes)
	for i, a := range srv.addrs {
		targets[fmt.Sprintf("node-%04d", i)] = a
	}
	cfg := health.DefaultConfig()
	var flips atomic.Int64
	c := health.NewChecker(cfg, func() { flips.Add(1) })
	c.SetTargets(targets)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(ctx)
	}()
	defer func() {
		cancel()
		<-done
	}()

	// Warm up: every node probed a few times.
	for req, _ := srv.stats(t); req < int64(3*nodes); req, _ = srv.stats(t) {
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second)

	t.Logf("load average before: %s", proc.LoadAverage())
	req0, conns0 := srv.stats(t)
	cpu0, srvCPU0 := cpuSelf(t), srv.cpu(t)
	start := time.Now()
	var gs, socks sample
	tick := time.NewTicker(time.Second)
	for time.Since(start) < window {
		<-tick.C
		gs.add(runtime.NumGoroutine())
		socks.add(sockets(t))
	}
	tick.Stop()
	cpu, srvCPU := cpuSelf(t)-cpu0, srv.cpu(t)-srvCPU0
	elapsed := time.Since(start)
	req, conns := srv.stats(t)
	tw := timeWait()
	t.Logf("load average after: %s", proc.LoadAverage())

	unhealthy := 0
	for _, ok := range c.States() {
		if !ok {
			unhealthy++
		}
	}
	secs := elapsed.Seconds()
	t.Logf("%d nodes, interval %s, timeout %s, %.1f s measured", nodes, cfg.Interval, cfg.Timeout, secs)
	t.Logf("probes: %.0f/s, new connections: %.0f/s (servers' count)", float64(req-req0)/secs, float64(conns-conns0)/secs)
	t.Logf("CPU: checker %.2f s (%.1f %% of a core), servers %.2f s", cpu.Seconds(), 100*cpu.Seconds()/secs, srvCPU.Seconds())
	t.Logf("checker's sockets (/proc/self/fd): %s", socks)
	t.Logf("checker's goroutines: %s", gs)
	t.Logf("TIME_WAIT on 127.1.0.0/16 at the end: %d", tw)
	t.Logf("unhealthy nodes: %d, onChange calls: %d", unhealthy, flips.Load())
	if unhealthy > 0 {
		t.Errorf("%d nodes unhealthy, want 0: the figures are not those of healthy nodes", unhealthy)
	}
}

// servers is the child process serving the healthz endpoints.
type servers struct {
	*proc.Child
	addrs []netip.AddrPort
}

func startServers(t *testing.T, n int) *servers {
	t.Helper()
	s := &servers{Child: proc.StartChild(t, "TestBenchmarkProbesServers", "HEALTH_BENCH_SERVE="+strconv.Itoa(n))}
	for s.Out.Scan() && s.Out.Text() != "ready" {
		if a, ok := strings.CutPrefix(s.Out.Text(), "addr "); ok {
			s.addrs = append(s.addrs, netip.MustParseAddrPort(a))
		}
	}
	if len(s.addrs) != n {
		t.Fatalf("the servers listen on %d addresses, want %d", len(s.addrs), n)
	}
	return s
}

// stats returns the requests and connections the servers have had.
func (s *servers) stats(t *testing.T) (requests, conns int64) {
	t.Helper()
	if _, err := io.WriteString(s.In, "stats\n"); err != nil {
		t.Fatal(err)
	}
	if !s.Out.Scan() {
		t.Fatalf("servers: %v", s.Out.Err())
	}
	if _, err := fmt.Sscanf(s.Out.Text(), "stats %d %d", &requests, &conns); err != nil {
		t.Fatalf("servers said %q: %v", s.Out.Text(), err)
	}
	return requests, conns
}

// cpu is the CPU time the servers' process has used.
func (s *servers) cpu(t *testing.T) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.PID()))
	if err != nil {
		t.Fatal(err)
	}
	// pid (comm) state ppid ... utime(14) stime(15), in USER_HZ (100/s).
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// TestBenchmarkProbesServers is the servers of TestBenchmarkProbes, run in
// a child process: a healthz answering like kube-proxy's (200 and a small
// JSON body) on each of HEALTH_BENCH_SERVE loopback addresses 127.1.x.y.
func TestBenchmarkProbesServers(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("HEALTH_BENCH_SERVE"))
	if n == 0 {
		return // not a test of its own: the child process TestBenchmarkProbes starts
	}
	var requests, conns atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		now := time.Now().UTC().Format(time.RFC3339Nano)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		fmt.Fprintf(w, `{"lastUpdated": %q,"currentTime": %q, "nodeEligible": true}`, now, now)
	})
	out := bufio.NewWriter(os.Stdout)
	for i := range n {
		l, err := net.Listen("tcp", fmt.Sprintf("127.1.%d.%d:0", i/250, i%250+1))
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: h, ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				conns.Add(1)
			}
		}}
		go srv.Serve(l) //nolint:errcheck // ends with the process
		fmt.Fprintf(out, "addr %s\n", l.Addr())
	}
	fmt.Fprintln(out, "ready")
	out.Flush()
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		fmt.Printf("stats %d %d\n", requests.Load(), conns.Load())
	}
}

// sample summarises a figure sampled every second.
type sample struct {
	n, sum, max int
}

func (s *sample) add(v int) {
	s.n++
	s.sum += v
	s.max = max(s.max, v)
}

func (s sample) String() string {
	if s.n == 0 {
		return "no sample"
	}
	return fmt.Sprintf("mean %d, max %d (%d samples)", s.sum/s.n, s.max, s.n)
}

// cpuSelf is the CPU time (user + system) this process has used.
func cpuSelf(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// sockets counts this process's open sockets.
func sockets(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, fd := range fds {
		if l, err := os.Readlink("/proc/self/fd/" + fd.Name()); err == nil && strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	return n
}

// timeWait counts the TCP sockets in TIME_WAIT with an end on
// 127.1.0.0/16, from /proc/net/tcp (this network namespace).
func timeWait() int {
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		return -1
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Scan() // the header
	for sc.Scan() {
		// sl local_address rem_address st ...: "0100017F:A1B2", st 06 is
		// TIME_WAIT. The address is the 32-bit word in host order (x86:
		// little-endian), so 127.1.0.1 is 0100017F.
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || fields[3] != "06" {
			continue
		}
		if in127dot1(fields[1]) || in127dot1(fields[2]) {
			n++
		}
	}
	return n
}

func in127dot1(hexAddr string) bool {
	ip, _, ok := strings.Cut(hexAddr, ":")
	b, err := hex.DecodeString(ip)
	return ok && err == nil && len(b) == 4 && b[3] == 127 && b[2] == 1
}

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}
