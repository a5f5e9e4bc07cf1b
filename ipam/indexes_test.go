package ipam

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"go4.org/netipx"
)

// A rollback puts the indexes back exactly as they were at the last commit,
// whatever happened since: takes, gives, holders added and removed, lists
// rebuilt and dropped.
func TestIndexesRollback(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	ix := newIndexes()
	// Slots are addresses: 0.0.0.0-0.0.0.63.
	pool := &poolRow{Pool: Pool{Name: "p", Ranges: []netipx.IPRange{netipx.MustParseIPRange("0.0.0.0-0.0.0.63")}}, families: []Family{IPv4}}
	rebuildFree(&ix, pool)
	ix.commit()

	snapshot := func() string {
		var out []string
		for k, l := range ix.free {
			l.t.ascend(u128{}, u128{^uint64(0), ^uint64(0)}, func(last, first u128) {
				out = append(out, k.pool+" "+first.String()+"-"+last.String())
			})
			out = append(out, k.pool+" inUse "+u128{0, l.inUse}.String())
		}
		for k, hs := range ix.held[0] {
			for _, h := range hs {
				out = append(out, k.String()+" "+h.String())
			}
		}
		slices.Sort(out)
		return strings.Join(out, "\n")
	}
	rows := map[u128]*serviceRow{}
	step := func() {
		s := u128{0, uint64(r.IntN(64))}
		l := ix.list("p", IPv4)
		switch {
		case l != nil && r.IntN(20) == 0:
			ix.dropPool("p")
		case l == nil || r.IntN(20) == 0:
			rebuildFree(&ix, pool)
		case l.contains(s):
			if ix.take("p", IPv4, s) == nil {
				row := &serviceRow{namespace: "ns", name: s.String(), addrs: []netip.Addr{addrFromU128(IPv4, s)}}
				ix.addHolder(row)
				rows[s] = row
			}
		case rows[s] != nil:
			if ix.give("p", IPv4, s) == nil {
				ix.removeHolder(rows[s])
				delete(rows, s)
			}
		}
	}
	for range 1000 {
		before := snapshot()
		saved := make(map[u128]*serviceRow, len(rows))
		for k, v := range rows {
			saved[k] = v
		}
		for range r.IntN(16) {
			step()
		}
		if r.IntN(2) == 0 {
			ix.commit()
			continue
		}
		ix.rollback()
		rows = saved
		if after := snapshot(); after != before {
			t.Fatalf("after a rollback the indexes differ from the last commit:\nbefore %s\nafter %s", before, after)
		}
	}
}
