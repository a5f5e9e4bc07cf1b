package service

import (
	"fmt"
	"strconv"

	v1 "k8s.io/api/core/v1"

	"github.com/baremetal-ccm/baremetal-ccm/bgp"
)

// Annotations that set BGP attributes of a Service's VIPs.
const (
	// AnnotationBGPCommunities lists standard communities (RFC 1997):
	// "65000:100" or well-known names, comma-separated.
	AnnotationBGPCommunities = "baremetal-ccm.io/bgp-communities"
	// AnnotationBGPLargeCommunities lists large communities (RFC 8092):
	// "64512:1:2", comma-separated.
	AnnotationBGPLargeCommunities = "baremetal-ccm.io/bgp-large-communities"
	// AnnotationBGPLocalPref is the LOCAL_PREF sent to iBGP routers.
	AnnotationBGPLocalPref = "baremetal-ccm.io/bgp-local-pref"
)

// BGPAttributes are the path attributes a Service asks for.
type BGPAttributes struct {
	Communities      []bgp.Community
	LargeCommunities []bgp.LargeCommunity
	LocalPref        uint32
}

// ParseBGPAttributes reads the BGP attributes a Service asks for, or the
// first bad annotation. Whether the attributes fit one BGP message, and
// stay out of the ranges the speaker reserves, is the speaker's rule
// (bgp.CheckAttributes); this only parses.
func ParseBGPAttributes(s *v1.Service) (BGPAttributes, error) {
	var attrs BGPAttributes
	var err error
	if v := s.Annotations[AnnotationBGPCommunities]; v != "" {
		if attrs.Communities, err = bgp.ParseCommunities(v); err != nil {
			return attrs, fmt.Errorf("annotation %s=%q: %w", AnnotationBGPCommunities, shorten(v), err)
		}
	}
	if v := s.Annotations[AnnotationBGPLargeCommunities]; v != "" {
		if attrs.LargeCommunities, err = bgp.ParseLargeCommunities(v); err != nil {
			return attrs, fmt.Errorf("annotation %s=%q: %w", AnnotationBGPLargeCommunities, shorten(v), err)
		}
	}
	if v := s.Annotations[AnnotationBGPLocalPref]; v != "" {
		p, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return attrs, fmt.Errorf("annotation %s=%q: must be a number from 0 to 4294967295", AnnotationBGPLocalPref, shorten(v))
		}
		attrs.LocalPref = uint32(p)
	}
	return attrs, nil
}

// maxQuoted bounds how much of an annotation an error message repeats: an
// annotation may be 256 KiB, an Event message is cut at 1 KiB.
const maxQuoted = 120

func shorten(v string) string {
	if len(v) <= maxQuoted {
		return v
	}
	return v[:maxQuoted] + fmt.Sprintf("… (%d bytes)", len(v))
}
