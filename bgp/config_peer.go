package bgp

import (
	"fmt"
	"net/netip"
	"slices"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// parse validates one peer; speakerASN is bgp.asn (0 when invalid or
// unset), names and addrs hold the earlier peers' names and addresses,
// and all is every peer of the file.
func (pf *PeerFile) parse(path *field.Path, names map[string]int, addrs map[netip.Addr][]int, index int, all []PeerFile, speakerASN uint32) (Peer, field.ErrorList) {
	var errs field.ErrorList
	p := Peer{Name: pf.Name, Rack: pf.Rack, PasswordFile: pf.PasswordFile, Port: DefaultPeerPort, MaxPrefixes: DefaultMaxPrefixes}

	if pf.Name == "" {
		errs = append(errs, field.Required(path.Child("name"), "every peer needs a unique name"))
	} else if j, dup := names[pf.Name]; dup {
		errs = append(errs, field.Duplicate(path.Child("name"), fmt.Sprintf("%s (also peers[%d])", pf.Name, j)))
	} else {
		names[pf.Name] = index
	}
	errs = append(errs, pf.parseDialFrom(path, &p)...)
	errs = append(errs, pf.parseAddress(path, &p, addrs, index, all)...)

	if pf.ASN == 0 {
		errs = append(errs, field.Required(path.Child("asn"), "the router's ASN"))
	} else if msg := validASN(pf.ASN); msg != "" {
		errs = append(errs, field.Invalid(path.Child("asn"), pf.ASN, msg))
	} else {
		p.ASN = uint32(pf.ASN)
	}
	errs = append(errs, pf.parseTransport(path, &p, speakerASN)...)

	if pf.MaxPrefixes != nil {
		if m := *pf.MaxPrefixes; m < 1 || m > maxMaxPrefixes {
			errs = append(errs, field.Invalid(path.Child("maxPrefixes"), m, fmt.Sprintf("must be between 1 and %d (default %d)", maxMaxPrefixes, DefaultMaxPrefixes)))
		} else {
			p.MaxPrefixes = uint32(m)
		}
	}
	if pf.PasswordFile != "" {
		if _, err := readPassword(pf.PasswordFile); err != nil {
			errs = append(errs, field.Invalid(path.Child("passwordFile"), pf.PasswordFile, err.Error()))
		}
	}
	return p, errs
}

// parseAddress parses the router's address. A zone is required for an
// IPv6 link-local address (which names the interface) and refused for
// every other. An address is unique, except between peers whose dialFrom
// racks do not overlap: no replica peers with both.
func (pf *PeerFile) parseAddress(path *field.Path, p *Peer, addrs map[netip.Addr][]int, index int, all []PeerFile) field.ErrorList {
	fp := path.Child("address")
	if pf.Address == "" {
		return field.ErrorList{field.Required(fp, "the router's IPv4 or IPv6 address")}
	}
	a, err := netip.ParseAddr(pf.Address)
	switch {
	case err != nil:
		return field.ErrorList{field.Invalid(fp, pf.Address, "must be an IPv4 or IPv6 address")}
	case a.IsUnspecified() || a.IsMulticast():
		return field.ErrorList{field.Invalid(fp, pf.Address, "must be a unicast address")}
	case a.IsLinkLocalUnicast() && a.Is6() && a.Zone() == "":
		return field.ErrorList{field.Invalid(fp, pf.Address, "an IPv6 link-local address needs the interface as its zone, for example fe80::1%eth0")}
	case !(a.IsLinkLocalUnicast() && a.Is6()) && a.Zone() != "":
		return field.ErrorList{field.Invalid(fp, pf.Address, "only an IPv6 link-local address takes a zone")}
	}
	a = a.Unmap()
	p.Address = a
	for _, j := range addrs[a] {
		o := all[j]
		if !disjointDialFrom(pf.DialFrom, o.DialFrom) {
			return field.ErrorList{field.Duplicate(fp, fmt.Sprintf("%s (also peers[%d]; two peers may share an address only when both have dialFrom racks and none is in both)", pf.Address, j))}
		}
		// Entries of one router differ only in who dials it and how:
		// the same AS, port and rack, so that every replica sends it the
		// same paths.
		if o.ASN != pf.ASN || o.Port != pf.Port || o.Rack != pf.Rack {
			return field.ErrorList{field.Invalid(fp, pf.Address, fmt.Sprintf("peers[%d] has the same address with asn %d, port %d, rack %q; entries of one router must agree on asn, port and rack (they may differ in dialFrom, ebgpMultihop, ttlSecurity, localAddress and passwordFile)", j, o.ASN, o.Port, o.Rack))}
		}
	}
	addrs[a] = append(addrs[a], index)
	return nil
}

// parseDialFrom parses the replicas that peer with the router.
func (pf *PeerFile) parseDialFrom(path *field.Path, p *Peer) field.ErrorList {
	if pf.DialFrom == nil {
		return nil
	}
	fp := path.Child("dialFrom", "racks")
	if len(pf.DialFrom.Racks) == 0 {
		return field.ErrorList{field.Required(fp, "the racks whose replicas peer with this router; omit dialFrom for every replica")}
	}
	var errs field.ErrorList
	for i, r := range pf.DialFrom.Racks {
		switch {
		case r == "":
			errs = append(errs, field.Required(fp.Index(i), "a rack name"))
		case slices.Contains(pf.DialFrom.Racks[:i], r):
			errs = append(errs, field.Duplicate(fp.Index(i), r))
		}
	}
	if len(errs) == 0 {
		p.DialFromRacks = slices.Clone(pf.DialFrom.Racks)
	}
	return errs
}

// disjointDialFrom tells whether no replica peers with both of two routers.
func disjointDialFrom(a, b *DialFromFile) bool {
	if a == nil || b == nil {
		return false
	}
	for _, r := range a.Racks {
		if slices.Contains(b.Racks, r) {
			return false
		}
	}
	return true
}

// parseTransport parses the session's port, source address, multihop and
// TTL security.
func (pf *PeerFile) parseTransport(path *field.Path, p *Peer, speakerASN uint32) field.ErrorList {
	var errs field.ErrorList
	if pf.Port != 0 {
		if pf.Port < 1 || pf.Port > 65535 {
			errs = append(errs, field.Invalid(path.Child("port"), pf.Port, "must be a TCP port 1-65535 (default 179)"))
		} else {
			p.Port = uint16(pf.Port)
		}
	}
	switch {
	case pf.EBGPMultihop < 0 || pf.EBGPMultihop > 255:
		errs = append(errs, field.Invalid(path.Child("ebgpMultihop"), pf.EBGPMultihop, "must be a TTL 0-255 (0: directly connected)"))
	case pf.EBGPMultihop > 0 && speakerASN != 0 && pf.ASN == int64(speakerASN):
		errs = append(errs, field.Invalid(path.Child("ebgpMultihop"), pf.EBGPMultihop, fmt.Sprintf("applies to eBGP only; this peer's asn is bgp.asn (%d), an iBGP session: remove it", speakerASN)))
	default:
		p.EBGPMultihop = uint8(pf.EBGPMultihop)
	}
	switch {
	case pf.TTLSecurity < 0 || pf.TTLSecurity > maxTTLSecurityHops:
		errs = append(errs, field.Invalid(path.Child("ttlSecurity"), pf.TTLSecurity, fmt.Sprintf("must be a hop count 1-%d, or 0 (off)", maxTTLSecurityHops)))
	case pf.TTLSecurity > 0 && pf.EBGPMultihop > 0:
		errs = append(errs, field.Invalid(path.Child("ttlSecurity"), pf.TTLSecurity, "cannot be combined with ebgpMultihop: GTSM already bounds the hops"))
	default:
		p.TTLSecurity = uint8(pf.TTLSecurity)
	}
	if pf.LocalAddress != "" {
		a, err := netip.ParseAddr(pf.LocalAddress)
		switch {
		case err != nil || a.Zone() != "":
			errs = append(errs, field.Invalid(path.Child("localAddress"), pf.LocalAddress, "must be an IPv4 or IPv6 address without zone"))
		case a.IsUnspecified() || a.IsMulticast():
			errs = append(errs, field.Invalid(path.Child("localAddress"), pf.LocalAddress, "must be a unicast address"))
		case p.Address.IsValid() && a.Unmap().Is4() != p.Address.Is4():
			errs = append(errs, field.Invalid(path.Child("localAddress"), pf.LocalAddress, "must be of the same address family as address"))
		default:
			p.LocalAddress = a.Unmap()
		}
	}
	return errs
}
