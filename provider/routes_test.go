package provider

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	cloudprovider "k8s.io/cloud-provider"

	"github.com/baremetal-ccm/baremetal-ccm/bgp"
	"github.com/baremetal-ccm/baremetal-ccm/provider/config"
)

// fakeRouteSpeaker keeps the routes it is handed.
type fakeRouteSpeaker struct {
	mu     sync.Mutex
	routes []bgp.Route
	sets   int
}

func (f *fakeRouteSpeaker) SetRoutes(_ context.Context, routes []bgp.Route) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.routes = slices.Clone(routes)
	f.sets++
	return nil
}

func (f *fakeRouteSpeaker) setCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sets
}

func (f *fakeRouteSpeaker) Routes() []bgp.Route {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.routes)
}

type routesEnv struct {
	c      *cloud
	sp     *fakeRouteSpeaker
	warn   *fakeWarner
	client kubernetes.Interface
}

// routesTestWait bounds the waits for something the syncer will do: the
// syncer's confirmations in CreateRoute and DeleteRoute, and waitRoutes.
// Generous, for a loaded machine: they end as soon as it is done.
const routesTestWait = time.Minute

// startRoutes runs a route syncer on a fake clientset holding objs, with
// routesConfig, and a cloud that answers the route controller from it.
func startRoutes(t *testing.T, objs ...runtime.Object) *routesEnv {
	t.Helper()
	e := &routesEnv{c: &cloud{}, sp: &fakeRouteSpeaker{}, warn: &fakeWarner{}, client: fake.NewClientset(objs...)}
	e.c.cfg.Store(routesTestConfig(t, ""))
	factory := informers.NewSharedInformerFactory(e.client, 0)
	e.c.routeSync = newRouteSyncer(factory, routeSyncerDeps{
		config:  e.c.config,
		speaker: func() routeSpeaker { return e.sp },
		vips:    func() []netip.Prefix { return nil },
		warn:    e.warn,
	})
	e.c.routeSync.confirmTimeout = routesTestWait
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	factory.Start(ctx.Done())
	go e.c.routeSync.run(ctx)
	return e
}

// untilBound runs call, which waits for a confirmation that never comes,
// with a short bound on the wait, and returns its error.
func (e *routesEnv) untilBound(call func() error) error {
	e.c.routeSync.confirmTimeout = 2 * time.Second
	defer func() { e.c.routeSync.confirmTimeout = routesTestWait }()
	return call()
}

// waitRoutes waits until the speaker holds exactly want (routeStrings).
func (e *routesEnv) waitRoutes(t *testing.T, what string, want []string) {
	t.Helper()
	var got []string
	err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, routesTestWait, true, func(context.Context) (bool, error) {
		got = routeStrings(e.sp.Routes())
		return cmp.Equal(want, got), nil
	})
	if err != nil {
		t.Fatalf("%s: speaker routes %v, want %v", what, got, want)
	}
}

func podRoute(node, cidr string) *cloudprovider.Route {
	return &cloudprovider.Route{TargetNode: types.NodeName(node), DestinationCIDR: cidr}
}

func TestRoutesOffered(t *testing.T) {
	c := &cloud{}
	c.cfg.Store(routesTestConfig(t, ""))
	if r, ok := c.Routes(); !ok || r == nil {
		t.Errorf("Routes() = %v, %v with a routes: section, want the cloud", r, ok)
	}
	c.cfg.Store(routesTestConfig(t, "  enabled: false\n"))
	if r, ok := c.Routes(); ok || r != nil {
		t.Errorf("Routes() = %v, %v with routes turned off, want nil, false", r, ok)
	}
	noSection, err := config.Parse([]byte("region: lab\n"))
	if err != nil {
		t.Fatal(err)
	}
	c.cfg.Store(noSection)
	if _, ok := c.Routes(); ok {
		t.Errorf("Routes() offered without a routes: section: existing installs must not start a route controller")
	}
}

// TestRouteControllerContract drives the cloud as the route controller
// does: ListRoutes shows what every replica announces from the Nodes,
// CreateRoute and DeleteRoute confirm (and say why not), and nothing the
// route controller calls changes a route the Nodes ask for.
func TestRouteControllerContract(t *testing.T) {
	ctx := context.Background()
	e := startRoutes(t,
		// The IPv6 pod CIDR is spelled as nobody would: ListRoutes must
		// give it back as the Node has it.
		podNode("a1", 0, []string{"198.51.100.11", "2001:db8:1::11"}, "203.0.113.128/28", "2001:db8:100:0::/64"),
		podNode("v4only", 1, []string{"198.51.100.12"}, "203.0.113.144/28", "2001:db8:100:1::/64"),
	)
	a1Routes := []string{"2001:db8:100::/64 a1 2001:db8:1::11 rack-a", "203.0.113.128/28 a1 198.51.100.11 rack-a", "203.0.113.144/28 v4only 198.51.100.12 rack-a"}
	e.waitRoutes(t, "first sync", a1Routes)

	listed, err := e.c.ListRoutes(ctx, "kubernetes")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range listed {
		got = append(got, string(r.TargetNode)+" "+r.DestinationCIDR)
		if r.Blackhole || r.EnableNodeAddresses {
			t.Errorf("ListRoutes: %+v: want no blackhole and no node addresses (an address change is ours to apply, in place)", r)
		}
	}
	slices.Sort(got)
	if diff := cmp.Diff([]string{"a1 2001:db8:100:0::/64", "a1 203.0.113.128/28", "v4only 203.0.113.144/28"}, got); diff != "" {
		t.Errorf("ListRoutes (-want +got):\n%s", diff)
	}

	for range 2 { // idempotent
		if err := e.c.CreateRoute(ctx, "kubernetes", "uid", podRoute("a1", "203.0.113.128/28")); err != nil {
			t.Errorf("CreateRoute(an announced route) = %v", err)
		}
	}
	err = e.c.CreateRoute(ctx, "kubernetes", "uid", podRoute("v4only", "2001:db8:100:1::/64"))
	if err == nil || !strings.Contains(err.Error(), "no IPv6 address") {
		t.Errorf("CreateRoute(a pod CIDR without an address of its family) = %v, want why", err)
	}
	if _, ok := e.warn.active["Node/v4only/"+reasonPodCIDRNotRouted]; !ok {
		t.Errorf("no %s warning on Node v4only: %v", reasonPodCIDRNotRouted, e.warn.active)
	}
	err = e.untilBound(func() error {
		return e.c.CreateRoute(ctx, "kubernetes", "uid", podRoute("ghost", "203.0.113.160/28"))
	})
	if err == nil || !strings.Contains(err.Error(), "not in this replica's view") {
		t.Errorf("CreateRoute(a Node this replica never sees) = %v, want a timeout that says so", err)
	}

	// The route controller's informer can be ahead: CreateRoute waits for
	// this replica to see the Node.
	go func() {
		time.Sleep(200 * time.Millisecond)
		_, _ = e.client.CoreV1().Nodes().Create(ctx, podNode("b1", 2, []string{"198.51.100.140"}, "203.0.113.160/28"), metav1.CreateOptions{})
	}()
	if err := e.c.CreateRoute(ctx, "kubernetes", "uid", podRoute("b1", "203.0.113.160/28")); err != nil {
		t.Errorf("CreateRoute(a Node this replica sees a moment later) = %v", err)
	}

	// DeleteRoute withdraws nothing the Nodes still ask for.
	sets := e.sp.setCount()
	err = e.untilBound(func() error {
		return e.c.DeleteRoute(ctx, "kubernetes", podRoute("a1", "203.0.113.128/28"))
	})
	if err == nil || !strings.Contains(err.Error(), "the Node still has it") {
		t.Errorf("DeleteRoute(a route its Node still has) = %v, want a refusal", err)
	}
	if !slices.Contains(routeStrings(e.sp.Routes()), "203.0.113.128/28 a1 198.51.100.11 rack-a") {
		t.Errorf("DeleteRoute withdrew a route its Node still has")
	}
	if e.sp.setCount() == sets {
		t.Errorf("DeleteRoute did not ask for a fresh sync")
	}
	if err := e.c.DeleteRoute(ctx, "kubernetes", podRoute("nobody", "203.0.113.224/28")); err != nil {
		t.Errorf("DeleteRoute(a route never announced) = %v", err)
	}
	if err := e.client.CoreV1().Nodes().Delete(ctx, "a1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, cidr := range []string{"203.0.113.128/28", "2001:db8:100:0::/64"} {
		if err := e.c.DeleteRoute(ctx, "kubernetes", podRoute("a1", cidr)); err != nil {
			t.Errorf("DeleteRoute(%s of a deleted Node) = %v", cidr, err)
		}
	}
	e.waitRoutes(t, "a1 deleted", []string{"203.0.113.144/28 v4only 198.51.100.12 rack-a", "203.0.113.160/28 b1 198.51.100.140 rack-b"})
}

// TestRoutesFollowNodes: a route follows its Node's address in place and
// leaves with its pod CIDR; turning routes off withdraws every one, and
// CreateRoute then says why.
func TestRoutesFollowNodes(t *testing.T) {
	ctx := context.Background()
	e := startRoutes(t, podNode("a1", 0, []string{"198.51.100.11"}, "203.0.113.128/28"))
	e.waitRoutes(t, "first sync", []string{"203.0.113.128/28 a1 198.51.100.11 rack-a"})

	n, err := e.client.CoreV1().Nodes().Get(ctx, "a1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Status.Addresses = []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: "198.51.100.140"}}
	if _, err := e.client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitRoutes(t, "new address, in rack-b", []string{"203.0.113.128/28 a1 198.51.100.140 rack-b"})

	n.Spec.PodCIDRs, n.Spec.PodCIDR = nil, ""
	if _, err := e.client.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitRoutes(t, "pod CIDR released", nil)

	n.Spec.PodCIDRs = []string{"203.0.113.144/28"}
	if _, err := e.client.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitRoutes(t, "a new pod CIDR", []string{"203.0.113.144/28 a1 198.51.100.140 rack-b"})

	e.c.cfg.Store(routesTestConfig(t, "  enabled: false\n"))
	e.c.routeSync.Trigger()
	e.waitRoutes(t, "routes turned off", nil)
	err = e.c.CreateRoute(ctx, "kubernetes", "uid", podRoute("a1", "203.0.113.144/28"))
	if err == nil || !strings.Contains(err.Error(), "turned off") {
		t.Errorf("CreateRoute with routes turned off = %v, want why", err)
	}
}
