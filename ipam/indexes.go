package ipam

import (
	"maps"
	"net/netip"
	"slices"
	"strings"
)

// The indexes beside the store: the free lists of the pools (freelist.go),
// treaps of free intervals (treap.go), and the holders of each address (the
// services table's address index, below), a hash map per family.
//
// Both are derived from the services table, which stays the store of
// record, and both are kept out of memdb for one reason: go-memdb's
// persistent radix trees copy every node on the path of a write, with a
// channel and an LRU entry per node, so each index written costs a few KiB
// of garbage per allocation, and with a million addresses held the garbage
// collector's share of that is most of the time of an allocation (see
// docs/ipam.md). Here they are mutable structures changed in place under
// the Allocator's write lock. An undo log (undo.go) makes a call that fails
// leave them as they were, as the aborted memdb transaction leaves the
// store; readers that need them (Stats, Stale, Holders) take the lock.

// indexes are the free lists and the address index, and the undo log of
// the call under way. Only writers change them, under Allocator.mu.
type indexes struct {
	free map[poolFam]*freeList
	// held maps each held address to its holders, one map per family
	// (IPv4, IPv6), keyed by the address as a number. A hash map, not a treap:
	// allocation looks holders up several times, and a treap of a million
	// addresses is some 40 cache misses deep per lookup. Only reloads and
	// Restore need held addresses in order (heldIn), and sort them once.
	held [2]map[u128][]*serviceRow
	// sorted caches, per family, the held addresses in order for heldIn,
	// until the holders change or the call ends; nil: not computed.
	sorted [2][]u128
	// undo records, oldest first, how to reverse each change since the
	// last commit.
	undo []undoOp
}

func newIndexes() indexes {
	return indexes{
		free: make(map[poolFam]*freeList),
		held: [2]map[u128][]*serviceRow{make(map[u128][]*serviceRow), make(map[u128][]*serviceRow)},
	}
}

// holders returns the Services holding a, ordered by namespace and name.
// The slice is the index's own: do not change it.
func (ix *indexes) holders(a netip.Addr) []*serviceRow {
	return ix.held[familyOf(a).index()][u128FromAddr(a)]
}

// isHeld reports whether any Service holds a.
func (ix *indexes) isHeld(a netip.Addr) bool {
	return ix.holders(a) != nil
}

// heldIn calls fn, in address order, for the held addresses in [from, to].
// The first call of a write sorts the held addresses of the family: it is
// for reloads and Restore, which walk the pools, never for allocations.
func (ix *indexes) heldIn(from, to netip.Addr, fn func(netip.Addr)) {
	fam := familyOf(from)
	i := fam.index()
	if ix.sorted[i] == nil {
		ix.sorted[i] = slices.SortedFunc(maps.Keys(ix.held[i]), u128.cmp)
		if ix.sorted[i] == nil {
			ix.sorted[i] = []u128{}
		}
	}
	sorted := ix.sorted[i]
	lo, _ := slices.BinarySearchFunc(sorted, u128FromAddr(from), u128.cmp)
	last := u128FromAddr(to)
	for _, k := range sorted[lo:] {
		if last.less(k) {
			return
		}
		fn(addrFromU128(fam, k))
	}
}

// setHolders makes hs (nil: none) the holders of address a, logging the
// change for rollback.
func (ix *indexes) setHolders(fam Family, a u128, old, hs []*serviceRow) {
	ix.undo = append(ix.undo, undoOp{kind: undoHolders, fam: fam, last: a, holders: old})
	ix.setHoldersRaw(fam, a, hs)
}

func (ix *indexes) setHoldersRaw(fam Family, a u128, hs []*serviceRow) {
	i := fam.index()
	if hs == nil {
		delete(ix.held[i], a)
	} else {
		ix.held[i][a] = hs
	}
	ix.sorted[i] = nil
}

// addHolder records row as a holder of each of its addresses. Holder lists
// are copied on change, never changed in place: the undo log keeps the old
// ones.
func (ix *indexes) addHolder(row *serviceRow) {
	for _, a := range row.held() {
		old := ix.holders(a)
		i, _ := slices.BinarySearchFunc(old, row, compareRows)
		hs := make([]*serviceRow, 0, len(old)+1)
		hs = append(append(append(hs, old[:i]...), row), old[i:]...)
		ix.setHolders(familyOf(a), u128FromAddr(a), old, hs)
	}
}

// removeHolder drops row from the holders of each of its addresses.
func (ix *indexes) removeHolder(row *serviceRow) {
	for _, a := range row.held() {
		old := ix.holders(a)
		i := slices.Index(old, row)
		if i < 0 {
			continue
		}
		var hs []*serviceRow
		if len(old) > 1 {
			hs = slices.Concat(old[:i], old[i+1:])
		}
		ix.setHolders(familyOf(a), u128FromAddr(a), old, hs)
	}
}

// compareRows orders rows as the services table's id index does, by
// "namespace/name", so that holders are met in the order they were when
// the index was a memdb one (error messages name the first conflict).
func compareRows(x, y *serviceRow) int {
	return strings.Compare(x.String(), y.String())
}
