// Package podroutes tests the pod routes (cloud config routes:) end to
// end on FRR: the real binary as two replicas in network namespaces, the
// real kube-apiserver, two ToRs that learn each node's pod CIDR over BGP
// and pass them to each other, and nodes whose loopback addresses stand
// for pods. It needs root, FRR, etcd and kube-apiserver: it fails under
// CI=true without them and skips otherwise.
package podroutes

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/baremetal-ccm/baremetal-ccm/test/ccm"
	"github.com/baremetal-ccm/baremetal-ccm/test/controlplane"
	"github.com/baremetal-ccm/baremetal-ccm/test/fabric"
)

// waitTimeout bounds every wait for a condition: generous, for a busy
// 2-core machine.
const waitTimeout = 2 * time.Minute

// Bounds that the figures are far below: the figures are logged, and
// recorded in docs/routes.md.
const (
	withdrawBound = 30 * time.Second
	// sampleEvery is how often the restart test reads the ToRs' tables.
	sampleEvery = 100 * time.Millisecond
)

const (
	totalNodes = 50
	machines   = 4 // nodes with a namespace: a1, b1, a2, b2
)

func TestPodRoutesFabric(t *testing.T) {
	fabric.Require(t, true)
	controlplane.RequireTools(t, "etcd")
	if _, err := controlplane.BinDir(context.Background()); err != nil {
		controlplane.Unavailable(t, "kube-apiserver: "+err.Error())
	}
	cp := controlplane.StartT(t)
	prefix := fabric.UniqueName("bpr")
	e := buildFabric(t, prefix, cp)
	nodes := e.makeNodes(prefix)
	e.cloudConfig = filepath.Join(t.TempDir(), "cloud.yaml")
	ccm.WriteConfig(t, e.cloudConfig, e.cloudConfigText())
	for _, c := range e.replicas {
		e.start(c)
	}
	for _, n := range nodes {
		e.createNode(n)
	}
	start := time.Now()
	e.waitConverged(nodes)
	t.Logf("%d nodes' pod routes in both ToRs' kernels %s after the Nodes were created", len(nodes), time.Since(start).Round(time.Millisecond))

	t.Run("PodsReachAcrossRacks", func(t *testing.T) { e.podsReach(t, nodes[:machines]) })
	t.Run("NodeRemovedWithdraws", func(t *testing.T) { nodes = e.removeNodes(t, nodes, nodes[machines:machines+6]) })
	t.Run("RestartKeepsRoutes", func(t *testing.T) { e.restartKeepsRoutes(t, nodes) })
}

// makeNodes plans totalNodes nodes, alternating between the racks; the
// first machines get namespaces.
func (e *env) makeNodes(prefix string) []*node {
	var out []*node
	for i := range totalNodes {
		r := e.racks[i%2]
		j := i / 2
		n := &node{rack: r, addr4: nth(r.net4, 10+j), addr6: nth(r.net6, 0x10+j),
			pod4: netip.MustParsePrefix(fmt.Sprintf("203.0.113.%d/30", 4*i)),
			pod6: netip.MustParsePrefix(fmt.Sprintf("2001:db8:100:%x::/64", i))}
		if i < machines {
			n.name = fmt.Sprintf("%s%d", strings.TrimPrefix(r.name, "rack-"), j+1)
			e.addMachine(prefix, n)
		} else {
			n.name = fmt.Sprintf("v%02d", i)
		}
		out = append(out, n)
	}
	return out
}

// createNode creates the Node as kube-controller-manager's node IPAM and
// the CCM's node controller would leave it: pod CIDRs and addresses.
func (e *env) createNode(n *node) {
	t := e.t
	ctx := context.Background()
	obj := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.name},
		Spec: v1.NodeSpec{PodCIDR: n.pod4.String(), PodCIDRs: []string{n.pod4.String(), n.pod6.String()}}}
	created, err := e.cp.Client.CoreV1().Nodes().Create(ctx, obj, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating node %s: %v", n.name, err)
	}
	created.Status.Addresses = []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: n.addr4.String()}, {Type: v1.NodeInternalIP, Address: n.addr6.String()}}
	if _, err := e.cp.Client.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("setting the addresses of node %s: %v", n.name, err)
	}
}

// expected is, per ToR, each pod CIDR it must route and the gateway: its
// own rack's nodes directly, the other rack's through the other ToR
// (IPv6: any gateway, FRR may use the other ToR's link-local address).
func (e *env) expected(nodes []*node) map[*rack]map[netip.Prefix]netip.Addr {
	out := map[*rack]map[netip.Prefix]netip.Addr{}
	for _, r := range e.racks {
		m := map[netip.Prefix]netip.Addr{}
		for _, n := range nodes {
			if n.rack == r {
				m[n.pod4], m[n.pod6] = n.addr4, n.addr6
			} else {
				m[n.pod4], m[n.pod6] = n.rack.core4, netip.Addr{}
			}
		}
		out[r] = m
	}
	return out
}

// missing compares a ToR's kernel routes with what it must have.
func missing(got map[netip.Prefix][]netip.Addr, want map[netip.Prefix]netip.Addr) []string {
	var out []string
	for p, gw := range want {
		hops, ok := got[p]
		switch {
		case !ok:
			out = append(out, p.String()+" absent")
		case gw.IsValid() && !slices.Equal(hops, []netip.Addr{gw}):
			out = append(out, fmt.Sprintf("%s via %v, want %s", p, hops, gw))
		}
	}
	sort.Strings(out)
	return out
}

func (e *env) waitConverged(nodes []*node) {
	t := e.t
	want := e.expected(nodes)
	err := fabric.Eventually(context.Background(), waitTimeout, 100*time.Millisecond, func() error {
		for _, r := range e.racks {
			got, err := r.routes.bgpRoutes()
			if err != nil {
				return err
			}
			if m := missing(got, want[r]); len(m) > 0 {
				return fmt.Errorf("ToR of %s: %d of %d pod routes wrong, first %v", r.name, len(m), len(want[r]), m[:min(3, len(m))])
			}
		}
		return nil
	})
	if err != nil {
		for _, c := range e.replicas {
			t.Logf("%s (last 20 lines):\n%s", c.name, c.proc.LogTail(20))
		}
		t.Fatal(err)
	}
}

// podsReach checks that each machine's pod answers the others' pods, over
// IPv4 and IPv6, within and across racks, and that no node has a route to
// any pod network but its default route.
func (e *env) podsReach(t *testing.T, ms []*node) {
	ctx := context.Background()
	for _, n := range ms {
		for _, a := range []netip.Addr{n.podAddr4(), n.podAddr6()} {
			l, err := fabric.ListenIn(n.ns, netip.AddrPortFrom(a, 8080).String())
			if err != nil {
				t.Fatalf("listening on %s in %s: %v", a, n.ns, err)
			}
			name := n.name
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprintf(w, "pod on %s, from %s", name, r.RemoteAddr)
			})}
			go func() { _ = srv.Serve(l) }()
			t.Cleanup(func() { _ = srv.Close() })
		}
	}
	for _, pair := range [][2]int{{0, 1}, {1, 0}, {3, 2}, {0, 2}} {
		from, to := ms[pair[0]], ms[pair[1]]
		for _, fam := range []struct{ src, dst netip.Addr }{{from.podAddr4(), to.podAddr4()}, {from.podAddr6(), to.podAddr6()}} {
			url := "http://" + netip.AddrPortFrom(fam.dst, 8080).String() + "/"
			client := podClient(from.ns, fam.src)
			var out string
			err := fabric.Eventually(ctx, waitTimeout, 200*time.Millisecond, func() error {
				var err error
				out, err = get(ctx, client, url)
				return err
			})
			if err != nil {
				t.Errorf("pod %s on %s cannot reach pod %s on %s: %v", fam.src, from.name, fam.dst, to.name, err)
				continue
			}
			// The answer names the pod, and the pod saw the source pod's
			// own address: nothing on the way translated it.
			if !strings.HasPrefix(out, "pod on "+to.name+", from ") || !strings.Contains(out, fam.src.String()) {
				t.Errorf("pod %s on %s got %q from %s, want an answer from %s that saw %s", fam.src, from.name, out, url, to.name, fam.src)
			}
		}
	}
	// No static route: the nodes know only their default routes; the
	// ToRs' pod routes came over BGP (bgpRoutes reads proto bgp only).
	clusters := []netip.Prefix{netip.MustParsePrefix(cluster4), netip.MustParsePrefix(cluster6)}
	for _, n := range ms {
		for _, fam := range []string{"-4", "-6"} {
			out, err := n.ns.IP(ctx, "-o", fam, "route", "show")
			if err != nil {
				t.Fatal(err)
			}
			for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				dst := strings.Fields(line + " x")[0]
				if p, err := netip.ParsePrefix(dst); err == nil && slices.ContainsFunc(clusters, func(c netip.Prefix) bool { return c.Overlaps(p) }) {
					t.Errorf("node %s has a route to a pod network: %s", n.name, line)
				}
			}
		}
	}
}

// podClient is an HTTP client that connects from src, a pod address in
// ns.
func podClient(ns *fabric.Namespace, src netip.Addr) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return fabric.DialIn(ctx, ns, src, addr)
		},
	}}
}

func get(ctx context.Context, c *http.Client, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// removeNodes deletes the Nodes of gone one at a time, measuring how long
// until their pod routes have left both ToRs' kernel tables, and returns
// the nodes left.
func (e *env) removeNodes(t *testing.T, nodes, gone []*node) []*node {
	ctx := context.Background()
	var took []time.Duration
	for _, n := range gone {
		start := time.Now()
		if err := e.cp.Client.CoreV1().Nodes().Delete(ctx, n.name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		err := fabric.Eventually(ctx, withdrawBound, 2*time.Millisecond, func() error {
			for _, r := range e.racks {
				routes, err := r.routes.bgpRoutes()
				if err != nil {
					return err
				}
				for _, p := range []netip.Prefix{n.pod4, n.pod6} {
					if _, ok := routes[p]; ok {
						return fmt.Errorf("ToR of %s still routes %s", r.name, p)
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("node %s removed: %v", n.name, err)
		}
		took = append(took, time.Since(start))
		nodes = slices.DeleteFunc(nodes, func(x *node) bool { return x == n })
	}
	slices.Sort(took)
	t.Logf("node removed -> both pod routes (IPv4, IPv6) gone from both ToRs' kernel tables: %v (median %s, max %s; load average %s)",
		roundAll(took), took[len(took)/2].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond), loadAverage())
	// The others are untouched.
	e.waitConverged(nodes)
	return nodes
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

// gap is a sample in which a ToR lacked pod routes.
type gap struct {
	at      time.Duration
	rack    string
	missing []string
}

// sampler reads both ToRs' kernel tables every sampleEvery and records
// every sample in which a pod route is missing or wrong.
type sampler struct {
	mu      sync.Mutex
	samples int
	// maxSpacing is the longest time between two samples' starts.
	maxSpacing time.Duration
	gaps       []gap
	errs       []error
	cancel     context.CancelFunc
	done       chan struct{}
}

func (e *env) startSampler(want map[*rack]map[netip.Prefix]netip.Addr) *sampler {
	ctx, cancel := context.WithCancel(context.Background())
	s := &sampler{cancel: cancel, done: make(chan struct{})}
	begin := time.Now()
	go func() {
		defer close(s.done)
		tick := time.NewTicker(sampleEvery)
		defer tick.Stop()
		last := time.Now()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			s.mu.Lock()
			s.maxSpacing = max(s.maxSpacing, time.Since(last))
			s.mu.Unlock()
			last = time.Now()
			for _, r := range e.racks {
				got, err := r.routes.bgpRoutes()
				s.mu.Lock()
				if err != nil {
					if ctx.Err() == nil {
						s.errs = append(s.errs, err)
					}
				} else if m := missing(got, want[r]); len(m) > 0 {
					s.gaps = append(s.gaps, gap{at: time.Since(begin), rack: r.name, missing: m})
				}
				s.mu.Unlock()
			}
			s.mu.Lock()
			s.samples++
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *sampler) stop() (samples int, maxSpacing time.Duration, gaps []gap, errs []error) {
	s.cancel()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.samples, s.maxSpacing, s.gaps, s.errs
}

// restartKeepsRoutes restarts the replicas while sampling the ToRs' kernel
// tables: one at a time with SIGTERM (a rolling update), the leader with
// SIGKILL (a crash and a leader change), then both at once with SIGKILL
// (graceful restart keeps the routes in the ToRs meanwhile). No sample may
// miss a pod route.
func (e *env) restartKeepsRoutes(t *testing.T, nodes []*node) {
	want := e.expected(nodes)
	s := e.startSampler(want)
	phase := func(name string, f func()) {
		start := time.Now()
		f()
		t.Logf("%s: done in %s", name, time.Since(start).Round(time.Millisecond))
	}
	phase("rolling restart (SIGTERM, one replica at a time)", func() {
		for _, c := range e.replicas {
			c.proc.Stop()
			e.start(c)
			e.waitAnnounces(t, c, nodes)
		}
	})
	phase("the leader killed (SIGKILL) and started again", func() {
		leader := e.leader(t)
		leader.proc.Kill()
		e.start(leader)
		e.waitAnnounces(t, leader, nodes)
	})
	phase("every replica killed at once (SIGKILL) and started again", func() {
		for _, c := range e.replicas {
			c.proc.Kill()
		}
		for _, c := range e.replicas {
			e.start(c)
		}
		for _, c := range e.replicas {
			e.waitAnnounces(t, c, nodes)
		}
		// Why none went away: each replica opened its sessions (whose
		// End-of-RIB ends the routers' graceful restart) only once its
		// routes were in the speaker.
		for _, c := range e.replicas {
			var synced, up int
			// The log may lag the sessions: wait for both lines.
			err := fabric.Eventually(context.Background(), waitTimeout, 100*time.Millisecond, func() error {
				log := c.proc.Log()
				synced, up = strings.Index(log, "First route sync"), strings.Index(log, "BGP session established")
				if synced < 0 || up < 0 {
					return fmt.Errorf("%s: log offsets of the first route sync %d, of the first session %d", c.name, synced, up)
				}
				return nil
			})
			if err != nil {
				t.Error(err)
			} else if up < synced {
				t.Errorf("%s: a BGP session was established (log offset %d) before the first route sync (%d)", c.name, up, synced)
			}
		}
	})
	samples, spacing, gaps, errs := s.stop()
	t.Logf("%d samples of both ToRs' kernel tables, every %s (at most %s apart), %d with a pod route missing or wrong (load average %s)",
		samples, sampleEvery, spacing.Round(time.Millisecond), len(gaps), loadAverage())
	for _, err := range errs {
		t.Errorf("reading a ToR's kernel table: %v", err)
	}
	for i, g := range gaps {
		if i == 10 {
			t.Errorf("... and %d more", len(gaps)-10)
			break
		}
		t.Errorf("at %s, the ToR of %s lacked %d pod routes: %v", g.at.Round(time.Millisecond), g.rack, len(g.missing), g.missing[:min(4, len(g.missing))])
	}
	if samples < 10 {
		t.Errorf("only %d samples: the restarts were not watched", samples)
	}
}

// leader is the replica holding the lease, by its log.
func (e *env) leader(t *testing.T) *replica {
	var found *replica
	err := fabric.Eventually(context.Background(), waitTimeout, 100*time.Millisecond, func() error {
		for _, c := range e.replicas {
			if strings.Contains(strings.ToLower(c.proc.Log()), "successfully acquired lease") {
				found = c
				return nil
			}
		}
		return fmt.Errorf("no replica says it holds the lease")
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// waitAnnounces waits until both ToRs hold, from replica c, a path for
// each pod CIDR of their rack's nodes: c announces them all again.
func (e *env) waitAnnounces(t *testing.T, c *replica, nodes []*node) {
	ctx := context.Background()
	err := fabric.Eventually(ctx, waitTimeout, 100*time.Millisecond, func() error {
		for _, r := range e.racks {
			for _, afi := range []string{"ipv4", "ipv6"} {
				var out struct {
					Routes map[string]any `json:"routes"`
				}
				if err := r.frr.VtyshJSON(ctx, fmt.Sprintf("show bgp %s unicast neighbors %s routes json", afi, c.addr4), &out); err != nil {
					return err
				}
				for _, n := range nodes {
					p := n.pod4
					if afi == "ipv6" {
						p = n.pod6
					}
					if _, ok := out.Routes[p.String()]; n.rack == r && !ok {
						return fmt.Errorf("ToR of %s has no %s from %s", r.name, p, c.name)
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s after its restart: %v\n%s", c.name, err, c.proc.LogTail(30))
	}
}
