package service

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	v1 "k8s.io/api/core/v1"

	"github.com/baremetal-ccm/baremetal-ccm/ipam"
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

// AllocationRequest reads what a Service asks of the address allocator:
// its families (spec.ipFamilies, spec.ipFamilyPolicy), the addresses it
// requests (AnnotationLoadBalancerIPs, else spec.loadBalancerIP), its pool
// (AnnotationPool), whom it may share an address with
// (AnnotationAllowSharedIP, its ports, externalTrafficPolicy and pod
// selector), and the addresses its status shows (StatusAddrs).
//
// An error says which field or annotation cannot be read, its value and
// what would be valid, and wraps ipam.ErrInvalidRequest. Whether the values
// hold together (an address of a family the Service has, one per family)
// is the allocator's to check: Allocate returns those errors.
func AllocationRequest(svc *v1.Service) (ipam.Request, error) {
	req := baseRequest(svc)
	name := req.Namespace + "/" + req.Name
	var err error
	if req.Policy, err = familyPolicy(svc.Spec.IPFamilyPolicy, name); err != nil {
		return ipam.Request{}, err
	}
	if req.Families, err = families(svc.Spec.IPFamilies, name); err != nil {
		return ipam.Request{}, err
	}
	if req.IPs, req.Source.IPs, err = requestedIPs(svc, name); err != nil {
		return ipam.Request{}, err
	}
	req.Pool = strings.TrimSpace(svc.Annotations[AnnotationPool])
	return req, nil
}

// Claim returns what the allocator's Restore needs of a Service: its
// request, when it was created, and the addresses its status shows. A
// Service whose request cannot be read still claims what its status shows,
// with the sharing terms it has (Claim.Unreadable).
func Claim(svc *v1.Service) ipam.Claim {
	req, err := AllocationRequest(svc)
	if err != nil {
		return ipam.Claim{Request: baseRequest(svc), Unreadable: true, Created: svc.CreationTimestamp.Time}
	}
	return ipam.Claim{Request: req, Created: svc.CreationTimestamp.Time}
}

// baseRequest reads the part of a request that reading cannot fail:
// identity, labels, sharing terms, and the addresses the status shows.
func baseRequest(svc *v1.Service) ipam.Request {
	req := ipam.Request{
		Namespace:  svc.Namespace,
		Name:       svc.Name,
		Labels:     svc.Labels,
		SharingKey: strings.TrimSpace(svc.Annotations[AnnotationAllowSharedIP]),
		Shown:      StatusAddrs(svc),
		Source: ipam.Source{
			Pool:       "annotation " + AnnotationPool,
			SharingKey: "annotation " + AnnotationAllowSharedIP,
		},
	}
	for _, p := range svc.Spec.Ports {
		proto := p.Protocol
		if proto == "" {
			proto = v1.ProtocolTCP
		}
		req.Ports = append(req.Ports, ipam.Port{Number: p.Port, Protocol: string(proto)})
	}
	if svc.Spec.ExternalTrafficPolicy == v1.ServiceExternalTrafficPolicyLocal {
		req.TrafficPolicyLocal = true
		req.PodSelector = svc.Spec.Selector
	}
	return req
}

// familyPolicy reads spec.ipFamilyPolicy; nil is SingleStack.
func familyPolicy(p *v1.IPFamilyPolicy, name string) (ipam.FamilyPolicy, error) {
	if p == nil {
		return ipam.SingleStack, nil
	}
	switch *p {
	case v1.IPFamilyPolicySingleStack:
		return ipam.SingleStack, nil
	case v1.IPFamilyPolicyPreferDualStack:
		return ipam.PreferDualStack, nil
	case v1.IPFamilyPolicyRequireDualStack:
		return ipam.RequireDualStack, nil
	}
	return 0, fmt.Errorf("spec.ipFamilyPolicy %q of Service %s is not SingleStack, PreferDualStack or RequireDualStack: %w", *p, name, ipam.ErrInvalidRequest)
}

// families reads spec.ipFamilies: one or two distinct families.
func families(fams []v1.IPFamily, name string) ([]ipam.Family, error) {
	if len(fams) > 2 {
		return nil, fmt.Errorf("spec.ipFamilies %v of Service %s is not one or two distinct families of IPv4, IPv6: %w", fams, name, ipam.ErrInvalidRequest)
	}
	var out []ipam.Family
	for _, f := range fams {
		var fam ipam.Family
		switch f {
		case v1.IPv4Protocol:
			fam = ipam.IPv4
		case v1.IPv6Protocol:
			fam = ipam.IPv6
		}
		if fam == 0 || slices.Contains(out, fam) {
			return nil, fmt.Errorf("spec.ipFamilies %v of Service %s is not one or two distinct families of IPv4, IPv6: %w", fams, name, ipam.ErrInvalidRequest)
		}
		out = append(out, fam)
	}
	return out, nil
}

// requestedIPs reads AnnotationLoadBalancerIPs, or else
// spec.loadBalancerIP, and returns the addresses and where they were read
// (for the allocator's errors; "" when neither requests any).
func requestedIPs(svc *v1.Service, name string) (ips []netip.Addr, src string, err error) {
	src, list := "annotation "+AnnotationLoadBalancerIPs, strings.TrimSpace(svc.Annotations[AnnotationLoadBalancerIPs])
	if list == "" {
		src, list = "spec.loadBalancerIP", strings.TrimSpace(svc.Spec.LoadBalancerIP)
		if strings.Contains(list, ",") {
			return nil, src, fmt.Errorf("%s %q of Service %s holds one address; list several in annotation %s: %w", src, list, name, AnnotationLoadBalancerIPs, ipam.ErrInvalidRequest)
		}
	}
	if list == "" {
		return nil, "", nil
	}
	// At most one address per family: a longer list is refused before it
	// is read.
	if n := strings.Count(list, ",") + 1; n > 2 {
		return nil, src, fmt.Errorf("%s of Service %s lists %d addresses; at most one per family: %w", src, name, n, ipam.ErrInvalidRequest)
	}
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		a, err := netip.ParseAddr(s)
		switch {
		case err != nil:
			return nil, src, fmt.Errorf("%s of Service %s: %q is not an IP address: %w", src, name, s, ipam.ErrInvalidRequest)
		case a.Zone() != "" || a.Is4In6():
			return nil, src, fmt.Errorf("%s of Service %s: %q is not a plain IPv4 or IPv6 address: %w", src, name, s, ipam.ErrInvalidRequest)
		}
		ips = append(ips, a)
	}
	return ips, src, nil
}
