package bgp

import (
	"fmt"
	"math"
	"net/netip"

	api "github.com/osrg/gobgp/v3/api"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

var (
	familyIPv4 = &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	familyIPv6 = &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
)

func apiFamily(a netip.Addr) *api.Family {
	if a.Is4() {
		return familyIPv4
	}
	return familyIPv6
}

func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		// Marshalling our own well-formed messages cannot fail.
		panic(fmt.Sprintf("bgp: marshalling %T: %v", m, err))
	}
	return a
}

var originIGP = mustAny(&api.OriginAttribute{Origin: 0})

func nlriAny(p netip.Prefix) *anypb.Any {
	return mustAny(&api.IPAddressPrefix{Prefix: p.Addr().String(), PrefixLen: uint32(p.Bits())})
}

func nextHopAny(nlri *anypb.Any, fam *api.Family, nh netip.Addr) *anypb.Any {
	if nh.Is4() {
		return mustAny(&api.NextHopAttribute{NextHop: nh.String()})
	}
	return mustAny(&api.MpReachNLRIAttribute{Family: fam, NextHops: []string{nh.String()}, Nlris: []*anypb.Any{nlri}})
}

// vipAttrs are the marshalled attributes that all paths of one VIP share:
// the cache of pathAttributes. Marshalling once per VIP rather than once
// per path halves the cost of an announcement.
type vipAttrs struct {
	nlri      *anypb.Any
	family    *api.Family
	comms     *anypb.Any // nil: none
	localPref *anypb.Any // nil: not set
	// large holds the large-communities attribute per rack marker
	// (the zero marker: none), built on first use.
	large map[LargeCommunity]*anypb.Any
	user  []LargeCommunity
	// linkBW holds the extended-communities attribute per share, built
	// on first use.
	linkBW     map[uint32]*anypb.Any
	asn        uint32
	transitive bool
}

func encodedAttrs(a *pathAttributes) *vipAttrs {
	if v, ok := a.cache.(*vipAttrs); ok {
		return v
	}
	v := &vipAttrs{
		nlri:       nlriAny(a.Prefix),
		family:     apiFamily(a.Prefix.Addr()),
		user:       a.LargeCommunities,
		asn:        a.ASN,
		transitive: a.TransitiveLB,
	}
	if len(a.Communities) > 0 {
		cs := make([]uint32, len(a.Communities))
		for i, c := range a.Communities {
			cs[i] = uint32(c)
		}
		v.comms = mustAny(&api.CommunitiesAttribute{Communities: cs})
	}
	if a.LocalPref > 0 {
		v.localPref = mustAny(&api.LocalPrefAttribute{LocalPref: a.LocalPref})
	}
	a.cache = v
	return v
}

func (a *vipAttrs) largeFor(marker LargeCommunity) *anypb.Any {
	if v, ok := a.large[marker]; ok {
		return v
	}
	var list []*api.LargeCommunity
	for _, c := range a.user {
		list = append(list, &api.LargeCommunity{GlobalAdmin: c.Global, LocalData1: c.Local1, LocalData2: c.Local2})
	}
	if marker != (LargeCommunity{}) {
		list = append(list, &api.LargeCommunity{GlobalAdmin: marker.Global, LocalData1: marker.Local1, LocalData2: marker.Local2})
	}
	var v *anypb.Any
	if len(list) > 0 {
		v = mustAny(&api.LargeCommunitiesAttribute{Communities: list})
	}
	if a.large == nil {
		a.large = make(map[LargeCommunity]*anypb.Any, 2)
	}
	a.large[marker] = v
	return v
}

// linkBandwidthFor returns the extended-communities attribute holding the
// link-bandwidth community for share. GoBGP's LinkBandwidthExtended is
// the non-transitive type 0x40, sub-type 0x04, with a float32 of bytes
// per second; the transitive form (type 0x00) has no message of its own
// and is a two-octet-AS-specific community of sub-type 0x04 whose local
// administrator holds the float's bits.
func (a *vipAttrs) linkBandwidthFor(share uint32) *anypb.Any {
	if v, ok := a.linkBW[share]; ok {
		return v
	}
	var lb *anypb.Any
	if a.transitive {
		lb = mustAny(&api.TwoOctetAsSpecificExtended{IsTransitive: true, SubType: linkBandwidthSubType,
			Asn: linkBandwidthASN(a.asn), LocalAdmin: math.Float32bits(linkBandwidth(share))})
	} else {
		lb = mustAny(&api.LinkBandwidthExtended{Asn: linkBandwidthASN(a.asn), Bandwidth: linkBandwidth(share)})
	}
	v := mustAny(&api.ExtendedCommunitiesAttribute{Communities: []*anypb.Any{lb}})
	if a.linkBW == nil {
		a.linkBW = make(map[uint32]*anypb.Any, 4)
	}
	a.linkBW[share] = v
	return v
}

// apiPath is the GoBGP path for p.
func apiPath(p *routePath) *api.Path {
	a := encodedAttrs(p.Attrs)
	pattrs := make([]*anypb.Any, 0, 6)
	pattrs = append(pattrs, originIGP, nextHopAny(a.nlri, a.family, p.NextHop), mustAny(&api.MultiExitDiscAttribute{Med: p.MED}))
	if a.comms != nil {
		pattrs = append(pattrs, a.comms)
	}
	if l := a.largeFor(p.Marker); l != nil {
		pattrs = append(pattrs, l)
	}
	if a.localPref != nil {
		pattrs = append(pattrs, a.localPref)
	}
	if p.Share > 0 {
		pattrs = append(pattrs, a.linkBandwidthFor(p.Share))
	}
	return &api.Path{Family: a.family, Nlri: a.nlri, Pattrs: pattrs, Identifier: p.ID}
}

// withdrawPath identifies the local path (prefix, identifier) to delete.
// GoBGP finds it by source and identifier; deleting by UUID would walk
// the whole RIB.
func withdrawPath(p *routePath) *api.Path {
	prefix := p.Attrs.Prefix
	fam := apiFamily(prefix.Addr())
	nlri := nlriAny(prefix)
	return &api.Path{
		Family:     fam,
		Nlri:       nlri,
		Pattrs:     []*anypb.Any{originIGP, nextHopAny(nlri, fam, p.NextHop)},
		Identifier: p.ID,
		IsWithdraw: true,
	}
}
