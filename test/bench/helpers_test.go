// Package bench measures the LoadBalancer path end to end (issue 5) with
// the real kube-apiserver, the real CCM binary and a GoBGP router: how long
// 1,000 Services take to get an address and reach the router, how long one
// Service takes on an idle cluster, and how long a failing node keeps its
// paths. The measurements are built only with -tags bench (see
// docs/benchmarks.md); plain `go test` runs the helpers' unit tests.
package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	cloudproviderapi "k8s.io/cloud-provider/api"

	"github.com/baremetal-ccm/baremetal-ccm/test/bgprouter"
	"github.com/baremetal-ccm/baremetal-ccm/test/ccm"
	"github.com/baremetal-ccm/baremetal-ccm/test/controlplane"
	"github.com/baremetal-ccm/baremetal-ccm/test/kubelet"
)

// maxPathsPerPrefix is the bgp section's default: a VIP is announced via
// at most this many nodes (rendezvous hashing picks which).
const maxPathsPerPrefix = 16

// setupTimeout bounds every wait that is not itself measured.
const setupTimeout = 3 * time.Minute

// summary is the distribution of a set of durations.
type summary struct {
	N                       int
	Min, P50, P90, P99, Max time.Duration
	Mean                    time.Duration
}

// summarize computes nearest-rank percentiles (p99 of 100 samples is the
// 99th smallest). It does not modify ds.
func summarize(ds []time.Duration) summary {
	if len(ds) == 0 {
		return summary{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	rank := func(p int) time.Duration {
		i := (p*len(s)+99)/100 - 1 // ceil(p/100 × n) - 1
		return s[max(i, 0)]
	}
	return summary{
		N: len(s), Min: s[0], P50: rank(50), P90: rank(90), P99: rank(99), Max: s[len(s)-1],
		Mean: sum / time.Duration(len(s)),
	}
}

func (s summary) String() string {
	r := func(d time.Duration) string { return d.Round(time.Millisecond).String() }
	return fmt.Sprintf("n=%d min=%s p50=%s p90=%s p99=%s max=%s mean=%s", s.N, r(s.Min), r(s.P50), r(s.P90), r(s.P99), r(s.Max), r(s.Mean))
}

// readProcStat reads a /proc/<pid>/stat file: the command name, the
// parent's pid, and the CPU time (user + system) used.
func readProcStat(path string) (comm string, ppid int, cpu time.Duration, ok bool) {
	const tick = 10 * time.Millisecond // USER_HZ is 100 on Linux
	b, err := os.ReadFile(path)
	if err != nil {
		return "", 0, 0, false
	}
	// pid (comm) state ppid ... utime(14) stime(15)
	i := strings.LastIndexByte(string(b), ')')
	j := strings.IndexByte(string(b), '(')
	if i < 0 || j < 0 {
		return "", 0, 0, false
	}
	f := strings.Fields(string(b[i+2:]))
	if len(f) < 13 {
		return "", 0, 0, false
	}
	var utime, stime int64
	fmt.Sscan(f[1], &ppid)
	fmt.Sscan(f[11], &utime)
	fmt.Sscan(f[12], &stime)
	return string(b[j+1 : i]), ppid, time.Duration(utime+stime) * tick, true
}

// cpuTimes returns the CPU time (user + system) used so far by this test
// process ("test": the router, the informers, the workers) and by each of
// its children (etcd, kube-apiserver, the CCM), by command name.
func cpuTimes() map[string]time.Duration {
	out := map[string]time.Duration{}
	if _, _, cpu, ok := readProcStat("/proc/self/stat"); ok {
		out["test"] = cpu
	}
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		if d.Name()[0] < '0' || d.Name()[0] > '9' {
			continue
		}
		if comm, ppid, cpu, ok := readProcStat("/proc/" + d.Name() + "/stat"); ok && ppid == os.Getpid() {
			out[comm] += cpu
		}
	}
	return out
}

// cpuSince formats the CPU time each process used since before.
func cpuSince(before map[string]time.Duration) string {
	now := cpuTimes()
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(now)) {
		parts = append(parts, fmt.Sprintf("%s %.1fs", name, (now[name]-before[name]).Seconds()))
	}
	return strings.Join(parts, ", ")
}

// node is a Node to register: its name and the kubelet's --node-ip.
type node struct{ name, ip string }

// benchNodes are n Nodes with an IPv4 address in 198.51.100.0/24 (from .11)
// and an IPv6 one in 2001:db8:1::/64, both InternalIPs.
func benchNodes(n int) []node {
	out := make([]node, n)
	for i := range out {
		out[i] = node{fmt.Sprintf("node-%02d", i+1), fmt.Sprintf("198.51.100.%d,2001:db8:1::%x", 11+i, 11+i)}
	}
	return out
}

// loopbackNodes are n Nodes whose InternalIP is 127.0.0.x (from .11), where
// the test serves their healthz.
func loopbackNodes(n int) []node {
	out := make([]node, n)
	for i := range out {
		out[i] = node{fmt.Sprintf("node-%02d", i+1), fmt.Sprintf("127.0.0.%d", 11+i)}
	}
	return out
}

// cloudConfig renders the CCM's config: one rack, one pool, the router as
// the only peer; healthCheck is the section's body (empty: the defaults).
func cloudConfig(r *bgprouter.Router, pool, healthCheck string) string {
	cfg := fmt.Sprintf(`region: lab
racks:
- name: rack-a
  subnets: [198.51.100.0/24, 2001:db8:1::/64]
pools:
- name: public
  addresses: [%s]
`, pool) + r.SpeakerConfig()
	if healthCheck != "" {
		cfg += "healthCheck:\n" + healthCheck
	}
	return cfg
}

// cluster is a control plane, a router and the CCM binary, with Nodes
// registered, Ready and initialised.
type cluster struct {
	cp     *controlplane.ControlPlane
	c      kubernetes.Interface
	router *bgprouter.Router
	ccm    *ccm.Process
	// ccmOpts start the CCM again.
	ccmOpts ccm.Options
	// securePort serves the CCM's /debug/pprof with BMCCM_BENCH_PROFILE
	// set; 0 otherwise.
	securePort int
}

// startCluster runs the control plane and the router, registers the nodes,
// and starts the CCM with config(router) and the shipped defaults of
// --kube-api-qps and --concurrent-service-syncs (ccm.TestArgs only speed
// up the node controllers and the config reload).
func startCluster(t *testing.T, nodes []node, config func(*bgprouter.Router) string) *cluster {
	t.Helper()
	cp := startControlPlane(t)
	cl := &cluster{cp: cp, c: cp.Client}
	cl.router = bgprouter.Start(t, bgprouter.Options{ASN: 64513, Neighbors: []string{"127.0.0.1"}, NeighborASN: 64512})
	path := filepath.Join(t.TempDir(), "cloud.yaml")
	if err := os.WriteFile(path, []byte(config(cl.router)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		registerNode(t, cl.c, n)
	}
	cl.ccmOpts = ccm.Options{Kubeconfig: cp.Kubeconfig, CloudConfig: path, Args: strings.Fields(os.Getenv("BMCCM_BENCH_CCM_ARGS"))}
	if os.Getenv("BMCCM_BENCH_PROFILE") != "" {
		cl.securePort = freePort(t)
		cl.ccmOpts.Args = append(cl.ccmOpts.Args, "--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", cl.securePort),
			"--authentication-kubeconfig="+cp.Kubeconfig, "--authorization-kubeconfig="+cp.Kubeconfig, "--profiling=true")
	}
	if len(cl.ccmOpts.Args) > 0 {
		t.Logf("CCM flags beyond the shipped defaults (BMCCM_BENCH_CCM_ARGS): %v", cl.ccmOpts.Args)
	}
	cl.ccm = ccm.Start(t, cl.ccmOpts)
	cl.router.WaitEstablished(t, setupTimeout)
	cl.waitNodesInitialised(t, len(nodes))
	return cl
}

// startControlPlane is controlplane.StartT with etcd's data on tmpfs
// (/dev/shm) unless BMCCM_BENCH_ETCD_DISK=1: on the shared VM an fsync takes
// 100–300 ms when others are busy, and the benchmarks would measure the
// disk rather than the CCM; a production etcd has an SSD with ~1 ms fsync.
func startControlPlane(t *testing.T) *controlplane.ControlPlane {
	t.Helper()
	if _, err := os.Stat("/dev/shm"); err != nil || os.Getenv("BMCCM_BENCH_ETCD_DISK") == "1" {
		return controlplane.StartT(t)
	}
	dir, err := os.MkdirTemp("/dev/shm", "bmccm-bench-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	cp := controlplane.StartTWith(t, controlplane.Options{Dir: dir})
	t.Logf("etcd data in %s (tmpfs)", dir)
	return cp
}

// registerNode registers the node as its kubelet would, Ready.
func registerNode(t *testing.T, c kubernetes.Interface, n node) {
	t.Helper()
	kubelet.Register(t, c, n.name, n.ip)
}

// waitNodesInitialised waits until the CCM has initialised all n Nodes.
func (cl *cluster) waitNodesInitialised(t *testing.T, n int) {
	t.Helper()
	var done int
	err := wait.PollUntilContextTimeout(context.Background(), 250*time.Millisecond, setupTimeout, true, func(ctx context.Context) (bool, error) {
		list, err := cl.c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		done = 0
		for _, nd := range list.Items {
			if nd.Spec.ProviderID != "" && !slices.ContainsFunc(nd.Spec.Taints, func(t v1.Taint) bool { return t.Key == cloudproviderapi.TaintExternalCloudProvider }) {
				done++
			}
		}
		return done == n, nil
	})
	if err != nil {
		t.Fatalf("nodes initialised: got %d, want %d after %s", done, n, setupTimeout)
	}
}

// ingressWatch records when each Service of the namespace first shows an
// ingress address.
type ingressWatch struct {
	mu   sync.Mutex
	seen map[string]time.Time
	ips  map[string]string
}

// watchIngress records, until the test ends, when each Service first shows
// an ingress address (an informer: it re-lists and re-watches if the watch
// breaks).
func watchIngress(t *testing.T, c kubernetes.Interface) *ingressWatch {
	t.Helper()
	iw := &ingressWatch{seen: map[string]time.Time{}, ips: map[string]string{}}
	record := func(obj any) {
		s, ok := obj.(*v1.Service)
		if !ok || len(s.Status.LoadBalancer.Ingress) == 0 {
			return
		}
		now := time.Now()
		iw.mu.Lock()
		defer iw.mu.Unlock()
		if _, dup := iw.seen[s.Name]; !dup {
			iw.seen[s.Name] = now
			iw.ips[s.Name] = s.Status.LoadBalancer.Ingress[0].IP
		}
	}
	factory := informers.NewSharedInformerFactoryWithOptions(c, 0, informers.WithNamespace("default"))
	inf := factory.Core().V1().Services().Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    record,
		UpdateFunc: func(_, obj any) { record(obj) },
	}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	factory.Start(stop)
	t.Cleanup(func() { close(stop); factory.Shutdown() })
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		t.Fatalf("service informer not synced after %s", setupTimeout)
	}
	return iw
}

// at returns when the Service first had an address, and that address.
func (iw *ingressWatch) at(name string) (time.Time, string, bool) {
	iw.mu.Lock()
	defer iw.mu.Unlock()
	ts, ok := iw.seen[name]
	return ts, iw.ips[name], ok
}

func (iw *ingressWatch) count() int {
	iw.mu.Lock()
	defer iw.mu.Unlock()
	return len(iw.seen)
}

// first is the earliest first-seen time over all Services.
func (iw *ingressWatch) first() time.Time {
	iw.mu.Lock()
	defer iw.mu.Unlock()
	var f time.Time
	for _, ts := range iw.seen {
		if f.IsZero() || ts.Before(f) {
			f = ts
		}
	}
	return f
}

// last is the latest first-seen time over all Services.
func (iw *ingressWatch) last() time.Time {
	iw.mu.Lock()
	defer iw.mu.Unlock()
	var l time.Time
	for _, ts := range iw.seen {
		if ts.After(l) {
			l = ts
		}
	}
	return l
}

// healthMode is how a node's fake kube-proxy answers /healthz.
type healthMode int

const (
	healthy   healthMode = iota // 200
	answer503                   // 503, as kube-proxy when it is not synced
	refused                     // nothing listens: the connection is refused
	hanging                     // accepts, never answers (a wedged node)
)

func (m healthMode) String() string {
	return [...]string{"healthy", "503", "refused", "hanging"}[m]
}

// healthz is a kube-proxy-like /healthz server on one address whose
// behaviour the test switches.
type healthz struct {
	addr string

	mu     sync.Mutex
	mode   healthMode
	srv    *http.Server
	unhang chan struct{} // closed when leaving hanging
}

// serveHealthz starts a healthy server on addr until the test ends.
func serveHealthz(t testing.TB, addr string) *healthz {
	t.Helper()
	h := &healthz{addr: addr, unhang: make(chan struct{})}
	if err := h.listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.srv != nil {
			_ = h.srv.Close()
		}
	})
	return h
}

// listen starts the server; h.mu is held or h is not shared yet.
func (h *healthz) listen() error {
	l, err := net.Listen("tcp", h.addr)
	if err != nil {
		return fmt.Errorf("healthz: listening on %s: %w", h.addr, err)
	}
	h.srv = &http.Server{Handler: http.HandlerFunc(h.serve), ReadHeaderTimeout: 5 * time.Second}
	go func(srv *http.Server) { _ = srv.Serve(l) }(h.srv)
	return nil
}

func (h *healthz) serve(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	mode, unhang := h.mode, h.unhang
	h.mu.Unlock()
	switch mode {
	case healthy:
		w.WriteHeader(http.StatusOK)
	case hanging:
		select {
		case <-unhang:
		case <-r.Context().Done():
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	default:
		w.WriteHeader(http.StatusServiceUnavailable)
	}
}

// set switches the behaviour; refused closes the listener, leaving refused
// opens it again on the same address.
func (h *healthz) set(m healthMode) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if m == h.mode {
		return nil
	}
	if h.mode == hanging {
		close(h.unhang)
		h.unhang = make(chan struct{})
	}
	switch {
	case m == refused:
		if err := h.srv.Close(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		h.srv = nil
	case h.mode == refused:
		if err := h.listen(); err != nil {
			return err
		}
	}
	h.mode = m
	return nil
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// profileCCM fetches a CPU profile of the CCM over seconds into
// $BMCCM_BENCH_PROFILE (a no-op without it), authenticating with the admin's
// client certificate. It returns at once; wait for the returned channel.
func (cl *cluster) profileCCM(t *testing.T, seconds int) <-chan struct{} {
	t.Helper()
	done := make(chan struct{})
	out := os.Getenv("BMCCM_BENCH_PROFILE")
	if out == "" || cl.securePort == 0 {
		close(done)
		return done
	}
	client := adminHTTPClient(t, cl.cp, time.Duration(seconds+30)*time.Second)
	go func() {
		defer close(done)
		b, err := debugGet(client, cl.securePort, fmt.Sprintf("/debug/pprof/profile?seconds=%d", seconds))
		if err != nil {
			t.Errorf("CCM profile: %v", err)
			return
		}
		if err := os.WriteFile(out, b, 0o644); err != nil {
			t.Error(err)
			return
		}
		t.Logf("CCM CPU profile of %d s written to %s", seconds, out)
	}()
	return done
}

// adminHTTPClient calls the CCM's secure port as the cluster's admin (its
// client certificate), within timeout per request.
func adminHTTPClient(t *testing.T, cp *controlplane.ControlPlane, timeout time.Duration) *http.Client {
	t.Helper()
	cert, err := tls.X509KeyPair(cp.Config.CertData, cp.Config.KeyData)
	if err != nil {
		t.Fatalf("admin client certificate: %v", err)
	}
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true}, // the CCM's self-signed serving cert
	}}
}

// debugGet fetches path from the CCM's secure port on 127.0.0.1.
func debugGet(client *http.Client, port int, path string) ([]byte, error) {
	resp, err := client.Get(fmt.Sprintf("https://127.0.0.1:%d%s", port, path))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: got %s (%d bytes), want 200", path, resp.Status, len(b))
	}
	return b, nil
}

// routerTable is the router's table for the VIPs of one prefix range:
// next hops per VIP, and how long the listing took.
func routerTable(r *bgprouter.Router, within netip.Prefix) (map[netip.Addr][]netip.Addr, time.Duration, error) {
	start := time.Now()
	u, err := r.Union()
	took := time.Since(start)
	if err != nil {
		return nil, took, err
	}
	out := map[netip.Addr][]netip.Addr{}
	for p, hops := range u {
		if within.Contains(p.Addr()) && len(hops) > 0 {
			out[p.Addr()] = hops
		}
	}
	return out, took, nil
}

// carrying returns the VIPs whose next hops include hop.
func carrying(table map[netip.Addr][]netip.Addr, hop netip.Addr) []netip.Addr {
	var out []netip.Addr
	for vip, hops := range table {
		if slices.Contains(hops, hop) {
			out = append(out, vip)
		}
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return out
}
