package provider

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/baremetal-ccm/baremetal-ccm/ipam"
	"github.com/baremetal-ccm/baremetal-ccm/provider/service"
)

// Reasons of the Service conditions (service.ConditionAddressAllocated,
// service.ConditionAnnounced) that are not allocation failures; those
// carry the reason of their Event (allocationReasons).
const (
	reasonAllocated     = "Allocated"
	reasonStaleAddress  = "StaleAddress"
	reasonAnnounced     = "Announced"
	reasonFailOpen      = "FailOpen"
	reasonNoEligible    = "NoEligibleNode"
	reasonNoSession     = "NoEstablishedSession"
	reasonNotInPool     = "AddressNotInPool"
	reasonPending       = "Pending"
	reasonNoAddress     = "NoAddress"
	reasonNoBGP         = "NoBGP"
	reasonNoPeers       = "NoPeers"
	reasonNoPools       = "NoPools"
	reasonAnnounceError = "AnnounceFailed"
)

// allocationOutcome is what the last EnsureLoadBalancer of a Service
// found, when it could not give the Service its addresses.
type allocationOutcome struct {
	reason, message string
}

// conditionInputs is what a Service's conditions are computed from.
type conditionInputs struct {
	// assigned are the addresses the leader's allocator holds for the
	// Service; nil when it holds none.
	assigned []netip.Addr
	// failed is the last allocation failure since; nil when there was
	// none or the Service holds its addresses.
	failed *allocationOutcome
	pools  []ipam.Pool
	// announced is the outcomes the announcer reported last; nil
	// before the first one.
	announced *announcements
	// peers is how many routers the cloud config lists.
	peers int
	// mayAnnounce tells whether an address may reach the routers.
	mayAnnounce func(netip.Addr) bool
}

// desiredStatus is what the provider writes on a Service.
type desiredStatus struct {
	// conditions, of the types the provider owns; a type it cannot say
	// anything about yet is left out.
	conditions []metav1.Condition
	// pools is the annotation service.AnnotationAllocatedFromPool; empty:
	// left as it is.
	pools string
}

// desiredFor computes what svc's status should say. Transition times
// are left zero: see withTransitionTimes.
func desiredFor(svc *v1.Service, in conditionInputs) desiredStatus {
	var d desiredStatus
	if c, ok := allocatedCondition(in); ok {
		d.conditions = append(d.conditions, c)
	}
	vips := in.assigned
	if vips == nil {
		vips = service.StatusAddrs(svc)
	}
	if c, ok := announcedCondition(svc, vips, in); ok {
		d.conditions = append(d.conditions, c)
	}
	d.pools = poolNames(in.assigned, in.pools)
	for i := range d.conditions {
		d.conditions[i].ObservedGeneration = svc.Generation
	}
	return d
}

func allocatedCondition(in conditionInputs) (metav1.Condition, bool) {
	c := metav1.Condition{Type: service.ConditionAddressAllocated}
	switch {
	case len(in.assigned) > 0:
		c.Status, c.Reason = metav1.ConditionTrue, reasonAllocated
		parts := make([]string, len(in.assigned))
		for i, a := range in.assigned {
			if p := poolOf(a, in.pools); p != "" {
				parts[i] = fmt.Sprintf("%s from pool %s", a, p)
			} else {
				c.Reason = reasonStaleAddress
				parts[i] = fmt.Sprintf("%s, in no pool of the cloud config any more (kept until the Service is deleted)", a)
			}
		}
		c.Message = strings.Join(parts, "; ")
	case in.failed != nil:
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, in.failed.reason, in.failed.message
	default:
		return c, false
	}
	return c, true
}

// vipState orders the outcomes of a Service's VIPs, worst first: the
// Service's condition takes the reason of its worst VIP.
var vipSeverity = []string{reasonNotInPool, reasonNoEligible, reasonNoSession, reasonPending, reasonFailOpen, reasonAnnounced}

func announcedCondition(svc *v1.Service, vips []netip.Addr, in conditionInputs) (metav1.Condition, bool) {
	c := metav1.Condition{Type: service.ConditionAnnounced, Status: metav1.ConditionFalse}
	switch {
	case in.announced == nil:
		return c, false
	case !in.announced.speaker:
		c.Reason, c.Message = reasonNoBGP, "the cloud config has no bgp section: no address is announced"
		return c, true
	case in.peers == 0:
		c.Reason, c.Message = reasonNoPeers, "the cloud config lists no BGP peers (bgp.peers): no address is announced"
		return c, true
	case len(vips) == 0:
		c.Reason, c.Message = reasonNoAddress, "no address is allocated yet (see condition "+service.ConditionAddressAllocated+")"
		return c, true
	}
	worst := len(vipSeverity) - 1
	parts := make([]string, 0, len(vips))
	for _, vip := range vips {
		reason, msg := vipReport(svc, vip, in)
		if i := slices.Index(vipSeverity, reason); i >= 0 {
			worst = min(worst, i)
		}
		parts = append(parts, msg)
	}
	c.Reason, c.Message = vipSeverity[worst], strings.Join(parts, "; ")
	if c.Reason == reasonAnnounced || c.Reason == reasonFailOpen {
		c.Status = metav1.ConditionTrue
	}
	return c, true
}

// vipReport says how one VIP is announced.
func vipReport(svc *v1.Service, vip netip.Addr, in conditionInputs) (reason, msg string) {
	o, ok := in.announced.outcome(vip)
	switch {
	case !in.mayAnnounce(vip):
		return reasonNotInPool, fmt.Sprintf("%s is in no address pool of the cloud config: not announced", vip)
	case !ok:
		return reasonPending, fmt.Sprintf("%s is not announced yet", vip)
	case o.nodes == 0:
		return reasonNoEligible, fmt.Sprintf("%s is not announced: no eligible node (Ready, healthy, not excluded, with an address of its family%s)", vip, localHint(svc))
	case o.peered == 0:
		return reasonAnnounced, fmt.Sprintf("%s announced via %d %s by the replicas that peer with its routers (the leader peers with none of them)", vip, o.nodes, plural(o.nodes, "node", "nodes"))
	case o.routers == 0:
		return reasonNoSession, fmt.Sprintf("%s would be announced via %d %s, but none of the leader's sessions with its %d %s is Established", vip, o.nodes, plural(o.nodes, "node", "nodes"), o.peered, plural(o.peered, "router", "routers"))
	case o.failOpen:
		return reasonFailOpen, fmt.Sprintf("%s announced via %d %s to %d %s although every eligible node fails its health check (fail open)", vip, o.nodes, plural(o.nodes, "node", "nodes"), o.routers, plural(o.routers, "router", "routers"))
	}
	return reasonAnnounced, fmt.Sprintf("%s announced via %d %s to %d %s", vip, o.nodes, plural(o.nodes, "node", "nodes"), o.routers, plural(o.routers, "router", "routers"))
}

// poolOf names the pool holding a; empty when none does.
func poolOf(a netip.Addr, pools []ipam.Pool) string {
	for _, p := range pools {
		for _, r := range p.Ranges {
			if r.Contains(a) {
				return p.Name
			}
		}
	}
	return ""
}

// poolNames lists the pools of addrs, each once, in address order.
func poolNames(addrs []netip.Addr, pools []ipam.Pool) string {
	var names []string
	for _, a := range addrs {
		if p := poolOf(a, pools); p != "" && !slices.Contains(names, p) {
			names = append(names, p)
		}
	}
	return strings.Join(names, ",")
}

// conditionsCurrent tells whether the Service already says what d says,
// transition times aside.
func conditionsCurrent(svc *v1.Service, d desiredStatus) bool {
	for _, want := range d.conditions {
		got := findCondition(svc.Status.Conditions, want.Type)
		if got == nil || got.Status != want.Status || got.Reason != want.Reason ||
			got.Message != want.Message || got.ObservedGeneration != want.ObservedGeneration {
			return false
		}
	}
	return d.pools == "" || svc.Annotations[service.AnnotationAllocatedFromPool] == d.pools
}

// withTransitionTimes sets each condition's transition time: the one on
// the Service when its status is unchanged, else now.
func withTransitionTimes(conds []metav1.Condition, current []metav1.Condition, now metav1.Time) []metav1.Condition {
	out := slices.Clone(conds)
	for i := range out {
		if got := findCondition(current, out[i].Type); got != nil && got.Status == out[i].Status && !got.LastTransitionTime.IsZero() {
			out[i].LastTransitionTime = got.LastTransitionTime
		} else {
			out[i].LastTransitionTime = now
		}
	}
	return out
}

func findCondition(conds []metav1.Condition, typ string) *metav1.Condition {
	for i := range conds {
		if conds[i].Type == typ {
			return &conds[i]
		}
	}
	return nil
}
