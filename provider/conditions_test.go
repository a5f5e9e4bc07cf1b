package provider

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/baremetal-ccm/baremetal-ccm/ipam"
	"github.com/baremetal-ccm/baremetal-ccm/provider/config"
	"github.com/baremetal-ccm/baremetal-ccm/provider/service"
)

func conditionPools(t *testing.T) []ipam.Pool {
	t.Helper()
	cfg, err := config.Parse([]byte("region: lab\npools:\n- name: public\n  addresses: [203.0.113.0/28, 2001:db8:100::/120]\n- name: other\n  addresses: [203.0.113.64/28]\nbgp:\n  asn: 64512\n"))
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Pools
}

// TestDesiredConditions: what each condition says for the cases an
// operator meets, with the reason that names the cause.
func TestDesiredConditions(t *testing.T) {
	pools := conditionPools(t)
	vip := netip.MustParseAddr("203.0.113.1")
	vip6 := netip.MustParseAddr("2001:db8:100::1")
	stale := netip.MustParseAddr("198.51.100.200")
	announced := func(vips map[netip.Addr]vipOutcome) *announcements {
		return &announcements{speaker: true, vips: vips}
	}
	up := vipOutcome{nodes: 3, peered: 2, routers: 2}
	type cond struct{ status, reason, message string }
	for _, tc := range []struct {
		name      string
		in        conditionInputs
		local     bool
		allocated *cond // nil: not checked; &cond{}: not written
		ann       *cond
		pools     string
	}{
		{
			name:      "allocated and announced",
			in:        conditionInputs{assigned: []netip.Addr{vip}, announced: announced(map[netip.Addr]vipOutcome{vip: up})},
			allocated: &cond{"True", "Allocated", "203.0.113.1 from pool public"},
			ann:       &cond{"True", "Announced", "203.0.113.1 announced via 3 nodes to 2 routers"},
			pools:     "public",
		},
		{
			name: "dual-stack: every address said, from two pools",
			in: conditionInputs{assigned: []netip.Addr{netip.MustParseAddr("203.0.113.65"), vip6}, announced: announced(map[netip.Addr]vipOutcome{
				netip.MustParseAddr("203.0.113.65"): up, vip6: {nodes: 1, peered: 1, routers: 1},
			})},
			allocated: &cond{"True", "Allocated", "203.0.113.65 from pool other; 2001:db8:100::1 from pool public"},
			ann:       &cond{"True", "Announced", "203.0.113.65 announced via 3 nodes to 2 routers; 2001:db8:100::1 announced via 1 node to 1 router"},
			pools:     "other,public",
		},
		{
			name:      "pool exhausted: the allocation's reason, nothing announced",
			in:        conditionInputs{failed: &allocationOutcome{"PoolExhausted", "no free address in pool public"}, announced: announced(nil)},
			allocated: &cond{"False", "PoolExhausted", "no free address in pool public"},
			ann:       &cond{"False", "NoAddress", "no address is allocated yet"},
		},
		{
			name:  "no eligible node, Local policy named",
			in:    conditionInputs{assigned: []netip.Addr{vip}, announced: announced(map[netip.Addr]vipOutcome{vip: {peered: 2, routers: 2}})},
			local: true,
			ann:   &cond{"False", "NoEligibleNode", "holding a ready endpoint: externalTrafficPolicy is Local"},
		},
		{
			name: "sessions down",
			in:   conditionInputs{assigned: []netip.Addr{vip}, announced: announced(map[netip.Addr]vipOutcome{vip: {nodes: 3, peered: 2}})},
			ann:  &cond{"False", "NoEstablishedSession", "none of the leader's sessions with its 2 routers is Established"},
		},
		{
			name: "fail open is announced, and says so",
			in:   conditionInputs{assigned: []netip.Addr{vip}, announced: announced(map[netip.Addr]vipOutcome{vip: {nodes: 3, failOpen: true, peered: 2, routers: 2}})},
			ann:  &cond{"True", "FailOpen", "every eligible node fails its health check"},
		},
		{
			name: "the worst address decides",
			in: conditionInputs{assigned: []netip.Addr{vip, vip6}, announced: announced(map[netip.Addr]vipOutcome{
				vip: up, vip6: {peered: 2, routers: 2},
			})},
			ann: &cond{"False", "NoEligibleNode", "203.0.113.1 announced via 3 nodes to 2 routers; 2001:db8:100::1 is not announced"},
		},
		{
			name: "not synced yet",
			in:   conditionInputs{assigned: []netip.Addr{vip}, announced: announced(nil)},
			ann:  &cond{"False", "Pending", "203.0.113.1 is not announced yet"},
		},
		{
			name: "the leader peers with none of the VIP's routers",
			in:   conditionInputs{assigned: []netip.Addr{vip}, announced: announced(map[netip.Addr]vipOutcome{vip: {nodes: 2}})},
			ann:  &cond{"True", "Announced", "the leader peers with none of them"},
		},
		{
			name:      "a stale address: kept, not announced",
			in:        conditionInputs{assigned: []netip.Addr{stale}, announced: announced(nil)},
			allocated: &cond{"True", "StaleAddress", "198.51.100.200, in no pool of the cloud config any more"},
			ann:       &cond{"False", "AddressNotInPool", "198.51.100.200 is in no address pool"},
		},
		{
			name: "no bgp section",
			in:   conditionInputs{assigned: []netip.Addr{vip}, announced: &announcements{}},
			ann:  &cond{"False", "NoBGP", "no bgp section"},
		},
		{
			name:      "before the announcer's first sync and Ensure: nothing to say",
			in:        conditionInputs{},
			allocated: &cond{},
			ann:       &cond{},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.in.pools = pools
			if tc.in.peers == 0 && tc.ann != nil && tc.ann.reason != "NoPeers" {
				tc.in.peers = 2
			}
			tc.in.mayAnnounce = func(a netip.Addr) bool { return poolOf(a, pools) != "" }
			svc := lbService("web", v1.ServiceExternalTrafficPolicyCluster)
			if tc.local {
				svc.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
			}
			svc.Generation = 4
			d := desiredFor(svc, tc.in)
			for _, want := range []struct {
				typ string
				c   *cond
			}{{service.ConditionAddressAllocated, tc.allocated}, {service.ConditionAnnounced, tc.ann}} {
				got := findCondition(d.conditions, want.typ)
				switch {
				case want.c == nil:
				case want.c.status == "" && got != nil:
					t.Errorf("%s = %+v, want none", want.typ, *got)
				case want.c.status == "":
				case got == nil:
					t.Errorf("no %s, want %+v", want.typ, *want.c)
				default:
					if string(got.Status) != want.c.status || got.Reason != want.c.reason || !strings.Contains(got.Message, want.c.message) {
						t.Errorf("%s = %s/%s %q, want %s/%s containing %q", want.typ, got.Status, got.Reason, got.Message, want.c.status, want.c.reason, want.c.message)
					}
					if got.ObservedGeneration != 4 {
						t.Errorf("%s observedGeneration = %d, want 4", want.typ, got.ObservedGeneration)
					}
				}
			}
			if tc.allocated != nil && d.pools != tc.pools {
				t.Errorf("pool annotation = %q, want %q", d.pools, tc.pools)
			}
		})
	}
}

// TestConditionTransitions: a write keeps a condition's transition time
// while its status stays, and takes the current time when it changes;
// a Service that says what is desired needs no write.
func TestConditionTransitions(t *testing.T) {
	then := metav1.NewTime(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	now := metav1.NewTime(then.Add(time.Hour))
	svc := lbService("web", v1.ServiceExternalTrafficPolicyCluster)
	svc.Annotations[service.AnnotationAllocatedFromPool] = "public"
	svc.Status.Conditions = []metav1.Condition{
		{Type: "example.com/Other", Status: "True", Reason: "X", LastTransitionTime: then},
		{Type: service.ConditionAddressAllocated, Status: "True", Reason: reasonAllocated, Message: "203.0.113.1 from pool public", LastTransitionTime: then},
		{Type: service.ConditionAnnounced, Status: "True", Reason: reasonAnnounced, Message: "203.0.113.1 announced via 3 nodes to 2 routers", LastTransitionTime: then},
	}
	d := desiredStatus{pools: "public", conditions: []metav1.Condition{
		{Type: service.ConditionAddressAllocated, Status: "True", Reason: reasonAllocated, Message: "203.0.113.1 from pool public"},
		{Type: service.ConditionAnnounced, Status: "True", Reason: reasonAnnounced, Message: "203.0.113.1 announced via 3 nodes to 2 routers"},
	}}
	if !conditionsCurrent(svc, d) {
		t.Errorf("conditionsCurrent = false for a Service that says what is desired")
	}
	d.conditions[1].Message = "203.0.113.1 announced via 2 nodes to 2 routers"
	if conditionsCurrent(svc, d) {
		t.Errorf("conditionsCurrent = true with another message")
	}
	d.conditions[1].Status, d.conditions[1].Reason = "False", reasonNoEligible
	got := withTransitionTimes(d.conditions, svc.Status.Conditions, now)
	if !got[0].LastTransitionTime.Equal(&then) {
		t.Errorf("unchanged status: transition time %v, want %v", got[0].LastTransitionTime, then)
	}
	if !got[1].LastTransitionTime.Equal(&now) {
		t.Errorf("changed status: transition time %v, want %v", got[1].LastTransitionTime, now)
	}
	patch, err := statusPatch(svc, d, now)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(patch), "example.com/Other") || strings.Contains(string(patch), "annotations") {
		t.Errorf("the patch %s touches what is not the provider's, or an unchanged annotation", patch)
	}
}
