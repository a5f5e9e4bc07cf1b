package integration

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/baremetal-ccm/baremetal-ccm/test/bgprouter"
	"github.com/baremetal-ccm/baremetal-ccm/test/ccm"
	"github.com/baremetal-ccm/baremetal-ccm/test/controlplane"
	"github.com/baremetal-ccm/baremetal-ccm/test/lbservice"
)

// ingressOf returns every LoadBalancer Service's first ingress address.
func ingressOf(t *testing.T, c kubernetes.Interface) map[string]string {
	t.Helper()
	list, err := c.CoreV1().Services("default").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, s := range list.Items {
		if s.Spec.Type != v1.ServiceTypeLoadBalancer {
			continue
		}
		var ips []string
		for _, in := range s.Status.LoadBalancer.Ingress {
			ips = append(ips, in.IP)
		}
		out[s.Name] = strings.Join(ips, ",")
	}
	return out
}

func waitAllIngress(t *testing.T, c kubernetes.Interface, n int) map[string]string {
	t.Helper()
	var got map[string]string
	err := wait.PollUntilContextTimeout(context.Background(), 250*time.Millisecond, 3*waitTimeout, true, func(context.Context) (bool, error) {
		got = ingressOf(t, c)
		done := 0
		for _, ip := range got {
			if ip != "" {
				done++
			}
		}
		return done == n, nil
	})
	if err != nil {
		t.Fatalf("%d services, want all %d with an address: %v", len(got), n, got)
	}
	return got
}

// TestRestartKeepsAddresses kills the CCM with SIGKILL under 200 Services
// and starts it again: no address changes, none is duplicated, and the
// router's table is the same once it has converged.
func TestRestartKeepsAddresses(t *testing.T) {
	cp := controlplane.StartT(t)
	c := cp.Client
	router := bgprouter.Start(t, bgprouter.Options{ASN: 64513, Neighbors: []string{"127.0.0.1"}, NeighborASN: 64512})
	cloudConfig := filepath.Join(t.TempDir(), "cloud.yaml")
	// 380 addresses: 203.0.113.128/25 and 192.0.2.0/24 beside the /28.
	writeFile(t, cloudConfig, strings.Replace(lbConfig(router), "203.0.113.0/28", "203.0.113.0/28, 203.0.113.128/25, 192.0.2.0/24", 1))
	for i := 1; i <= 3; i++ {
		registerNode(t, c, fmt.Sprintf("node-%d", i), fmt.Sprintf("198.51.100.1%d", i))
	}
	first := ccm.Start(t, ccm.Options{Kubeconfig: cp.Kubeconfig, CloudConfig: cloudConfig})
	const n = 200
	for i := range n {
		createService(t, c, lbservice.New(fmt.Sprintf("svc-%03d", i), 80))
	}
	before := waitAllIngress(t, c, n)
	lbservice.CheckNoDuplicates(t, before)
	var table map[string]int
	err := wait.PollUntilContextTimeout(context.Background(), 250*time.Millisecond, waitTimeout, true, func(context.Context) (bool, error) {
		u, err := router.Union()
		if err != nil {
			return false, err
		}
		table = map[string]int{}
		for p, hops := range u {
			table[p.String()] = len(hops)
		}
		return len(table) == n, nil
	})
	if err != nil {
		t.Fatalf("router has %d VIPs, want %d", len(table), n)
	}

	first.Kill()
	// Make a restart find work to do: a Service created while it is down.
	createService(t, c, lbservice.New("svc-new", 80))
	ccm.Start(t, ccm.Options{Kubeconfig: cp.Kubeconfig, CloudConfig: cloudConfig})
	after := waitAllIngress(t, c, n+1)
	lbservice.CheckNoDuplicates(t, after)
	for svc, ip := range before {
		if after[svc] != ip {
			t.Errorf("%s: address %s before the restart, %s after", svc, ip, after[svc])
		}
	}
	err = wait.PollUntilContextTimeout(context.Background(), 250*time.Millisecond, waitTimeout, true, func(context.Context) (bool, error) {
		u, err := router.Union()
		if err != nil {
			return false, err
		}
		for p, want := range table {
			a, ok := findPrefix(u, p)
			if !ok || a != want {
				return false, nil
			}
		}
		return len(u) == n+1, nil
	})
	if err != nil {
		t.Errorf("the router's table did not converge back to the %d VIPs (+1 new) with 3 next hops each", n)
	}
}

func findPrefix(m map[netip.Prefix][]netip.Addr, s string) (int, bool) {
	for k, v := range m {
		if fmt.Sprint(k) == s {
			return len(v), true
		}
	}
	return 0, false
}

// TestLeaderFailover runs two replicas with leader election, each with its
// own BGP session (its own source address), kills the leader with SIGKILL
// while sampling the router every 100 ms: no VIP ever loses all its paths,
// and the new leader serves new Services.
func TestLeaderFailover(t *testing.T) {
	cp := controlplane.StartT(t)
	c := cp.Client
	router := bgprouter.Start(t, bgprouter.Options{ASN: 64513, Neighbors: []string{"127.0.0.2", "127.0.0.3"}, NeighborASN: 64512})
	dir := t.TempDir()
	for i := 1; i <= 3; i++ {
		registerNode(t, c, fmt.Sprintf("node-%d", i), fmt.Sprintf("198.51.100.1%d", i))
	}
	replicas := map[string]*ccm.Process{}
	for i, src := range []string{"127.0.0.2", "127.0.0.3"} {
		cfg := filepath.Join(dir, fmt.Sprintf("cloud-%d.yaml", i))
		writeFile(t, cfg, strings.Replace(lbConfig(router), "    asn: 64513\n", "    asn: 64513\n    localAddress: "+src+"\n", 1)+"")
		replicas[src] = ccm.Start(t, ccm.Options{Kubeconfig: cp.Kubeconfig, CloudConfig: cfg, Args: []string{
			"--leader-elect=true", "--leader-elect-lease-duration=4s", "--leader-elect-renew-deadline=3s", "--leader-elect-retry-period=500ms",
			"--bgp-router-id=" + strings.Replace(src, "127.0.0", "192.0.2", 1),
		}})
	}
	router.WaitEstablished(t, waitTimeout)
	for i := range 5 {
		createService(t, c, lbservice.New(fmt.Sprintf("svc-%d", i), 80))
	}
	before := waitAllIngress(t, c, 5)
	waitRoutesFromBoth(t, router, before)

	leader := leaderIdentity(t, c)
	var victim *ccm.Process
	for src, p := range replicas {
		if strings.Contains(strings.ToLower(p.Log()), "successfully acquired lease") {
			victim = p
			t.Logf("leader is the replica with source %s (lease holder %q)", src, leader)
		}
	}
	if victim == nil {
		t.Fatal("no replica says it acquired the lease")
	}

	// Sample the router every 100 ms while the leader dies and a new one
	// takes over.
	var lost atomic.Int64
	var lostMsg atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			u, err := router.Union()
			if err != nil {
				continue
			}
			for _, ip := range before {
				a, ok := findPrefix(u, ip+"/32")
				if !ok || a == 0 {
					lost.Add(1)
					lostMsg.Store(ip)
				}
			}
		}
	})
	victim.Kill()
	createService(t, c, lbservice.New("after-failover", 80))
	after := waitAllIngress(t, c, 6)
	close(stop)
	wg.Wait()
	if n := lost.Load(); n > 0 {
		t.Errorf("a VIP had no path in %d samples (last: %v)", n, lostMsg.Load())
	}
	for svc, ip := range before {
		if after[svc] != ip {
			t.Errorf("%s: %s before the fail-over, %s after", svc, ip, after[svc])
		}
	}
	lbservice.CheckNoDuplicates(t, after)
}

func waitRoutesFromBoth(t *testing.T, r *bgprouter.Router, ingress map[string]string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, waitTimeout, true, func(context.Context) (bool, error) {
		per, err := r.NextHops()
		if err != nil {
			return false, err
		}
		for _, table := range per {
			for _, ip := range ingress {
				if n, ok := findPrefix(table, ip+"/32"); !ok || n != 3 {
					return false, nil
				}
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("not every replica announces every VIP over 3 nodes")
	}
}

func leaderIdentity(t *testing.T, c kubernetes.Interface) string {
	t.Helper()
	var holder string
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, waitTimeout, true, func(ctx context.Context) (bool, error) {
		l, err := c.CoordinationV1().Leases("kube-system").Get(ctx, "cloud-controller-manager", metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil {
			return false, nil
		}
		holder = *l.Spec.HolderIdentity
		return true, nil
	})
	if err != nil {
		t.Fatal("no leader lease")
	}
	return holder
}

// startHealthChecked starts a control plane with three Nodes on loopback
// addresses, each with a kube-proxy-like healthz whose answer healthy
// switches, a router, and the CCM checking them every 200 ms.
func startHealthChecked(t *testing.T) (kubernetes.Interface, *bgprouter.Router, map[string]*atomic.Bool) {
	t.Helper()
	cp := controlplane.StartT(t)
	c := cp.Client
	router := bgprouter.Start(t, bgprouter.Options{ASN: 64513, Neighbors: []string{"127.0.0.1"}, NeighborASN: 64512})
	port := freeLoopbackPort(t)
	healthy := map[string]*atomic.Bool{}
	for i := 1; i <= 3; i++ {
		addr := fmt.Sprintf("127.0.0.%d", 10+i)
		ok := &atomic.Bool{}
		ok.Store(true)
		healthy[addr] = ok
		serveHealthz(t, fmt.Sprintf("%s:%d", addr, port), ok)
		registerNode(t, c, fmt.Sprintf("node-%d", i), addr)
	}
	cfg := strings.Replace(lbConfig(router), "healthCheck:\n  enabled: false\n",
		fmt.Sprintf("healthCheck:\n  port: %d\n  interval: 200ms\n  timeout: 100ms\n", port), 1)
	cloudConfig := filepath.Join(t.TempDir(), "cloud.yaml")
	writeFile(t, cloudConfig, cfg)
	ccm.Start(t, ccm.Options{Kubeconfig: cp.Kubeconfig, CloudConfig: cloudConfig})
	return c, router, healthy
}

// TestHealthCheckWithdraws runs kube-proxy-like healthz servers for the
// nodes (on loopback addresses, which are the nodes' InternalIPs here): a
// node whose healthz fails loses its paths; when all fail, all are kept
// (fail open).
func TestHealthCheckWithdraws(t *testing.T) {
	c, router, healthy := startHealthChecked(t)
	createService(t, c, lbservice.New("web", 80))
	waitIngress(t, c, "web", "203.0.113.1")
	all := []string{"127.0.0.11", "127.0.0.12", "127.0.0.13"}
	waitRoutes(t, router, "all healthy", map[string][]string{"203.0.113.1": all})

	healthy["127.0.0.12"].Store(false)
	waitRoutes(t, router, "node-2 unhealthy", map[string][]string{"203.0.113.1": {"127.0.0.11", "127.0.0.13"}})
	for _, ok := range healthy {
		ok.Store(false)
	}
	waitRoutes(t, router, "every node unhealthy: fail open", map[string][]string{"203.0.113.1": all})
	for _, ok := range healthy {
		ok.Store(true)
	}
	waitRoutes(t, router, "all healthy again", map[string][]string{"203.0.113.1": all})
}

func freeLoopbackPort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// serveHealthz answers like kube-proxy's /healthz: 200 when ok, else 503.
func serveHealthz(t *testing.T, addr string, ok *atomic.Bool) {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listening on %s: %v", addr, err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ok.Load() {
			w.WriteHeader(http.StatusOK)
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
}
