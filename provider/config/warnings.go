package config

import (
	"fmt"
	"strings"

	"github.com/baremetal-ccm/baremetal-ccm/bgp"
)

// warnings returns the settings of f that are valid but probably wrong.
//
// The cloud config is a ConfigMap mounted into the DaemonSet, read by
// every replica: a BGP router ID in it is the same on every replica, and
// routers tell speakers apart by it. The file cannot know how many
// replicas read it, so a router ID there is always worth a warning.
func warnings(f *File) []string {
	var out []string
	if f.BGP != nil && f.BGP.RouterID != "" {
		out = append(out, fmt.Sprintf("bgp.routerID: %s is set in the cloud config, which every replica reads, so every replica would use the same BGP identifier; remove it and let each replica take its own from --bgp-router-id or $NODE_IP", f.BGP.RouterID))
	}
	if f.BGP != nil {
		for i, p := range f.BGP.Peers {
			if w := farDialWithoutMultihop(i, p, f.BGP.ASN); w != "" {
				out = append(out, w)
			}
		}
	}
	return out
}

// farDialWithoutMultihop warns of replicas of other racks that dial a
// rack's router over eBGP with TTL 1: a ToR is normally not on another
// rack's LAN, and the session would never come up.
func farDialWithoutMultihop(i int, p bgp.PeerFile, asn int64) string {
	if p.DialFrom == nil || p.Rack == "" || p.ASN == asn || p.EBGPMultihop > 0 {
		return ""
	}
	var far []string
	for _, r := range p.DialFrom.Racks {
		if r != p.Rack {
			far = append(far, r)
		}
	}
	if len(far) == 0 {
		return ""
	}
	return fmt.Sprintf("bgp.peers[%d] (%s): the replicas of %s dial %s's router over eBGP without ebgpMultihop (TTL 1); unless they share a LAN with it the session never comes up: set ebgpMultihop, or give them an entry of their own", i, p.Name, strings.Join(far, ", "), p.Rack)
}
