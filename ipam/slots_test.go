package ipam

import (
	"math/big"
	"net/netip"
	"testing"

	"go4.org/netipx"
)

func TestSlotsRoundTrip(t *testing.T) {
	for _, tt := range []struct {
		addr       string
		avoid      bool
		wantNoSlot bool
	}{
		{addr: "192.0.2.0"},
		{addr: "192.0.2.255"},
		{addr: "192.0.2.1", avoid: true},
		{addr: "192.0.2.254", avoid: true},
		{addr: "192.0.2.0", avoid: true, wantNoSlot: true},
		{addr: "192.0.2.255", avoid: true, wantNoSlot: true},
		{addr: "2001:db8::"},
		{addr: "2001:db8::ff", avoid: true}, // avoidBuggyIPs is about IPv4 only
		{addr: "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"},
	} {
		a := netip.MustParseAddr(tt.addr)
		m := newSlotMap(familyOf(a), tt.avoid)
		s, ok := m.slot(a)
		if ok == tt.wantNoSlot {
			t.Errorf("slot(%s, avoid=%v) ok = %v, want %v", a, tt.avoid, ok, !tt.wantNoSlot)
			continue
		}
		if ok {
			if got := m.addr(s); got != a {
				t.Errorf("addr(slot(%s, avoid=%v)) = %s, want %s", a, tt.avoid, got, a)
			}
		}
	}
}

// Slots of an avoidBuggyIPs pool have no gaps: x.254 and the next /24's .1
// are neighbours, so a free interval may run across /24 boundaries.
func TestSlotsAvoidBuggyAreContiguous(t *testing.T) {
	m := newSlotMap(IPv4, true)
	a := netip.MustParseAddr("192.0.2.254")
	s, _ := m.slot(a)
	next := a.Next().Next().Next() // past .255 and .0
	if got := m.addr(s.addOne()); got != next {
		t.Errorf("addr(slot(%s)+1) = %s, want %s", a, got, next)
	}
	if got, _ := m.slot(next); got != s.addOne() {
		t.Errorf("slot(%s) = %v, want %v", next, got, s.addOne())
	}
}

func TestSlotRange(t *testing.T) {
	for _, tt := range []struct {
		rng    string
		avoid  bool
		want   string // as an address range; "" for no slots
		wantN  int64
		wantNB string // count, for the ones beyond int64
	}{
		{rng: "192.0.2.0-192.0.2.255", want: "192.0.2.0-192.0.2.255", wantN: 256},
		{rng: "192.0.2.0-192.0.2.255", avoid: true, want: "192.0.2.1-192.0.2.254", wantN: 254},
		{rng: "192.0.2.255-192.0.2.255", avoid: true},
		{rng: "192.0.2.0-192.0.2.0", avoid: true},
		{rng: "192.0.2.254-192.0.2.255", avoid: true, want: "192.0.2.254-192.0.2.254", wantN: 1},
		{rng: "203.0.113.7-203.0.113.9", avoid: true, want: "203.0.113.7-203.0.113.9", wantN: 3},
		{rng: "2001:db8::-2001:db8::ffff:ffff:ffff:ffff", want: "2001:db8::-2001:db8::ffff:ffff:ffff:ffff", wantNB: "18446744073709551616"},
		{rng: "2001:db8::-2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", want: "2001:db8::-2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", wantNB: "79228162514264337593543950336"},
	} {
		r := netipx.MustParseIPRange(tt.rng)
		m := newSlotMap(familyOf(r.From()), tt.avoid)
		first, last, ok := m.slotRange(r.From(), r.To())
		if !ok {
			if tt.want != "" {
				t.Errorf("slotRange(%s, avoid=%v) has no slots, want %s", r, tt.avoid, tt.want)
			}
			continue
		}
		got := netipx.IPRangeFrom(m.addr(first), m.addr(last)).String()
		if got != tt.want {
			t.Errorf("slotRange(%s, avoid=%v) = %s, want %s", r, tt.avoid, got, tt.want)
		}
		wantN := big.NewInt(tt.wantN)
		if tt.wantNB != "" {
			wantN, _ = new(big.Int).SetString(tt.wantNB, 10)
		}
		if n := first.count(last); n.Cmp(wantN) != 0 {
			t.Errorf("count of slotRange(%s, avoid=%v) = %v, want %v", r, tt.avoid, n, wantN)
		}
	}
}
