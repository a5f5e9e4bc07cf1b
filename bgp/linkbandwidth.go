package bgp

import "fmt"

// Weighted ECMP: a next hop's Share travels as the BGP link-bandwidth
// extended community (draft-ietf-idr-link-bandwidth, now RFC 10005) on
// that node's path. Routers that honour it (FRR by default) install the
// VIP's route with next-hop weights in proportion to the values; routers
// that ignore it spread the traffic equally, as without it.
//
// The community is the two-octet-AS-specific sub-type 0x04 with our ASN
// (AS_TRANS 23456 for a four-octet ASN) and the bandwidth as an IEEE 754
// single-precision float of bytes per second; non-transitive (type 0x40)
// unless Advertisement.TransitiveLinkBandwidth asks for type 0x00.
// Non-transitive by default, because the value means something only to
// the ToR choosing among the nodes: routers do not pass it on to other
// ASes (FRR strips it towards eBGP peers). A ToR that wants its upstream
// to weight the racks sets its own value (see docs/weighted-ecmp.md).
// The transitive form is for the FRR releases that weight by it alone.

// DefaultWeightedECMP is bgp.weightedECMP's default: on. Routers that
// ignore the community spread equally as before, Cluster Services never
// carry it, and a Service opts out by annotation; docs/weighted-ecmp.md
// weighs the trade-off.
const DefaultWeightedECMP = true

const (
	// LinkBandwidthUnit is the bandwidth one unit of NextHop.Share
	// stands for: 125,000 bytes per second (1 Mbit/s), FRR's reference
	// bandwidth for "set extcommunity bandwidth num-multipaths", so a
	// router shows a share of n as n Mbps.
	LinkBandwidthUnit = 125_000
	// MaxShare bounds NextHop.Share: a larger one is sent as MaxShare.
	// MaxShare × LinkBandwidthUnit = 3.75e9 bytes/s stays below 2^32:
	// FRR up to 10.1 converts the float to a 32-bit integer of bytes per
	// second, which a larger float would overflow. A float32 holds
	// shares up to 1,073 exactly, larger ones within one part in 2^24.
	MaxShare = 30_000
)

// linkBandwidthSubType is the community's sub-type.
const linkBandwidthSubType = 0x04

// linkBandwidth returns the community's bandwidth for share: bytes per
// second.
func linkBandwidth(share uint32) float32 {
	return float32(min(share, MaxShare)) * LinkBandwidthUnit
}

// linkBandwidthASN is the community's two-octet AS field for our asn:
// AS_TRANS for a four-octet ASN (RFC 6793).
func linkBandwidthASN(asn uint32) uint32 {
	if asn > 0xFFFF {
		return asTrans
	}
	return asn
}

// checkShares reports an advertisement whose next hops mix zero and
// non-zero shares. Routers treat such a VIP inconsistently: FRR by
// default falls back to equal weights, with "bgp bestpath bandwidth
// skip-missing" it drops the paths without the community. The provider
// never asks for it.
func checkShares(hops []NextHop) error {
	with := 0
	for _, h := range hops {
		if h.Share > 0 {
			with++
		}
	}
	if with > 0 && with < len(hops) {
		return fmt.Errorf("%d of %d next hops have a share: give every next hop a share (weighted ECMP) or none", with, len(hops))
	}
	return nil
}
