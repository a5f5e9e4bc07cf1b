package integration

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/baremetal-ccm/baremetal-ccm/test/bgprouter"
	"github.com/baremetal-ccm/baremetal-ccm/test/ccm"
	"github.com/baremetal-ccm/baremetal-ccm/test/controlplane"
	"github.com/baremetal-ccm/baremetal-ccm/test/kubelet"
	"github.com/baremetal-ccm/baremetal-ccm/test/lbservice"
)

func lbConfig(r *bgprouter.Router) string {
	return `
region: lab
racks:
- name: rack-a
  subnets: [198.51.100.0/24, 2001:db8:1::/64]
pools:
- name: public
  addresses: [203.0.113.0/28, 2001:db8:100::/120]
  avoidBuggyIPs: true
- name: reserved
  addresses: [203.0.113.64/28]
  autoAssign: false
` + r.SpeakerConfig() + `healthCheck:
  enabled: false
`
}

func createService(t *testing.T, c kubernetes.Interface, s *v1.Service) {
	t.Helper()
	if _, err := c.CoreV1().Services(s.Namespace).Create(context.Background(), s, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating service %s: %v", s.Name, err)
	}
}

// waitIngress waits until the Service's status shows want (in order).
func waitIngress(t *testing.T, c kubernetes.Interface, name string, want ...string) {
	t.Helper()
	var got []string
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, waitTimeout, true, func(ctx context.Context) (bool, error) {
		s, err := c.CoreV1().Services("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		got = nil
		for _, in := range s.Status.LoadBalancer.Ingress {
			got = append(got, in.IP)
			if in.IPMode == nil || *in.IPMode != v1.LoadBalancerIPModeVIP {
				return false, nil
			}
		}
		return slices.Equal(got, want), nil
	})
	if err != nil {
		t.Fatalf("service %s: ingress %v, want %v (ipMode VIP)", name, got, want)
	}
}

// waitRoutes waits until the router's next hops for the given VIPs are
// want (VIPs not named are not checked; an empty list means withdrawn).
func waitRoutes(t *testing.T, r *bgprouter.Router, what string, want map[string][]string) {
	t.Helper()
	var got map[netip.Prefix][]netip.Addr
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, waitTimeout, true, func(context.Context) (bool, error) {
		var err error
		if got, err = r.Union(); err != nil {
			return false, err
		}
		for vip, hops := range want {
			a := netip.MustParseAddr(vip)
			if fmt.Sprint(got[netip.PrefixFrom(a, a.BitLen())]) != fmt.Sprint(addrList(hops)) {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("%s: router table %v, want %v", what, got, want)
	}
}

func addrList(s []string) []netip.Addr {
	out := []netip.Addr{}
	for _, x := range s {
		out = append(out, netip.MustParseAddr(x))
	}
	if len(out) == 0 {
		return nil
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return out
}

// waitEvent waits for an Event of the Service with this reason, and returns
// its message.
func waitEvent(t *testing.T, c kubernetes.Interface, svc, reason string) string {
	t.Helper()
	var msg string
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, waitTimeout, true, func(ctx context.Context) (bool, error) {
		evs, err := c.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: fields.Set{"involvedObject.name": svc, "reason": reason}.String()})
		if err != nil || len(evs.Items) == 0 {
			return false, nil
		}
		msg = evs.Items[0].Message
		return true, nil
	})
	if err != nil {
		t.Fatalf("service %s: no %s event", svc, reason)
	}
	return msg
}

func TestLoadBalancerLifecycle(t *testing.T) {
	cp := controlplane.StartT(t)
	c := cp.Client
	router := bgprouter.Start(t, bgprouter.Options{ASN: 64513, Neighbors: []string{"127.0.0.1"}, NeighborASN: 64512})
	cloudConfig := filepath.Join(t.TempDir(), "cloud.yaml")
	writeFile(t, cloudConfig, lbConfig(router))
	ccm.Start(t, ccm.Options{Kubeconfig: cp.Kubeconfig, CloudConfig: cloudConfig})
	router.WaitEstablished(t, waitTimeout)

	for i := 1; i <= 3; i++ {
		registerNode(t, c, fmt.Sprintf("node-%d", i), fmt.Sprintf("198.51.100.1%d,2001:db8:1::1%d", i, i))
	}
	for i := 1; i <= 3; i++ {
		waitNode(t, c, fmt.Sprintf("node-%d", i), "initialised", func(n *v1.Node) bool { return len(n.Status.Addresses) == 3 })
	}
	v4Hops := []string{"198.51.100.11", "198.51.100.12", "198.51.100.13"}
	v6Hops := []string{"2001:db8:1::11", "2001:db8:1::12", "2001:db8:1::13"}

	single6 := v1.IPFamilyPolicySingleStack
	require := v1.IPFamilyPolicyRequireDualStack
	// The service controller runs several workers: Services created at
	// once get the lowest free addresses in no fixed order, so the two
	// whose exact address is checked go first.
	createService(t, c, lbservice.New("web", 80))
	waitIngress(t, c, "web", "203.0.113.1")
	createService(t, c, lbservice.New("web6", 80, func(s *v1.Service) {
		s.Spec.IPFamilyPolicy = &single6
		s.Spec.IPFamilies = []v1.IPFamily{v1.IPv6Protocol}
	}))
	waitIngress(t, c, "web6", "2001:db8:100::")
	createService(t, c, lbservice.New("dual", 80, func(s *v1.Service) {
		s.Spec.IPFamilyPolicy = &require
		s.Spec.IPFamilies = []v1.IPFamily{v1.IPv4Protocol, v1.IPv6Protocol}
	}))
	createService(t, c, lbservice.New("fixed", 80, func(s *v1.Service) { s.Annotations["baremetal-ccm.io/load-balancer-ips"] = "203.0.113.9" }))
	createService(t, c, lbservice.New("reserved", 80, func(s *v1.Service) { s.Annotations["baremetal-ccm.io/pool"] = "reserved" }))
	createService(t, c, lbservice.New("share-a", 80, func(s *v1.Service) { s.Annotations["baremetal-ccm.io/allow-shared-ip"] = "k" }))
	createService(t, c, lbservice.New("share-b", 443, func(s *v1.Service) { s.Annotations["baremetal-ccm.io/allow-shared-ip"] = "k" }))

	waitIngress(t, c, "fixed", "203.0.113.9")
	waitIngress(t, c, "reserved", "203.0.113.64")
	waitRoutes(t, router, "after creation", map[string][]string{
		"203.0.113.1": v4Hops, "2001:db8:100::": v6Hops, "203.0.113.9": v4Hops, "203.0.113.64": v4Hops,
	})
	dual, _ := c.CoreV1().Services("default").Get(context.Background(), "dual", metav1.GetOptions{})
	if n := len(dual.Status.LoadBalancer.Ingress); n != 2 {
		t.Fatalf("dual-stack service has %d ingress addresses, want 2: %v", n, dual.Status.LoadBalancer.Ingress)
	}
	sa, _ := c.CoreV1().Services("default").Get(context.Background(), "share-a", metav1.GetOptions{})
	sb, _ := c.CoreV1().Services("default").Get(context.Background(), "share-b", metav1.GetOptions{})
	waitIngress(t, c, "share-b", sa.Status.LoadBalancer.Ingress[0].IP)
	if sb.Status.LoadBalancer.Ingress != nil && sb.Status.LoadBalancer.Ingress[0].IP != sa.Status.LoadBalancer.Ingress[0].IP {
		t.Errorf("sharing services got %v and %v", sa.Status.LoadBalancer.Ingress, sb.Status.LoadBalancer.Ingress)
	}
	// externalTrafficPolicy Local: only nodes with a ready endpoint.
	local := v1.ServiceExternalTrafficPolicyLocal
	createService(t, c, lbservice.New("local", 80, func(s *v1.Service) { s.Spec.ExternalTrafficPolicy = local }))
	node2 := "node-2"
	ready := true
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "local-1", Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: "local"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"192.0.2.50"}, NodeName: &node2, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
	}
	if _, err := c.DiscoveryV1().EndpointSlices("default").Create(context.Background(), slice, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var localIP string
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, waitTimeout, true, func(ctx context.Context) (bool, error) {
		s, err := c.CoreV1().Services("default").Get(ctx, "local", metav1.GetOptions{})
		if err != nil || len(s.Status.LoadBalancer.Ingress) == 0 {
			return false, nil
		}
		localIP = s.Status.LoadBalancer.Ingress[0].IP
		return true, nil
	})
	if err != nil {
		t.Fatal("local service got no address")
	}
	waitRoutes(t, router, "Local service", map[string][]string{localIP: {"198.51.100.12"}})

	// Node failures: NotReady, then excluded; their paths leave every VIP.
	setReady(t, c, "node-3", v1.ConditionFalse)
	waitRoutes(t, router, "node-3 NotReady", map[string][]string{
		"203.0.113.1": v4Hops[:2], "2001:db8:100::": v6Hops[:2], localIP: {"198.51.100.12"},
	})
	// The change has an Event; the first announcement had only the
	// condition.
	if msg := waitEvent(t, c, "web", "Announced"); !strings.Contains(msg, "203.0.113.1 announced via 2 nodes to 1 router (was 3)") {
		t.Errorf("Announced event = %q", msg)
	}
	kubelet.UpdateNode(t, c, "node-1", func(n *v1.Node) { n.Labels[v1.LabelNodeExcludeBalancers] = "true" })
	waitRoutes(t, router, "node-1 excluded", map[string][]string{"203.0.113.1": v4Hops[1:2], "2001:db8:100::": v6Hops[1:2]})
	setReady(t, c, "node-3", v1.ConditionTrue)
	waitRoutes(t, router, "node-3 Ready again", map[string][]string{"203.0.113.1": v4Hops[1:], "2001:db8:100::": v6Hops[1:]})

	// Delete: withdrawn, and the address can be had again.
	if err := c.CoreV1().Services("default").Delete(context.Background(), "fixed", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitRoutes(t, router, "fixed deleted", map[string][]string{"203.0.113.9": nil})
	createService(t, c, lbservice.New("fixed2", 80, func(s *v1.Service) { s.Annotations["baremetal-ccm.io/load-balancer-ips"] = "203.0.113.9" }))
	waitIngress(t, c, "fixed2", "203.0.113.9")

	// Bad input: each one gets its Event, and nothing else changes.
	before, err := router.Union()
	if err != nil {
		t.Fatal(err)
	}
	sharedIP := sa.Status.LoadBalancer.Ingress[0].IP
	for _, tc := range []struct {
		name, annotation, value, reason, want string
	}{
		{"bad-taken", "baremetal-ccm.io/load-balancer-ips", "203.0.113.9", "AddressTaken", "203.0.113.9"},
		{"bad-family", "baremetal-ccm.io/load-balancer-ips", "2001:db8:100::5", "WrongAddressFamily", "2001:db8:100::5"},
		{"bad-sharing", "baremetal-ccm.io/load-balancer-ips", sharedIP, "SharingRefused", "80"},
		{"bad-outside", "baremetal-ccm.io/load-balancer-ips", "192.0.2.77", "AddressOutsidePools", "192.0.2.77"},
		{"bad-pool", "baremetal-ccm.io/pool", "nosuchpool", "UnknownPool", "nosuchpool"},
		{"bad-ip", "baremetal-ccm.io/load-balancer-ips", "not-an-ip", "InvalidAnnotation", "not-an-ip"},
		{"bad-community", "baremetal-ccm.io/bgp-communities", "65536:1", "InvalidAnnotation", "65536:1"},
	} {
		createService(t, c, lbservice.New(tc.name, 80, func(s *v1.Service) {
			s.Annotations[tc.annotation] = tc.value
			if tc.name == "bad-sharing" {
				s.Annotations["baremetal-ccm.io/allow-shared-ip"] = "k" // same key, but port 80 is share-a's
			}
		}))
		if msg := waitEvent(t, c, tc.name, tc.reason); !strings.Contains(msg, tc.want) {
			t.Errorf("%s: %s event %q does not name %q", tc.name, tc.reason, msg, tc.want)
		}
	}
	after, err := router.Union()
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Errorf("bad input changed the router table:\nbefore %v\nafter  %v", before, after)
	}
	for _, name := range []string{"bad-taken", "bad-family", "bad-sharing", "bad-outside", "bad-pool", "bad-ip", "bad-community"} {
		s, _ := c.CoreV1().Services("default").Get(context.Background(), name, metav1.GetOptions{})
		if len(s.Status.LoadBalancer.Ingress) != 0 {
			t.Errorf("service %s with bad input got %v", name, s.Status.LoadBalancer.Ingress)
		}
	}
	waitIngress(t, c, "fixed2", "203.0.113.9")
	waitIngress(t, c, "share-a", sharedIP)

	// Update: a new requested address moves the VIP.
	updateService(t, c, "web", func(web *v1.Service) {
		web.Annotations = map[string]string{"baremetal-ccm.io/load-balancer-ips": "203.0.113.7"}
	})
	waitIngress(t, c, "web", "203.0.113.7")
	waitRoutes(t, router, "web moved", map[string][]string{"203.0.113.7": v4Hops[1:], "203.0.113.1": nil})
}
