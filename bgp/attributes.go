package bgp

import (
	"errors"
	"fmt"
	"slices"
)

// MaxAttributeBytes bounds what the communities of one VIP take in a BGP
// UPDATE: 4 bytes per community plus 12 per large community (RFC 1997,
// RFC 8092), counted after removing duplicates.
//
// Derivation: a BGP message is at most 4,096 bytes (RFC 4271; the speaker
// does not negotiate RFC 8654's extended messages), and every path is
// sent in an UPDATE of its own with its one NLRI. Besides the two
// community attributes such an UPDATE holds at most: header 19, withdrawn
// and attribute lengths 2+2, ORIGIN 4, AS_PATH 9 (our 4-byte ASN; 16
// allowed), NEXT_HOP 7, MULTI_EXIT_DISC 7, LOCAL_PREF 7, the two
// community attribute headers 4+4, the rack marker 12 (stripped on
// export, counted anyway), and the NLRI with its ADD-PATH identifier: 9
// bytes for IPv4, or for IPv6 an MP_REACH_NLRI of 62 (header 4, AFI/SAFI
// 3, next-hop length 1, global and link-local next hops 32, reserved 1,
// NLRI 21). That is at most 160 bytes. 3,072 leaves more than 800 bytes
// to spare. (GoBGP v3 crashes in its UPDATE packer on a path of more than
// 4,096 bytes, and drops an IPv6 one silently.)
const MaxAttributeBytes = 3072

// markerTag is Local1 of the large community that tags a path with its
// node's rack ("RACK" in ASCII). Global is our ASN, Local2 the rack's
// index. The export policy strips every marker, so asn:markerTag:* is
// reserved: a VIP may not carry it.
const markerTag uint32 = 0x5241434B

func marker(asn, rackIndex uint32) LargeCommunity {
	return LargeCommunity{Global: asn, Local1: markerTag, Local2: rackIndex}
}

// ErrInvalidAttributes is wrapped by CheckAttributes' errors.
var ErrInvalidAttributes = errors.New("invalid BGP attributes")

// CheckAttributes reports whether a VIP may carry these communities when
// the speaker's ASN is asn: whether, without duplicates, they fit
// MaxAttributeBytes, and no large community is in the range
// asn:1380008779:* (0x5241434B, "RACK") that the speaker reserves for its
// rack markers. It is the speaker's own check (Announce and SetAll refuse
// a VIP that fails it), exported so that callers can check a Service's
// annotations, and each holder's of a shared VIP, before they merge them.
// Every problem is reported; errors wrap ErrInvalidAttributes.
func CheckAttributes(asn uint32, communities []Community, large []LargeCommunity) error {
	var errs []error
	nc := len(slices.Compact(slices.Sorted(slices.Values(communities))))
	lcs := slices.Clone(large)
	slices.SortFunc(lcs, compareLarge)
	lcs = slices.Compact(lcs)
	if size := 4*nc + 12*len(lcs); size > MaxAttributeBytes {
		errs = append(errs, fmt.Errorf("%d communities and %d large communities take %d bytes, more than the %d that fit a BGP UPDATE (4 bytes a community, 12 a large one)",
			nc, len(lcs), size, MaxAttributeBytes))
	}
	for _, c := range lcs {
		if c.Global == asn && c.Local1 == markerTag {
			errs = append(errs, fmt.Errorf("large community %s is in the range %d:%d:* that the speaker reserves for its rack markers", c, asn, markerTag))
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidAttributes, errors.Join(errs...))
}
