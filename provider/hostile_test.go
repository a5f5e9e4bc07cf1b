package provider

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/baremetal-ccm/baremetal-ccm/provider/service"
)

const pendingConfig = `
region: lab
racks:
- name: rack-a
  subnets: [198.51.100.0/25]
pools:
- name: a
  addresses: [203.0.113.0/29]
  avoidBuggyIPs: true
bgp:
  asn: 64512
  routerID: 198.51.100.1
`

// TestFailedAnnounceKeepsShownAddress (issue 11, item 6): a Service whose
// request changes, and whose new address is never announced, keeps the
// address its status shows; no other Service gets it until the status
// moves on.
func TestFailedAnnounceKeepsShownAddress(t *testing.T) {
	c := makeCloud(t, pendingConfig)
	ctx := context.Background()
	client := c.opts.Client
	old := netip.MustParseAddr("203.0.113.1")

	a := lbService("a", v1.ServiceExternalTrafficPolicyCluster)
	a, err := client.CoreV1().Services("default").Create(ctx, a, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.EnsureLoadBalancer(ctx, "cluster", a, nil)
	if err != nil {
		t.Fatal(err)
	}
	a.Status.LoadBalancer = *st
	if a, err = client.CoreV1().Services("default").UpdateStatus(ctx, a, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := service.StatusAddrs(a); len(got) != 1 || got[0] != old {
		t.Fatalf("a's status = %v, want %s", got, old)
	}

	// a asks for another address; the announce fails (no speaker).
	a.Annotations[service.AnnotationLoadBalancerIPs] = "203.0.113.5"
	c.reloadMu.Lock()
	c.stopSpeaker()
	c.reloadMu.Unlock()
	if _, err := c.EnsureLoadBalancer(ctx, "cluster", a, nil); err == nil {
		t.Fatal("Ensure without a speaker succeeded, want an error")
	}
	// The status still shows the old address: it stays a's, and announced.
	b := lbService("b", v1.ServiceExternalTrafficPolicyCluster)
	b.Annotations[service.AnnotationLoadBalancerIPs] = old.String()
	if _, err := c.EnsureLoadBalancer(ctx, "cluster", b, nil); err == nil || !strings.Contains(err.Error(), old.String()) {
		t.Fatalf("Ensure(b) asking for a's shown address = %v, want it refused", err)
	}
	if got := c.announcer.addressesOf(a); !slices.Contains(got, old) {
		t.Errorf("a's addresses to announce = %v, want %s kept while the status shows it", got, old)
	}

	// The speaker is back, a gets its new address and its status moves on:
	// only then is the old address free.
	c.reloadMu.Lock()
	if err := c.applySpeaker(ctx, c.config(), c.pools.prefixes()); err != nil {
		t.Fatal(err)
	}
	c.reloadMu.Unlock()
	st, err = c.EnsureLoadBalancer(ctx, "cluster", a, nil)
	if err != nil {
		t.Fatal(err)
	}
	a.Status.LoadBalancer = *st
	if _, err := client.CoreV1().Services("default").UpdateStatus(ctx, a, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for len(c.alloc.Holders(old)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%s still held by %v after a's status moved on", old, c.alloc.Holders(old))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := c.EnsureLoadBalancer(ctx, "cluster", b, nil); err != nil {
		t.Fatalf("Ensure(b) once the address is free: %v", err)
	}
}
