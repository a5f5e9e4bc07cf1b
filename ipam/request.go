package ipam

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// The annotations a Service uses to ask for addresses.
const (
	// AnnotationLoadBalancerIPs requests exact addresses: a comma-separated
	// list, at most one per family, each inside a pool the Service may use.
	// It replaces the deprecated spec.loadBalancerIP, which is read only
	// when the annotation is absent.
	AnnotationLoadBalancerIPs = "baremetal-ccm.io/load-balancer-ips"
	// AnnotationPool names the pool to allocate from. A pool with
	// autoAssign false serves only Services that name it (or one of its
	// addresses).
	AnnotationPool = "baremetal-ccm.io/pool"
	// AnnotationAllowSharedIP is a sharing key: Services with the same key
	// may hold the same address, provided they use no port and protocol in
	// common and have the same externalTrafficPolicy (and, for Local, the
	// same pod selector).
	AnnotationAllowSharedIP = "baremetal-ccm.io/allow-shared-ip"
)

// want is the address part of a request: what a Service asks for. A
// Service that holds addresses and asks for the same thing again gets them
// back unchanged; if it asks for something else, the allocator plans anew.
// It is comparable with ==.
type want struct {
	// valid is false for an assignment restored from a status that does not
	// match what the Service asks for: it never equals a request, so the
	// next Allocate plans anew (keeping what still fits).
	valid  bool
	policy v1.IPFamilyPolicy
	// fams are the families from spec.ipFamilies, primary first, cut to one
	// for SingleStack; nfams is 0 when spec.ipFamilies is empty and the
	// pool decides.
	fams  [2]family
	nfams int
	// ips are the requested addresses, in the order of fams.
	ips  [2]netip.Addr
	nips int
	// pool is the pool annotation.
	pool string
}

func (w want) String() string {
	if !w.valid {
		return "{restored, unmatched}"
	}
	return fmt.Sprintf("{%s %v ips=%v pool=%q}", w.policy, w.fams[:w.nfams], w.ips[:w.nips], w.pool)
}

func (w *want) families() []family  { return w.fams[:w.nfams] }
func (w *want) addrs() []netip.Addr { return w.ips[:w.nips] }

// order sorts addrs (one per family) in the Service's family order, the
// primary family first, and returns them.
func (w *want) order(addrs []netip.Addr) []netip.Addr {
	if w.nfams > 0 {
		slices.SortStableFunc(addrs, func(a, b netip.Addr) int {
			return cmp.Compare(slices.Index(w.families(), familyOf(a)), slices.Index(w.families(), familyOf(b)))
		})
	}
	return addrs
}

// dualStack reports whether the Service wants both families, and whether
// it must have them.
func (w *want) dualStack() (wanted, required bool) {
	return w.policy != v1.IPFamilyPolicySingleStack, w.policy == v1.IPFamilyPolicyRequireDualStack
}

// sharing is the part of a request that decides whom a Service may share an
// address with.
type sharing struct {
	key   string      // AnnotationAllowSharedIP; "" does not share
	ports []portProto // sorted
	local bool        // externalTrafficPolicy: Local
	// selector is the Service's pod selector, for Local: with Local, only
	// nodes with a ready endpoint announce the address, so sharers must
	// select the same pods or one of them would be announced from nodes
	// without its endpoints.
	selector string
}

func (s sharing) equal(o sharing) bool {
	return s.key == o.key && s.local == o.local && s.selector == o.selector && slices.Equal(s.ports, o.ports)
}

func (s sharing) policy() string {
	if s.local {
		return string(v1.ServiceExternalTrafficPolicyLocal)
	}
	return string(v1.ServiceExternalTrafficPolicyCluster)
}

type portProto struct {
	port  int32
	proto v1.Protocol
}

func (p portProto) String() string { return fmt.Sprintf("%d/%s", p.port, p.proto) }

// conflict returns why a Service with sharing s (named svc) may not hold
// address a alongside holder, which holds it with sharing h; nil if it may.
func (s sharing) conflict(svc string, a netip.Addr, holder string, h sharing) error {
	switch {
	case h.key == "":
		return fmt.Errorf("address %s is held by Service %s, which does not share it (no %s annotation): %w",
			a, holder, AnnotationAllowSharedIP, ErrAddressTaken)
	case s.key == "":
		return fmt.Errorf("address %s is held by Service %s, which shares it only with Services annotated %s=%q: %w",
			a, holder, AnnotationAllowSharedIP, h.key, ErrAddressTaken)
	case s.key != h.key:
		return fmt.Errorf("address %s is held by Service %s with sharing key %q, not %q: %w",
			a, holder, h.key, s.key, ErrAddressTaken)
	case s.local != h.local:
		return fmt.Errorf("address %s is shared by Service %s with externalTrafficPolicy %s, but Service %s has %s; sharers need the same policy: %w",
			a, holder, h.policy(), svc, s.policy(), ErrSharingRefused)
	case s.local && s.selector != h.selector:
		return fmt.Errorf("address %s is shared by Service %s, whose pod selector %q differs from %q of Service %s; with externalTrafficPolicy Local sharers need the same selector: %w",
			a, holder, h.selector, s.selector, svc, ErrSharingRefused)
	}
	for _, p := range s.ports {
		if _, found := slices.BinarySearchFunc(h.ports, p, comparePorts); found {
			return fmt.Errorf("address %s is shared by Service %s, which uses port %s too: %w", a, holder, p, ErrSharingRefused)
		}
	}
	return nil
}

func comparePorts(a, b portProto) int {
	return cmp.Or(cmp.Compare(a.port, b.port), cmp.Compare(a.proto, b.proto))
}

// request is what a Service asks of the allocator.
type request struct {
	namespace, name string
	labels          labels.Set
	want            want
	share           sharing
}

func (r *request) String() string { return r.namespace + "/" + r.name }

// newRequest derives the request from a Service. Its errors say which field
// or annotation is wrong and how.
func newRequest(svc *v1.Service) (*request, error) {
	r := &request{namespace: svc.Namespace, name: svc.Name, labels: labels.Set(svc.Labels)}
	w := &r.want
	w.valid = true

	w.policy = v1.IPFamilyPolicySingleStack
	if p := svc.Spec.IPFamilyPolicy; p != nil {
		switch *p {
		case v1.IPFamilyPolicySingleStack, v1.IPFamilyPolicyPreferDualStack, v1.IPFamilyPolicyRequireDualStack:
			w.policy = *p
		default:
			return nil, fmt.Errorf("spec.ipFamilyPolicy %q of Service %s is not SingleStack, PreferDualStack or RequireDualStack: %w", *p, r, ErrBadAnnotation)
		}
	}
	for i, f := range svc.Spec.IPFamilies {
		fam, ok := familyFromIPFamily(f)
		if !ok || i >= 2 || slices.Contains(w.families(), fam) {
			return nil, fmt.Errorf("spec.ipFamilies %v of Service %s is not one or two distinct families of IPv4, IPv6: %w", svc.Spec.IPFamilies, r, ErrBadAnnotation)
		}
		w.fams[i] = fam
		w.nfams++
	}
	if w.policy == v1.IPFamilyPolicySingleStack && w.nfams > 1 {
		w.nfams = 1
	}
	if w.policy == v1.IPFamilyPolicyRequireDualStack && w.nfams == 1 {
		w.fams[1] = other(w.fams[0])
		w.nfams = 2
	}

	if err := parseRequestedIPs(r, svc); err != nil {
		return nil, err
	}
	w.pool = strings.TrimSpace(svc.Annotations[AnnotationPool])

	r.share = newSharing(svc)
	return r, nil
}

// newSharing derives whom a Service may share an address with.
func newSharing(svc *v1.Service) sharing {
	var s sharing
	s.key = strings.TrimSpace(svc.Annotations[AnnotationAllowSharedIP])
	for _, p := range svc.Spec.Ports {
		proto := p.Protocol
		if proto == "" {
			proto = v1.ProtocolTCP
		}
		s.ports = append(s.ports, portProto{p.Port, proto})
	}
	slices.SortFunc(s.ports, comparePorts)
	s.ports = slices.Compact(s.ports)
	if svc.Spec.ExternalTrafficPolicy == v1.ServiceExternalTrafficPolicyLocal {
		s.local = true
		s.selector = labels.Set(svc.Spec.Selector).String()
	}
	return s
}

func other(f family) family {
	if f == v4 {
		return v6
	}
	return v4
}

// parseRequestedIPs reads the load-balancer-ips annotation, or else
// spec.loadBalancerIP, into r.want.
func parseRequestedIPs(r *request, svc *v1.Service) error {
	w := &r.want
	src, list := "annotation "+AnnotationLoadBalancerIPs, strings.TrimSpace(svc.Annotations[AnnotationLoadBalancerIPs])
	if list == "" {
		src, list = "spec.loadBalancerIP", strings.TrimSpace(svc.Spec.LoadBalancerIP)
		if strings.Contains(list, ",") {
			return fmt.Errorf("%s %q of Service %s holds one address; list several in annotation %s: %w", src, list, r, AnnotationLoadBalancerIPs, ErrBadAnnotation)
		}
	}
	if list == "" {
		return nil
	}
	var ips []netip.Addr
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		a, err := netip.ParseAddr(s)
		switch {
		case err != nil:
			return fmt.Errorf("%s of Service %s: %q is not an IP address: %w", src, r, s, ErrBadAnnotation)
		case a.Zone() != "" || a.Is4In6():
			return fmt.Errorf("%s of Service %s: %q is not a plain IPv4 or IPv6 address: %w", src, r, s, ErrBadAnnotation)
		}
		for _, b := range ips {
			if familyOf(a) == familyOf(b) {
				return fmt.Errorf("%s of Service %s requests two %s addresses (%s, %s); at most one per family: %w", src, r, familyOf(a), b, a, ErrBadAnnotation)
			}
		}
		ips = append(ips, a)
	}
	_, required := w.dualStack()
	if w.nfams == 0 {
		if w.policy == v1.IPFamilyPolicySingleStack && len(ips) > 1 {
			return fmt.Errorf("%s of Service %s requests %d addresses, but the Service is single-stack: %w", src, r, len(ips), ErrBadAnnotation)
		}
	} else {
		for _, a := range ips {
			if !slices.Contains(w.families(), familyOf(a)) {
				return fmt.Errorf("%s of Service %s requests %s address %s, but the Service's families are %v (spec.ipFamilies, spec.ipFamilyPolicy %s): %w",
					src, r, familyOf(a), a, w.families(), w.policy, ErrWrongFamily)
			}
		}
		w.order(ips)
	}
	if required && len(ips) < 2 {
		return fmt.Errorf("%s of Service %s requests only %s, but the Service is RequireDualStack; request one address per family: %w", src, r, ips[0], ErrDualStackUnavailable)
	}
	w.nips = copy(w.ips[:], ips)
	return nil
}
