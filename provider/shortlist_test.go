package provider

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/baremetal-ccm/baremetal-ccm/bgp"
)

// TestSyncChangesShortlist: with more nodes than maxPathsPerPrefix (16),
// each VIP is handed over with its shortlist alone, and a node's change
// makes the speaker hear of exactly the VIPs whose shortlist it changes:
// the ones announced via the node when it fails, the ones it enters when
// it comes back or joins. What the speaker then has is what a full sync
// gives.
func TestSyncChangesShortlist(t *testing.T) {
	const nodes, vips = 40, 60
	objs := []runtime.Object{}
	for i := range nodes {
		objs = append(objs, node(fmt.Sprintf("n%02d", i), []string{fmt.Sprintf("198.51.100.%d", 10+i)}))
	}
	for i := range vips {
		objs = append(objs, lbService(fmt.Sprintf("c%d", i), v1.ServiceExternalTrafficPolicyCluster, fmt.Sprintf("203.0.113.%d", 10+i)))
	}
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, h *changeHarness)
		// every: the change moves every VIP.
		every bool
	}{
		{"a node fails its health check", func(t *testing.T, h *changeHarness) { h.setHealth("n07", false) }, false},
		{"a node passes again", func(t *testing.T, h *changeHarness) {
			h.setHealth("n07", false)
			if err := h.a.sync(context.Background()); err != nil {
				t.Fatal(err)
			}
			h.sp.take()
			h.setHealth("n07", true)
		}, false},
		{"a node joins", func(t *testing.T, h *changeHarness) {
			n := node("n99", []string{"198.51.100.99"})
			if err := h.stores["node"].Add(n); err != nil {
				t.Fatal(err)
			}
			h.a.nodesChanged()
		}, false},
		{"a node becomes NotReady", func(t *testing.T, h *changeHarness) { h.updateNode(t, "n21", notReady) }, false},
		{"every node failed (fail open), then one passes, wherever it ranks", func(t *testing.T, h *changeHarness) {
			for i := range nodes {
				h.health[fmt.Sprintf("n%02d", i)] = false
			}
			h.a.healthChanged()
			if err := h.a.sync(context.Background()); err != nil {
				t.Fatal(err)
			}
			if len(h.a.failOpen) != vips {
				t.Fatalf("%d VIPs fail open, want %d", len(h.a.failOpen), vips)
			}
			h.sp.take()
			h.setHealth("n33", true)
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newChangeHarness(t, objs...)
			for p, adv := range h.sp.state() {
				if len(adv.NextHops) != bgp.DefaultMaxPathsPerPrefix {
					t.Fatalf("%s handed over with %d next hops, want its shortlist of %d", p, len(adv.NextHops), bgp.DefaultMaxPathsPerPrefix)
				}
			}
			tc.change(t, h)
			before := h.sp.state()
			if err := h.a.sync(context.Background()); err != nil {
				t.Fatalf("sync: %v", err)
			}
			heard := h.sp.take()
			after := h.sp.state()
			var moved []string
			for p, adv := range after {
				if prev := before[p]; !prev.Equal(&adv) {
					moved = append(moved, "announce "+p.Addr().String())
				}
			}
			slices.Sort(moved)
			if diff := cmp.Diff(moved, heard); diff != "" {
				t.Errorf("speaker calls, against the VIPs whose shortlist changed (-changed +heard):\n%s", diff)
			}
			if tc.every && len(heard) != vips {
				t.Errorf("the change moved %d of %d VIPs, want all", len(heard), vips)
			}
			if !tc.every && (len(heard) == 0 || len(heard) >= vips) {
				t.Errorf("the change moved %d of %d VIPs: want some, not all", len(heard), vips)
			}
			if err := h.a.syncAll(context.Background()); err != nil {
				t.Fatalf("syncAll: %v", err)
			}
			if diff := cmp.Diff(h.sp.state(), after, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }), cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
				t.Errorf("after the sync of changes, the speaker's state differs from a full sync's (-full +changes):\n%s", diff)
			}
		})
	}
}
