package ipam

import (
	"fmt"
	"net/netip"
	"slices"

	"go4.org/netipx"
)

// The free lists: the free slots of each pool and family, as maximal
// intervals [first, last], and the number of the family's addresses held.
//
// They are not a memdb table but one of the indexes beside it (see
// indexes.go): derived from the services table (rebuildFree recomputes them
// from the held addresses), used by writers only, changed in place.
//
// The treap is ordered by the *last* slot of an interval, so that every
// lookup is one descent: the first interval whose last slot is at or after
// slot s is the only one that can hold s, and the first at or after slot 0
// holds the lowest free slot. Taking the lowest slot changes an interval's
// first slot, not its key: an in-place change. Allocation and release are
// therefore O(log n) in the number of intervals, which is at most one more
// than the number of held addresses plus ranges, whatever the size of the
// pool: a /64 costs what a /28 does.

// poolFam names the free list of one family of one pool.
type poolFam struct {
	pool string
	fam  Family
}

// freeList is the free slots of one family of one pool, as a treap of
// intervals from last slot to first, and how many of the family's
// addresses are held (an address shared by several Services counts once).
type freeList struct {
	t     treap[u128]
	inUse uint64
}

// contains reports whether slot s is free.
func (l *freeList) contains(s u128) bool {
	n := l.t.atOrAfter(s)
	return n != nil && !s.less(n.val)
}

// list returns the free list of pool and fam, nil if the pool does not
// offer fam.
func (ix *indexes) list(pool string, fam Family) *freeList {
	return ix.free[poolFam{pool, fam}]
}

func (ix *indexes) insertFree(l *freeList, first, last u128) {
	l.t.insert(last, first)
	ix.undo = append(ix.undo, undoOp{kind: undoInsert, list: l, last: last})
}

func (ix *indexes) removeFree(l *freeList, last u128) {
	first, _ := l.t.remove(last)
	ix.undo = append(ix.undo, undoOp{kind: undoRemove, list: l, first: first, last: last})
}

func (ix *indexes) setFirst(l *freeList, n *tnode[u128], first u128) {
	ix.undo = append(ix.undo, undoOp{kind: undoFirst, list: l, first: n.val, last: n.key})
	n.val = first
}

func (ix *indexes) addInUse(l *freeList, delta int) error {
	if delta < 0 && l.inUse < uint64(-delta) {
		return fmt.Errorf("held addresses would go below zero")
	}
	ix.undo = append(ix.undo, undoOp{kind: undoInUse, list: l, inUse: l.inUse})
	l.inUse = uint64(int64(l.inUse) + int64(delta))
	return nil
}

// setList replaces the free list of pool and fam by l (nil: drops it).
func (ix *indexes) setList(pool string, fam Family, l *freeList) {
	key := poolFam{pool, fam}
	ix.undo = append(ix.undo, undoOp{kind: undoList, list: ix.free[key], key: key})
	if l == nil {
		delete(ix.free, key)
	} else {
		ix.free[key] = l
	}
}

// lowest returns the lowest free slot of pool and fam; ok is false when
// there is none.
func (ix *indexes) lowest(pool string, fam Family) (s u128, ok bool) {
	l := ix.list(pool, fam)
	if l == nil || l.t.root == nil {
		return u128{}, false
	}
	return l.t.atOrAfter(u128{}).val, true
}

// take removes the free slot s of pool and fam from its interval, and
// counts the address as held.
func (ix *indexes) take(pool string, fam Family, s u128) error {
	l := ix.list(pool, fam)
	if l == nil {
		return fmt.Errorf("taking slot %v of pool %q: the pool has no free list for %s", s, pool, fam)
	}
	n := l.t.atOrAfter(s)
	if n == nil || s.less(n.val) {
		return fmt.Errorf("taking slot %v of pool %q: not free", s, pool)
	}
	first, last := n.val, n.key
	switch {
	case first == last:
		ix.removeFree(l, last)
	case s == first:
		ix.setFirst(l, n, s.addOne()) // the part above s keeps the key
	case s == last:
		ix.removeFree(l, last)
		ix.insertFree(l, first, s.subOne())
	default:
		ix.setFirst(l, n, s.addOne())
		ix.insertFree(l, first, s.subOne())
	}
	return ix.addInUse(l, +1)
}

// give returns slot s to the free list of pool and fam, merging it with the
// intervals next to it, and counts the address as no longer held.
func (ix *indexes) give(pool string, fam Family, s u128) error {
	l := ix.list(pool, fam)
	if l == nil {
		return fmt.Errorf("giving back slot %v of pool %q: the pool has no free list for %s", s, pool, fam)
	}
	next := l.t.atOrAfter(s)
	if next != nil && !s.less(next.val) {
		return fmt.Errorf("giving back slot %v of pool %q: already free", s, pool)
	}
	if next != nil && (s.isMax() || next.val != s.addOne()) {
		next = nil // not adjacent
	}
	var prev *tnode[u128]
	if s != (u128{}) {
		prev = l.t.get(s.subOne())
	}
	switch {
	case prev != nil && next != nil:
		first := prev.val
		ix.removeFree(l, prev.key)
		ix.setFirst(l, next, first)
	case prev != nil:
		first := prev.val
		ix.removeFree(l, prev.key)
		ix.insertFree(l, first, s)
	case next != nil:
		ix.setFirst(l, next, s)
	default:
		ix.insertFree(l, s, s)
	}
	return ix.addInUse(l, -1)
}

// dropPool drops the free lists of pool.
func (ix *indexes) dropPool(pool string) {
	for _, fam := range []Family{IPv4, IPv6} {
		if ix.list(pool, fam) != nil {
			ix.setList(pool, fam, nil)
		}
	}
}

// rebuildFree computes pool's free lists and usage from its ranges and
// the addresses held in them. It touches every held address of the pool
// once: it runs when a pool is created or changed and after Restore, never
// per allocation.
func rebuildFree(ix *indexes, pool *poolRow) {
	ix.dropPool(pool.Name)
	for _, fam := range pool.families {
		slots := newSlotMap(fam, pool.AvoidBuggyIPs)
		ranges := slices.Clone(pool.Ranges)
		ranges = slices.DeleteFunc(ranges, func(r netipx.IPRange) bool { return familyOf(r.From()) != fam })
		slices.SortFunc(ranges, func(a, b netipx.IPRange) int { return a.From().Compare(b.From()) })

		l := &freeList{}
		var pending [2]u128 // the last interval, not inserted yet: the next may extend it
		havePending := false
		emit := func(first, last u128) {
			if havePending && !pending[1].isMax() && pending[1].addOne() == first {
				pending[1] = last
				return
			}
			if havePending {
				l.t.insert(pending[1], pending[0])
			}
			pending, havePending = [2]u128{first, last}, true
		}
		for _, r := range ranges {
			first, last, ok := slots.slotRange(r.From(), r.To())
			if !ok {
				continue
			}
			next, done := first, false // next slot not yet accounted for
			ix.heldIn(r.From(), r.To(), func(a netip.Addr) {
				s, ok := slots.slot(a)
				if !ok || done {
					return
				}
				if next.less(s) {
					emit(next, s.subOne())
				}
				l.inUse++
				if s == last {
					done = true
				} else {
					next = s.addOne()
				}
			})
			if !done {
				emit(next, last)
			}
		}
		if havePending {
			l.t.insert(pending[1], pending[0])
		}
		ix.setList(pool.Name, fam, l)
	}
}
