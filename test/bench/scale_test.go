//go:build bench

package bench

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/baremetal-ccm/baremetal-ccm/provider/service"
	"github.com/baremetal-ccm/baremetal-ccm/test/bgprouter"
	"github.com/baremetal-ccm/baremetal-ccm/test/ccm"
	"github.com/baremetal-ccm/baremetal-ccm/test/controlplane"
	"github.com/baremetal-ccm/baremetal-ccm/test/kubelet"
	"github.com/baremetal-ccm/baremetal-ccm/test/lbservice"
	"github.com/baremetal-ccm/baremetal-ccm/test/proc"
)

// The scale of issue 18: 1,000 Nodes and 10,000 LoadBalancer Services.
// BMCCM_BENCH_SCALE_DIVISOR divides every count, for a quick run of the
// benchmark's machinery (its figures mean nothing then).
var (
	scaleNodes = 1000 / scaleDivisor()
	// scaleCluster IPv6 Services with externalTrafficPolicy Cluster: each
	// VIP via maxPathsPerPrefix nodes.
	scaleCluster = 7000 / scaleDivisor()
	// scaleLocal IPv6 Services with externalTrafficPolicy Local, each with
	// an EndpointSlice of localEndpoints ready endpoints on as many nodes.
	scaleLocal = 2000 / scaleDivisor()
	// scaleDual dual-stack Services: the IPv4 documentation ranges bound
	// how many IPv4 VIPs there can be.
	scaleDual = 250 / scaleDivisor()
	// scaleShared IPv6 VIPs, each held by sharers Services on other ports.
	scaleShared = 250 / scaleDivisor()
)

const (
	localEndpoints = 3
	sharers        = 3
)

// scaleServiceCount is how many Services the mix has.
func scaleServiceCount() int { return scaleCluster + scaleLocal + scaleDual + scaleShared*sharers }

func scaleDivisor() int {
	if d, err := strconv.Atoi(os.Getenv("BMCCM_BENCH_SCALE_DIVISOR")); err == nil && d > 0 {
		return d
	}
	return 1
}

// The replicas' BGP source addresses and the routers' addresses, on the
// loopback device; the nodes are 127.0.1.1 onwards.
const (
	replicaA = "127.0.0.2"
	replicaB = "127.0.0.3"
	router1  = "127.0.0.1"
	router2  = "127.0.0.4"
)

// scaleV4Pool holds the dual-stack Services' IPv4 VIPs.
var scaleV4Pool = netip.MustParsePrefix("203.0.113.0/24")

// scaleNode is node i: its name, its InternalIPs (an IPv4 one on the
// loopback device, where the healthz farm serves its kube-proxy healthz, and an
// IPv6 one, the next hop of the IPv6 VIPs).
func scaleNode(i int) (name string, v4, v6 netip.Addr) {
	return fmt.Sprintf("node-%04d", i),
		netip.AddrFrom4([4]byte{127, 0, byte(1 + i/250), byte(1 + i%250)}),
		netip.MustParseAddr(fmt.Sprintf("2001:db8:1::%x", i+1))
}

// scaleLab is the running benchmark: the control plane, two routers, the
// nodes' healthz servers and the CCM replicas.
type scaleLab struct {
	cl         *cluster
	routers    []*bgprouter.Router
	healthPort int
	healthz    *healthzFarm
	healthAddr map[string]string // by node name: its healthz's host:port
	dir        string
	replicas   map[string]*ccm.Process // by BGP source address
	ports      map[string]int          // secure port by BGP source address
}

// scaleConfig is a replica's cloud config: one rack holding every node,
// one pool of both families, both routers as peers from source.
func (l *scaleLab) scaleConfig(source string) string {
	cfg := fmt.Sprintf(`region: lab
racks:
- name: rack-a
  subnets: [127.0.0.0/16, 2001:db8:1::/64]
pools:
- name: public
  addresses: [%s, %s]
bgp:
  asn: 64512
  routerID: 192.0.2.1
  peers:
`, v6Pool, scaleV4Pool)
	for i, r := range l.routers {
		cfg += fmt.Sprintf("  - name: tor-%d\n    address: %s\n    port: %d\n    asn: %d\n    localAddress: %s\n", i+1, r.Address, r.Port, r.ASN, source)
	}
	return cfg + fmt.Sprintf("healthCheck:\n  port: %d\n", l.healthPort)
}

// startReplica starts the CCM replica whose BGP sessions come from source,
// with leader election and the shipped defaults otherwise, and its secure
// port serving /debug/pprof to the admin.
func (l *scaleLab) startReplica(t *testing.T, source string) *ccm.Process {
	t.Helper()
	path := filepath.Join(l.dir, "cloud-"+source+".yaml")
	ccm.WriteConfig(t, path, l.scaleConfig(source))
	if l.ports[source] == 0 {
		l.ports[source] = freePort(t)
	}
	args := append([]string{
		"--leader-elect=true", "--bgp-router-id=" + strings.Replace(source, "127.0.0", "192.0.2", 1),
		"--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", l.ports[source]),
		"--authentication-kubeconfig=" + l.cl.cp.Kubeconfig, "--authorization-kubeconfig=" + l.cl.cp.Kubeconfig, "--profiling=true",
	}, strings.Fields(os.Getenv("BMCCM_BENCH_CCM_ARGS"))...)
	p := ccm.Start(t, ccm.Options{Kubeconfig: l.cl.cp.Kubeconfig, CloudConfig: path, Args: args, Env: []string{daemonSetMemLimit(t)}})
	l.replicas[source] = p
	return p
}

// daemonSetMemLimit is the Go memory limit a replica sets itself in the
// DaemonSet's pod, as GOMEMLIMIT: memoryLimitShare of the manifest's
// memory limit (see the binary's memlimit.go). The benchmark's replicas
// run in no such cgroup, so it is given to them.
func daemonSetMemLimit(t *testing.T) string {
	t.Helper()
	root, err := controlplane.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "manifests", "daemonset.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var ds appsv1.DaemonSet
	if err := yaml.Unmarshal(b, &ds); err != nil {
		t.Fatalf("manifests/daemonset.yaml: %v", err)
	}
	limit := ds.Spec.Template.Spec.Containers[0].Resources.Limits.Memory()
	if limit.IsZero() {
		t.Fatal("manifests/daemonset.yaml: the container has no memory limit")
	}
	return fmt.Sprintf("GOMEMLIMIT=%d", int64(memoryLimitShare*float64(limit.Value())))
}

// memoryLimitShare is the binary's (memlimit.go).
const memoryLimitShare = 0.9

// startScaleLab runs the control plane, the routers, the 1,000 nodes'
// healthz servers, registers the Nodes and starts replica A; it returns
// once A has initialised every Node.
func startScaleLab(t *testing.T) *scaleLab {
	t.Helper()
	cp := startControlPlane(t)
	l := &scaleLab{
		cl: &cluster{cp: cp, c: cp.Client}, healthPort: freePort(t), healthAddr: map[string]string{},
		dir: t.TempDir(), replicas: map[string]*ccm.Process{}, ports: map[string]int{},
	}
	neighbors := []string{replicaA, replicaB}
	l.routers = []*bgprouter.Router{
		bgprouter.Start(t, bgprouter.Options{Address: router1, ASN: 64513, Neighbors: neighbors, NeighborASN: 64512}),
		bgprouter.Start(t, bgprouter.Options{Address: router2, ASN: 64514, Neighbors: neighbors, NeighborASN: 64512}),
	}
	addrs := make([]string, 0, scaleNodes)
	for i := range scaleNodes {
		name, v4, _ := scaleNode(i)
		l.healthAddr[name] = fmt.Sprintf("%s:%d", v4, l.healthPort)
		addrs = append(addrs, l.healthAddr[name])
	}
	l.healthz = startHealthzFarm(t, addrs)
	start := time.Now()
	parallel(t, scaleNodes, 32, func(ctx context.Context, i int) error {
		name, v4, v6 := scaleNode(i)
		return kubelet.RegisterReady(ctx, l.cl.c, name, v4.String()+","+v6.String())
	})
	t.Logf("%d Nodes registered in %s", scaleNodes, time.Since(start).Round(time.Millisecond))
	l.startReplica(t, replicaA)
	for _, r := range l.routers {
		r.WaitEstablishedWith(t, setupTimeout, replicaA)
	}
	start = time.Now()
	l.cl.waitNodesInitialised(t, scaleNodes)
	t.Logf("%d Nodes initialised by the CCM in %s", scaleNodes, time.Since(start).Round(time.Millisecond))
	return l
}

// scaleServices are the 10,000 Services of the mix, and the EndpointSlices
// of the Local ones.
func scaleServices() ([]*v1.Service, []*discoveryv1.EndpointSlice) {
	var svcs []*v1.Service
	var epSlices []*discoveryv1.EndpointSlice
	// The VIPs reach kube-proxy on the nodes without a NodePort; with one
	// each, 10,000 Services would not fit the 2,768 ports of the default
	// range (the Local ones' health check ports still come from it).
	noNodePorts := func(s *v1.Service) { s.Spec.AllocateLoadBalancerNodePorts = ptr.To(false) }
	v6 := func(s *v1.Service) { lbservice.SingleStack(v1.IPv6Protocol)(s); noNodePorts(s) }
	for i := range scaleCluster {
		svcs = append(svcs, lbservice.New(fmt.Sprintf("cluster-%04d", i), 80, v6))
	}
	for i := range scaleLocal {
		name := fmt.Sprintf("local-%04d", i)
		svcs = append(svcs, lbservice.New(name, 80, v6, func(s *v1.Service) {
			s.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
		}))
		slice := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: name + "-1", Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
			AddressType: discoveryv1.AddressTypeIPv6,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(v1.ProtocolTCP)}},
		}
		for j := range localEndpoints {
			node, _, _ := scaleNode((i*7 + j*331) % scaleNodes)
			slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{
				Addresses:  []string{podAddr(i, j).String()},
				Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
				NodeName:   ptr.To(node),
			})
		}
		epSlices = append(epSlices, slice)
	}
	for i := range scaleDual {
		svcs = append(svcs, lbservice.New(fmt.Sprintf("dual-%04d", i), 80, lbservice.DualStack, noNodePorts))
	}
	for i := range scaleShared {
		for j := range sharers {
			svcs = append(svcs, lbservice.New(fmt.Sprintf("shared-%04d-%d", i, j), int32(80+j), v6, func(s *v1.Service) {
				s.Annotations[service.AnnotationAllowSharedIP] = fmt.Sprintf("share-%04d", i)
			}))
		}
	}
	return svcs, epSlices
}

// podAddr is endpoint j of Local Service i, in 2001:db8:2::/64 (the
// apiserver wants it in canonical form, as netip writes it).
func podAddr(i, j int) netip.Addr {
	a := netip.MustParseAddr("2001:db8:2::").As16()
	a[12], a[13], a[15] = byte(i>>8), byte(i), byte(j+1)
	return netip.AddrFrom16(a)
}

// createScaleServices creates the Services and EndpointSlices from 32
// workers.
func (l *scaleLab) createScaleServices(t *testing.T, svcs []*v1.Service, epSlices []*discoveryv1.EndpointSlice) {
	t.Helper()
	parallel(t, len(svcs), 32, func(ctx context.Context, i int) error {
		_, err := l.cl.c.CoreV1().Services("default").Create(ctx, svcs[i], metav1.CreateOptions{})
		return err
	})
	parallel(t, len(epSlices), 32, func(ctx context.Context, i int) error {
		_, err := l.cl.c.DiscoveryV1().EndpointSlices("default").Create(ctx, epSlices[i], metav1.CreateOptions{})
		return err
	})
}

// TestBenchScale measures issue 18's (a)–(f) at 1,000 Nodes and 10,000
// Services with two routers: the figures are logged, docs/benchmarks.md
// keeps them. Each step waits for exactly the state it measures.
func TestBenchScale(t *testing.T) {
	l := startScaleLab(t)
	t.Logf("load average before: %s", proc.LoadAverage())

	svcs, eps := scaleServices()
	start := time.Now()
	l.createScaleServices(t, svcs, eps)
	created := time.Since(start)
	addrs := l.waitAllAddresses(t, len(svcs))
	want := wantPaths(addrs)
	t.Logf("%d Services (%d VIPs) created in %s; all have addresses after %s", len(svcs), len(want), created.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	l.waitConverged(t, replicaA, want, "every VIP announced after the creation")
	t.Logf("every VIP with all its paths at both routers after %s", time.Since(start).Round(time.Millisecond))
	l.waitAnnouncedConditions(t, len(svcs))

	t.Run("c,f steady state", func(t *testing.T) { l.measureSteadyState(t, replicaA) })
	t.Run("b node fails", func(t *testing.T) { l.measureNodeFailure(t, want) })
	t.Run("d one more Service", func(t *testing.T) { l.measureOneMore(t, 100) })
	// (d) added VIPs: the table to reach from here on.
	addrs = l.waitAllAddresses(t, len(svcs)+100)
	want = wantPaths(addrs)
	t.Run("a cold start", func(t *testing.T) { l.measureColdStart(t, want) })
	t.Run("e SIGKILL and restart", func(t *testing.T) { l.measureKillRestart(t, want, addrs) })
	t.Logf("load average after: %s", proc.LoadAverage())
}

// wantPaths is, per VIP, how many paths each router must get from a
// replica: localEndpoints for a Local Service's, maxPathsPerPrefix (of
// 1,000 eligible nodes) for the others.
func wantPaths(addrs map[string][]string) map[netip.Prefix]int {
	want := map[netip.Prefix]int{}
	for name, ips := range addrs {
		n := wantHops(scaleNodes)
		if strings.HasPrefix(name, "local-") {
			n = localEndpoints
		}
		for _, ip := range ips {
			a := netip.MustParseAddr(ip)
			want[netip.PrefixFrom(a, a.BitLen())] = n
		}
	}
	return want
}

// bulkTimeout bounds the creation of the benchmark's objects, which is
// not measured: 10,000 Services take 5 to 11 minutes through the
// apiserver on a quiet 2-core machine, and over 10 on a busy one.
const bulkTimeout = 40 * time.Minute

// parallel runs f for 0..n-1 from workers goroutines and fails the test
// with the first error.
func parallel(t *testing.T, n, workers int, f func(ctx context.Context, i int) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bulkTimeout)
	defer cancel()
	jobs := make(chan int)
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range jobs {
				if err := f(ctx, i); err != nil {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("item %d: %w", i, err)
						cancel()
					}
					mu.Unlock()
				}
			}
		})
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	if first != nil {
		t.Fatal(first)
	}
}
