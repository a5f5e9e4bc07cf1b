package integration

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	cloudproviderapi "k8s.io/cloud-provider/api"

	"github.com/baremetal-ccm/baremetal-ccm/test/bgprouter"
	"github.com/baremetal-ccm/baremetal-ccm/test/ccm"
	"github.com/baremetal-ccm/baremetal-ccm/test/controlplane"
	"github.com/baremetal-ccm/baremetal-ccm/test/kubelet"
)

// The pod networks of the route tests: documentation ranges the nodes'
// own subnets (198.51.100.0/24, 2001:db8:1::/64) do not overlap.
var routeClusterCIDRs = []string{"203.0.113.128/25", "2001:db8:100::/56"}

func routesConfig(r *bgprouter.Router) string {
	return `
region: lab
racks:
- name: rack-a
  subnets: [198.51.100.0/24, 2001:db8:1::/64]
pools:
- name: public
  addresses: [203.0.113.0/28]
` + r.SpeakerConfig() + `routes:
  clusterCIDRs: [` + strings.Join(routeClusterCIDRs, ", ") + `]
`
}

// podCIDRSource gives Nodes their pod CIDRs: kube-controller-manager's
// node IPAM when its binary is there, else the test in its place.
type podCIDRSource struct {
	kcm  bool
	next int // the test's next /28 and /64
}

func startPodCIDRSource(t *testing.T, cp *controlplane.ControlPlane) *podCIDRSource {
	t.Helper()
	_, err := cp.StartNodeIPAMT(t, controlplane.NodeIPAMOptions{ClusterCIDRs: routeClusterCIDRs, MaskSize4: 28, MaskSize6: 64})
	if errors.Is(err, controlplane.ErrNoControllerManager) {
		t.Logf("no kube-controller-manager binary (%v): the test writes the pod CIDRs itself", err)
		return &podCIDRSource{}
	}
	t.Log("pod CIDRs from kube-controller-manager's node IPAM")
	return &podCIDRSource{kcm: true}
}

// podCIDRs waits for the Node's pod CIDRs (or writes them) and returns
// them, IPv4 first.
func (s *podCIDRSource) podCIDRs(t *testing.T, c kubernetes.Interface, node string) []string {
	t.Helper()
	if !s.kcm {
		i := s.next
		s.next++
		cidrs := []string{fmt.Sprintf("203.0.113.%d/28", 128+16*i), fmt.Sprintf("2001:db8:100:%x::/64", i)}
		kubelet.UpdateNode(t, c, node, func(n *v1.Node) { n.Spec.PodCIDR, n.Spec.PodCIDRs = cidrs[0], cidrs })
		return cidrs
	}
	var cidrs []string
	waitNode(t, c, node, "pod CIDRs from the node IPAM", func(n *v1.Node) bool {
		cidrs = n.Spec.PodCIDRs
		return len(cidrs) == 2
	})
	return cidrs
}

// waitTable waits until the router's next hops for the given prefixes are
// want (an empty list: withdrawn). Other prefixes are not checked.
func waitTable(t *testing.T, r *bgprouter.Router, what string, want map[string][]string) {
	t.Helper()
	var got map[netip.Prefix][]netip.Addr
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, waitTimeout, true, func(context.Context) (bool, error) {
		var err error
		if got, err = r.Union(); err != nil {
			return false, err
		}
		for p, hops := range want {
			if fmt.Sprint(got[netip.MustParsePrefix(p)]) != fmt.Sprint(addrList(hops)) {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("%s: router table %v, want %v", what, got, want)
	}
}

// nodeEvent waits for an Event on the Node with this reason and returns
// its message.
func nodeEvent(t *testing.T, c kubernetes.Interface, node, reason string) string {
	t.Helper()
	var msg string
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, waitTimeout, true, func(ctx context.Context) (bool, error) {
		evs, err := c.CoreV1().Events(metav1.NamespaceAll).List(ctx, metav1.ListOptions{FieldSelector: fields.Set{"involvedObject.kind": "Node", "involvedObject.name": node, "reason": reason}.String()})
		if err != nil || len(evs.Items) == 0 {
			return false, nil
		}
		msg = evs.Items[0].Message
		return true, nil
	})
	if err != nil {
		t.Fatalf("node %s: no %s event", node, reason)
	}
	return msg
}

func networkUnavailable(n *v1.Node) (v1.ConditionStatus, string) {
	for _, c := range n.Status.Conditions {
		if c.Type == v1.NodeNetworkUnavailable {
			return c.Status, c.Reason
		}
	}
	return "", ""
}

// TestPodRoutes runs the real binary with routes on, the upstream route
// controller, kube-controller-manager's node IPAM and a BGP router: each
// Node's pod CIDRs reach the router via the Node, dual-stack; a route
// follows its Node's address and leaves with the Node; a Node without an
// address of a pod CIDR's family, or with a hostile pod CIDR, gets a
// Warning and changes no other Node's routes.
func TestPodRoutes(t *testing.T) {
	cp := controlplane.StartT(t)
	c := cp.Client
	router := bgprouter.Start(t, bgprouter.Options{ASN: 65001, Neighbors: []string{"127.0.0.1"}, NeighborASN: 64512})
	cidrs := startPodCIDRSource(t, cp)
	cloudConfig := filepath.Join(t.TempDir(), "cloud.yaml")
	writeFile(t, cloudConfig, routesConfig(router))
	proc := ccm.Start(t, ccm.Options{Kubeconfig: cp.Kubeconfig, CloudConfig: cloudConfig, Args: []string{
		// --cluster-cidr defaults to routes.clusterCIDRs.
		"--route-reconciliation-period=1s",
		"--node-status-update-frequency=1s",
	}})
	router.WaitEstablished(t, waitTimeout)

	registerNode(t, c, "node-1", "198.51.100.11,2001:db8:1::11")
	registerNode(t, c, "node-2", "198.51.100.12,2001:db8:1::12")
	pods1, pods2 := cidrs.podCIDRs(t, c, "node-1"), cidrs.podCIDRs(t, c, "node-2")
	table := map[string][]string{
		pods1[0]: {"198.51.100.11"}, pods1[1]: {"2001:db8:1::11"},
		pods2[0]: {"198.51.100.12"}, pods2[1]: {"2001:db8:1::12"},
	}
	waitTable(t, router, "two dual-stack nodes", table)
	// The route controller found the routes in place (ListRoutes) or had
	// them confirmed (CreateRoute).
	for _, name := range []string{"node-1", "node-2"} {
		waitNode(t, c, name, "NetworkUnavailable=False, RouteCreated", func(n *v1.Node) bool {
			st, reason := networkUnavailable(n)
			return st == v1.ConditionFalse && reason == "RouteCreated"
		})
	}

	// A kubelet restarted with another --node-ip: the CCM's node
	// controller writes the new address, and the route follows in place.
	kubelet.UpdateNode(t, c, "node-2", func(n *v1.Node) {
		n.Annotations[cloudproviderapi.AnnotationAlphaProvidedIPAddr] = "198.51.100.22,2001:db8:1::22"
	})
	table[pods2[0]], table[pods2[1]] = []string{"198.51.100.22"}, []string{"2001:db8:1::22"}
	waitTable(t, router, "node-2 renumbered", table)

	// A node without an IPv6 address: its IPv4 pod CIDR is routed, its
	// IPv6 one is not, and it is told why.
	registerNode(t, c, "node-3", "198.51.100.13")
	pods3 := cidrs.podCIDRs(t, c, "node-3")
	table[pods3[0]] = []string{"198.51.100.13"}
	waitTable(t, router, "node-3, IPv4 only", table)
	if msg := nodeEvent(t, c, "node-3", "PodCIDRNotRouted"); !strings.Contains(msg, "no IPv6 address") || !strings.Contains(msg, pods3[1]) {
		t.Errorf("node-3's PodCIDRNotRouted event says %q, want the missing IPv6 address and %s", msg, pods3[1])
	}
	waitNode(t, c, "node-3", "NetworkUnavailable=True (the route controller's CreateRoute failed, with our reason)", func(n *v1.Node) bool {
		st, _ := networkUnavailable(n)
		return st == v1.ConditionTrue
	})

	// Hostile pod CIDRs on Nodes someone created with them: a default
	// route, one overlapping the pools, one overlapping node-1's.
	for i, bad := range []string{"0.0.0.0/0", "203.0.113.0/28", pods1[0]} {
		name := fmt.Sprintf("hostile-%d", i)
		n := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1.NodeSpec{PodCIDR: bad, PodCIDRs: []string{bad}}}
		if _, err := c.CoreV1().Nodes().Create(context.Background(), n, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating node %s with pod CIDR %s: %v", name, bad, err)
		}
		n, err := c.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		n.Status.Addresses = []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: fmt.Sprintf("198.51.100.%d", 50+i)}}
		if _, err := c.CoreV1().Nodes().UpdateStatus(context.Background(), n, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		msg := nodeEvent(t, c, name, "PodCIDRNotRouted")
		for _, want := range []string{bad, "not announced"} {
			if !strings.Contains(msg, want) {
				t.Errorf("%s (pod CIDR %s): event %q, want it to contain %q", name, bad, msg, want)
			}
		}
		table[bad] = nil
		if bad == pods1[0] {
			table[bad] = []string{"198.51.100.11"}
		}
	}
	waitTable(t, router, "hostile pod CIDRs change nothing", table)
	got, err := router.Union()
	if err != nil {
		t.Fatal(err)
	}
	if hops := got[netip.MustParsePrefix("0.0.0.0/0")]; len(hops) > 0 {
		t.Errorf("a default route reached the router via %v", hops)
	}

	// A node removed: its routes leave; the others stay. (hostile-2
	// goes first: once node-1 is gone it would be the older claimant of
	// node-1's pod CIDR.)
	for _, name := range []string{"hostile-2", "node-1"} {
		if err := c.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	table[pods1[0]], table[pods1[1]] = nil, nil
	waitTable(t, router, "node-1 removed", table)

	for _, want := range []string{"--cluster-cidr defaults to routes.clusterCIDRs", "Starting route controller"} {
		if !strings.Contains(proc.Log(), want) {
			t.Errorf("the CCM's log has no %q", want)
		}
	}
	// The route controller never deleted a route that a Node still has.
	for _, line := range strings.Split(proc.Log(), "\n") {
		if strings.Contains(line, "Deleted route") && !strings.Contains(line, "node-1") {
			t.Errorf("the route controller deleted a route of a node still there: %s", line)
		}
	}
}
