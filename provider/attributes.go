package provider

import (
	"slices"

	v1 "k8s.io/api/core/v1"

	"github.com/baremetal-ccm/baremetal-ccm/bgp"
	"github.com/baremetal-ccm/baremetal-ccm/provider/service"
)

// mergeAttributes merges the BGP attributes that a VIP's holders ask for,
// oldest holder first. A holder whose annotations are bad, or whose
// attributes would make the merged set too large for one BGP message,
// contributes nothing: one bad holder loses its attributes, never the VIP
// its route, and the other holders keep theirs. EnsureLoadBalancer reports
// the bad annotation to its Service.
func mergeAttributes(asn uint32, holders []*v1.Service) service.BGPAttributes {
	var merged service.BGPAttributes
	for _, s := range holders {
		attrs, err := service.ParseBGPAttributes(s)
		if err != nil {
			continue
		}
		next := service.BGPAttributes{
			Communities:      union(merged.Communities, attrs.Communities),
			LargeCommunities: union(merged.LargeCommunities, attrs.LargeCommunities),
			LocalPref:        merged.LocalPref,
		}
		if next.LocalPref == 0 {
			next.LocalPref = attrs.LocalPref
		}
		if checkBGPAttributes(asn, next) != nil {
			continue
		}
		merged = next
	}
	return merged
}

// union returns a followed by the elements of b that a lacks.
func union[T comparable](a, b []T) []T {
	out := a
	for _, x := range b {
		if !slices.Contains(out, x) {
			if len(out) == len(a) {
				out = slices.Clone(a)
			}
			out = append(out, x)
		}
	}
	return out
}

// checkBGPAttributes is the speaker's rule for what one VIP may carry.
func checkBGPAttributes(asn uint32, a service.BGPAttributes) error {
	return bgp.CheckAttributes(asn, a.Communities, a.LargeCommunities)
}
