package ipam

import (
	"encoding/binary"
	"fmt"
	"math/big"
	"math/bits"
	"net/netip"
)

// The free lists do not count in addresses but in slots: the positions of
// the addresses a pool may hand out, numbered in address order. For most pools
// a slot is simply the address read as a 128-bit number. For an IPv4 pool
// with avoidBuggyIPs, addresses ending in .0 and .255 are not slots at all:
// each /24 has 254 slots (x.1 to x.254), numbered without gaps, so that
// "the lowest free slot" is one index lookup and never a walk past the
// addresses to avoid.

// u128 is an unsigned 128-bit number: an IPv6 address, or a slot number.
type u128 struct{ hi, lo uint64 }

func (u u128) cmp(v u128) int {
	switch {
	case u.hi < v.hi:
		return -1
	case u.hi > v.hi:
		return 1
	case u.lo < v.lo:
		return -1
	case u.lo > v.lo:
		return 1
	}
	return 0
}

func (u u128) less(v u128) bool { return u.cmp(v) < 0 }

func (u u128) addOne() u128 {
	lo, carry := bits.Add64(u.lo, 1, 0)
	return u128{u.hi + carry, lo}
}

func (u u128) subOne() u128 {
	lo, borrow := bits.Sub64(u.lo, 1, 0)
	return u128{u.hi - borrow, lo}
}

func (u u128) isMax() bool { return u.hi == ^uint64(0) && u.lo == ^uint64(0) }

// count returns e-u+1, the number of slots in [u, e], as a big.Int: a /64 has
// 2^64 of them and a whole IPv6 space 2^128, neither fits a uint64.
func (u u128) count(e u128) *big.Int {
	lo, borrow := bits.Sub64(e.lo, u.lo, 0)
	hi, _ := bits.Sub64(e.hi, u.hi, borrow)
	n := new(big.Int).SetUint64(hi)
	n.Lsh(n, 64)
	n.Or(n, new(big.Int).SetUint64(lo))
	return n.Add(n, big.NewInt(1))
}

// bytes returns u as 16 big-endian bytes.
func (u u128) bytes() [16]byte {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], u.hi)
	binary.BigEndian.PutUint64(b[8:], u.lo)
	return b
}

func u128FromAddr(a netip.Addr) u128 {
	b := a.As16()
	if a.Is4() {
		return u128{0, uint64(binary.BigEndian.Uint32(b[12:]))}
	}
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

func addrFromU128(fam Family, u u128) netip.Addr {
	if fam == IPv4 {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(u.lo))
		return netip.AddrFrom4(b)
	}
	return netip.AddrFrom16(u.bytes())
}

// Family is an address family. Its value is what the index keys store,
// and sorts IPv4 before IPv6.
type Family byte

// The address families.
const (
	IPv4 Family = 4
	IPv6 Family = 6
)

func familyOf(a netip.Addr) Family {
	if a.Is4() {
		return IPv4
	}
	return IPv6
}

// index is 0 for IPv4 and 1 for IPv6, for per-family arrays.
func (f Family) index() int {
	if f == IPv4 {
		return 0
	}
	return 1
}

// valid reports whether f is IPv4 or IPv6.
func (f Family) valid() bool { return f == IPv4 || f == IPv6 }

// String returns "IPv4" or "IPv6", as Kubernetes spells families.
func (f Family) String() string {
	switch f {
	case IPv4:
		return "IPv4"
	case IPv6:
		return "IPv6"
	}
	return fmt.Sprintf("Family(%d)", byte(f))
}

// other returns the other family.
func (f Family) other() Family {
	if f == IPv4 {
		return IPv6
	}
	return IPv4
}

// slotMap numbers the addresses of one family of one pool.
type slotMap struct {
	fam Family
	// skipBuggy: an IPv4 pool with avoidBuggyIPs, whose slots leave out the
	// addresses ending in .0 and .255.
	skipBuggy bool
}

func newSlotMap(fam Family, avoidBuggyIPs bool) slotMap {
	return slotMap{fam: fam, skipBuggy: avoidBuggyIPs && fam == IPv4}
}

// isBuggy reports whether a is an IPv4 address ending in .0 or .255. Such
// addresses are legitimate host addresses inside a larger prefix, but some
// old client firmware and network stacks take any address ending in .0 or
// .255 for a network or broadcast address and drop traffic to it, whatever
// the prefix length. Operators with such clients set avoidBuggyIPs so that
// these addresses are never handed out.
func isBuggy(a netip.Addr) bool {
	if !a.Is4() {
		return false
	}
	last := a.As4()[3]
	return last == 0 || last == 255
}

// slot returns the slot of address a; ok is false when a has no slot (a .0 or
// .255 address in a pool that avoids them).
func (m slotMap) slot(a netip.Addr) (s u128, ok bool) {
	u := u128FromAddr(a)
	if !m.skipBuggy {
		return u, true
	}
	last := u.lo & 0xff
	if last == 0 || last == 255 {
		return u128{}, false
	}
	return u128{0, (u.lo>>8)*254 + last - 1}, true
}

// addr is the inverse of slot.
func (m slotMap) addr(s u128) netip.Addr {
	if !m.skipBuggy {
		return addrFromU128(m.fam, s)
	}
	return addrFromU128(IPv4, u128{0, (s.lo/254)<<8 | (s.lo%254 + 1)})
}

// slotRange returns the slots of the addresses in [from, to]; ok is false
// when there are none (a range of only .0 and .255 addresses).
func (m slotMap) slotRange(from, to netip.Addr) (first, last u128, ok bool) {
	if !m.skipBuggy {
		return u128FromAddr(from), u128FromAddr(to), true
	}
	f, t := u128FromAddr(from).lo, u128FromAddr(to).lo
	switch f & 0xff {
	case 0:
		f++
	case 255:
		f += 2 // the next /24's .1; beyond 255.255.255.255 when f is it
	}
	switch t & 0xff {
	case 255:
		t--
	case 0:
		if t == 0 {
			return u128{}, u128{}, false
		}
		t -= 2 // the previous /24's .254
	}
	if f > t || f > 0xffffffff {
		return u128{}, u128{}, false
	}
	first, _ = m.slot(addrFromU128(IPv4, u128{0, f}))
	last, _ = m.slot(addrFromU128(IPv4, u128{0, t}))
	return first, last, true
}

func (u u128) String() string {
	if u.hi == 0 {
		return fmt.Sprintf("%#x", u.lo)
	}
	return fmt.Sprintf("%#x%016x", u.hi, u.lo)
}
