package bgp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"maps"
	"math"
	"net/netip"
	"slices"
	"testing"

	"github.com/osrg/gobgp/v3/pkg/apiutil"
	packet "github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

// extendedCommunities returns the wire form of the extended-communities
// attribute GoBGP builds for p (attribute header included), or nil when
// the path has none.
func extendedCommunities(t *testing.T, p *routePath) []byte {
	t.Helper()
	attrs, err := apiutil.UnmarshalPathAttributes(apiPath(p).Pattrs)
	if err != nil {
		t.Fatalf("decoding the path's attributes: %v", err)
	}
	for _, a := range attrs {
		if ec, ok := a.(*packet.PathAttributeExtendedCommunities); ok {
			b, err := ec.Serialize()
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
	return nil
}

// linkBandwidthWire is the attribute with one link-bandwidth community:
// flags optional+transitive (0xC0), type 16, length 8, then the type
// (0x40 non-transitive or 0x00 transitive two-octet AS specific),
// sub-type 0x04, the AS and the IEEE float of bytes per second.
func linkBandwidthWire(typ byte, as uint16, bytesPerSecond float32) []byte {
	b := []byte{0xC0, 16, 8, typ, 0x04, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint16(b[5:7], as)
	binary.BigEndian.PutUint32(b[7:11], math.Float32bits(bytesPerSecond))
	return b
}

// TestLinkBandwidthWire: a path with a share carries exactly one
// link-bandwidth community of share × 125,000 bytes/s with our ASN
// (AS_TRANS for a four-octet one), capped at MaxShare, non-transitive
// unless asked otherwise; a path without a share carries no extended
// community at all.
func TestLinkBandwidthWire(t *testing.T) {
	prefix := netip.MustParsePrefix("203.0.113.10/32")
	nh := netip.MustParseAddr("198.51.100.11")
	for _, tc := range []struct {
		name       string
		asn        uint32
		share      uint32
		transitive bool
		want       []byte
	}{
		{"no share", 64512, 0, false, nil},
		{"no share, transitive", 64512, 0, true, nil},
		{"one endpoint", 64512, 1, false, linkBandwidthWire(0x40, 64512, 125_000)},
		{"three endpoints", 64512, 3, false, linkBandwidthWire(0x40, 64512, 375_000)},
		{"three endpoints, transitive", 64512, 3, true, linkBandwidthWire(0x00, 64512, 375_000)},
		{"four-octet ASN", 4_200_000_000, 2, false, linkBandwidthWire(0x40, 23456, 250_000)},
		{"MaxShare", 64512, MaxShare, false, linkBandwidthWire(0x40, 64512, 3.75e9)},
		{"above MaxShare, transitive", 64512, MaxShare + 1, true, linkBandwidthWire(0x00, 64512, 3.75e9)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &routePath{Attrs: &pathAttributes{ASN: tc.asn, Prefix: prefix, TransitiveLB: tc.transitive}, ID: 1, NextHop: nh, Share: tc.share}
			if got := extendedCommunities(t, p); !bytes.Equal(got, tc.want) {
				t.Errorf("extended communities of a path with share %d = % x, want % x", tc.share, got, tc.want)
			}
		})
	}
}

// TestLinkBandwidthExact: shares up to 1,073 are sent exactly (a float32
// holds share × 125,000 without rounding while share × 15,625 < 2^24);
// larger ones are off by at most one part in 2^24, which no router's
// weights resolve. The largest stays below 2^32 bytes/s: FRR up to 10.1
// converts the float to a 32-bit integer.
func TestLinkBandwidthExact(t *testing.T) {
	for share := uint32(1); share <= MaxShare; share++ {
		got, want := float64(linkBandwidth(share)), float64(share)*LinkBandwidthUnit
		if share <= 1073 && got != want {
			t.Fatalf("linkBandwidth(%d) = %v, want %v exactly", share, got, want)
		}
		if math.Abs(got-want) > want/(1<<24) {
			t.Fatalf("linkBandwidth(%d) = %v, want %v within one part in 2^24", share, got, want)
		}
	}
	if top := float64(linkBandwidth(MaxShare)); top >= 1<<32 {
		t.Errorf("linkBandwidth(MaxShare) = %v bytes/s, want below 2^32", top)
	}
}

// TestNormalizeShares: shares survive normalization, are capped at
// MaxShare, and a VIP mixing next hops with and without a share is
// refused.
func TestNormalizeShares(t *testing.T) {
	a := nh("a", "198.51.100.1", "")
	b := nh("b", "198.51.100.2", "")
	withShare := func(h NextHop, s uint32) NextHop { h.Share = s; return h }
	prefix := netip.MustParsePrefix("203.0.113.1/32")
	for _, tc := range []struct {
		name    string
		hops    []NextHop
		want    []uint32 // shares of a, b
		wantErr bool
	}{
		{"none", []NextHop{a, b}, []uint32{0, 0}, false},
		{"all", []NextHop{withShare(a, 1), withShare(b, 3)}, []uint32{1, 3}, false},
		{"capped", []NextHop{withShare(a, MaxShare+5), withShare(b, 1)}, []uint32{MaxShare, 1}, false},
		{"mixed", []NextHop{withShare(a, 2), b}, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := normalize(Advertisement{Prefix: prefix, NextHops: tc.hops}, speakerASN, testExportPrefixes)
			if tc.wantErr {
				if !errors.Is(err, ErrInvalidAdvertisement) {
					t.Fatalf("normalize() error = %v, want ErrInvalidAdvertisement", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for i, h := range out.NextHops {
				if h.Share != tc.want[i] {
					t.Errorf("next hop %s: share %d, want %d", h.Node, h.Share, tc.want[i])
				}
			}
		})
	}
}

// TestReconcileShares: a change of one node's share re-sends that node's
// path alone, under its identifier; the same shares again send nothing;
// dropping the shares (an opt-out) re-sends every path without the
// community.
func TestReconcileShares(t *testing.T) {
	ctx := testContext(t)
	s, fr := startFakeSpeaker(t, Config{Peers: []Peer{fakePeer("tor", "192.0.2.101", "")}})
	r := fr.last()
	prefix := netip.MustParsePrefix("203.0.113.20/32")
	transitive := false
	adv := func(shares ...uint32) Advertisement {
		a := Advertisement{Prefix: prefix, TransitiveLinkBandwidth: transitive}
		for i, sh := range shares {
			h := nh(string(rune('a'+i)), "198.51.100."+string(rune('1'+i)), "")
			h.Share = sh
			a.NextHops = append(a.NextHops, h)
		}
		return a
	}
	sharesOf := func() map[string]uint32 {
		r.mu.Lock()
		defer r.mu.Unlock()
		out := map[string]uint32{}
		for _, p := range r.paths {
			out[p.NextHop.String()] = p.Share
		}
		return out
	}
	r.takeOps()
	steps := []struct {
		name       string
		shares     []uint32
		transitive bool
		wantOps    map[string]int
	}{
		{"announce 1:2:3", []uint32{1, 2, 3}, false, map[string]int{"addPath": 3}},
		{"same shares", []uint32{1, 2, 3}, false, map[string]int{}},
		{"one node scales 1 -> 3", []uint32{3, 2, 3}, false, map[string]int{"addPath": 1}},
		{"transitive", []uint32{3, 2, 3}, true, map[string]int{"addPath": 3}},
		{"opt-out", []uint32{0, 0, 0}, true, map[string]int{"addPath": 3}},
		{"still none", []uint32{0, 0, 0}, true, map[string]int{}},
	}
	for _, st := range steps {
		transitive = st.transitive
		ids := pathIDs(r, prefix)
		if err := s.Announce(ctx, adv(st.shares...)); err != nil {
			t.Fatalf("%s: Announce() = %v", st.name, err)
		}
		if got := opCounts(r.takeOps()); !maps.Equal(got, st.wantOps) {
			t.Errorf("%s: router changes %v, want %v", st.name, got, st.wantOps)
		}
		got := sharesOf()
		for i, want := range st.shares {
			addr := "198.51.100." + string(rune('1'+i))
			if got[addr] != want {
				t.Errorf("%s: path via %s has share %d, want %d", st.name, addr, got[addr], want)
			}
		}
		if len(ids) > 0 && !slices.Equal(ids, pathIDs(r, prefix)) {
			t.Errorf("%s: identifiers %v, want unchanged %v", st.name, pathIDs(r, prefix), ids)
		}
	}
}
