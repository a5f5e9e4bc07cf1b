package ipam

import (
	"fmt"
	"net/netip"
	"slices"

	memdb "github.com/hashicorp/go-memdb"
	"go4.org/netipx"
)

// The free lists: the free slots of each pool and family, as maximal
// intervals [first, last], and the number of the family's addresses held.
//
// They are not a memdb table. They are an index derived from the services
// table (rebuildFreeTxn recomputes them from it), consulted and changed by
// writers only, and go-memdb's persistent radix trees make every write copy
// the nodes on its path: an allocation that also wrote a free interval and a
// usage row cost two more index writes, each a few KiB of garbage and most
// of the time of an allocation with a million addresses held (see
// docs/ipam.md). So each pool and family has a mutable treap, changed in
// place under the Allocator's write lock, and an undo log makes a call that
// fails leave them as they were, as an aborted memdb transaction leaves the
// store.
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
	fam  family
}

// freeList is the free slots of one family of one pool, and how many of its
// addresses are held (an address shared by several Services counts once).
type freeList struct {
	root  *freeNode
	inUse uint64
}

// freeNode is a free interval [first, last] in the treap. prio is a hash of
// last: a treap with random priorities is balanced in expectation, and a
// hash keeps the shape (and the tests) deterministic.
type freeNode struct {
	first, last u128
	prio        uint64
	left, right *freeNode
}

func nodePrio(last u128) uint64 {
	// splitmix64's finaliser: every bit of the key moves every bit of the
	// priority, so dense runs of slots get unrelated priorities.
	z := last.lo ^ (last.hi * 0x9e3779b97f4a7c15)
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// atOrAfter returns the interval with the lowest last slot not below s, nil
// if there is none.
func (l *freeList) atOrAfter(s u128) *freeNode {
	var best *freeNode
	for n := l.root; n != nil; {
		if n.last.less(s) {
			n = n.right
		} else {
			best, n = n, n.left
		}
	}
	return best
}

// endingAt returns the interval whose last slot is s, nil if there is none.
func (l *freeList) endingAt(s u128) *freeNode {
	if n := l.atOrAfter(s); n != nil && n.last == s {
		return n
	}
	return nil
}

// contains reports whether slot s is free.
func (l *freeList) contains(s u128) bool {
	n := l.atOrAfter(s)
	return n != nil && !s.less(n.first)
}

// ascend calls fn for every interval in slot order.
func (l *freeList) ascend(fn func(first, last u128)) {
	var walk func(*freeNode)
	walk = func(n *freeNode) {
		if n != nil {
			walk(n.left)
			fn(n.first, n.last)
			walk(n.right)
		}
	}
	walk(l.root)
}

func insertNode(t, n *freeNode) *freeNode {
	if t == nil {
		return n
	}
	if n.last.less(t.last) {
		t.left = insertNode(t.left, n)
		if t.left.prio > t.prio {
			l := t.left
			t.left, l.right = l.right, t
			return l
		}
	} else {
		t.right = insertNode(t.right, n)
		if t.right.prio > t.prio {
			r := t.right
			t.right, r.left = r.left, t
			return r
		}
	}
	return t
}

// deleteNode removes the interval ending at last from t, and returns the new
// root and the removed node (nil if there was none).
func deleteNode(t *freeNode, last u128) (root, removed *freeNode) {
	if t == nil {
		return nil, nil
	}
	switch c := last.cmp(t.last); {
	case c < 0:
		t.left, removed = deleteNode(t.left, last)
	case c > 0:
		t.right, removed = deleteNode(t.right, last)
	default:
		return joinNodes(t.left, t.right), t
	}
	return t, removed
}

// joinNodes joins two treaps, every key of a below every key of b.
func joinNodes(a, b *freeNode) *freeNode {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	case a.prio > b.prio:
		a.right = joinNodes(a.right, b)
		return a
	default:
		b.left = joinNodes(a, b.left)
		return b
	}
}

// freeLists holds the free list of every pool and family, and the undo log
// of the call under way. Only writers use it, under Allocator.mu.
type freeLists struct {
	lists map[poolFam]*freeList
	// undo records, oldest first, how to reverse each change since the
	// last commit.
	undo []undoOp
	// spare are nodes removed from the lists, reused by the next inserts so
	// that an allocation and a release cycle allocate nothing; at most
	// maxSpare of them, linked by right.
	spare  *freeNode
	nspare int
}

const maxSpare = 256

type undoKind uint8

const (
	undoInsert undoKind = iota // an interval was inserted: remove it
	undoRemove                 // an interval was removed: insert it again
	undoFirst                  // an interval's first slot changed: restore it
	undoInUse                  // a list's inUse changed: restore it
	undoList                   // a pool family's list was replaced or dropped: restore it
)

// undoOp reverses one change. Intervals are found again by their last
// slot, not by node: a node may be reused after its removal.
type undoOp struct {
	kind        undoKind
	list        *freeList
	first, last u128 // undoInsert: last; undoRemove: both; undoFirst: the old first, and last
	inUse       uint64
	key         poolFam // undoList: the list replaced (list, nil for none)
}

func newFreeLists() freeLists {
	return freeLists{lists: make(map[poolFam]*freeList)}
}

// list returns the free list of pool and fam, nil if the pool does not
// offer fam.
func (f *freeLists) list(pool string, fam family) *freeList {
	return f.lists[poolFam{pool, fam}]
}

// commit makes the changes since the last commit permanent.
func (f *freeLists) commit() {
	clear(f.undo) // drop the references to replaced lists
	f.undo = f.undo[:0]
}

// rollback reverses the changes since the last commit, newest first.
func (f *freeLists) rollback() {
	for i := len(f.undo) - 1; i >= 0; i-- {
		op := &f.undo[i]
		l := op.list
		switch op.kind {
		case undoInsert:
			var n *freeNode
			l.root, n = deleteNode(l.root, op.last)
			f.recycle(n)
		case undoRemove:
			l.root = insertNode(l.root, f.node(op.first, op.last))
		case undoFirst:
			l.endingAt(op.last).first = op.first
		case undoInUse:
			l.inUse = op.inUse
		case undoList:
			if l == nil {
				delete(f.lists, op.key)
			} else {
				f.lists[op.key] = l
			}
		}
	}
	f.commit()
}

func (f *freeLists) node(first, last u128) *freeNode {
	n := f.spare
	if n == nil {
		n = new(freeNode)
	} else {
		f.spare, f.nspare = n.right, f.nspare-1
	}
	*n = freeNode{first: first, last: last, prio: nodePrio(last)}
	return n
}

func (f *freeLists) recycle(n *freeNode) {
	if n != nil && f.nspare < maxSpare {
		*n = freeNode{right: f.spare}
		f.spare, f.nspare = n, f.nspare+1
	}
}

func (f *freeLists) insert(l *freeList, first, last u128) {
	l.root = insertNode(l.root, f.node(first, last))
	f.undo = append(f.undo, undoOp{kind: undoInsert, list: l, last: last})
}

func (f *freeLists) remove(l *freeList, last u128) {
	var n *freeNode
	l.root, n = deleteNode(l.root, last)
	f.undo = append(f.undo, undoOp{kind: undoRemove, list: l, first: n.first, last: n.last})
	f.recycle(n)
}

func (f *freeLists) setFirst(l *freeList, n *freeNode, first u128) {
	f.undo = append(f.undo, undoOp{kind: undoFirst, list: l, first: n.first, last: n.last})
	n.first = first
}

func (f *freeLists) addInUse(l *freeList, delta int) error {
	if delta < 0 && l.inUse < uint64(-delta) {
		return fmt.Errorf("held addresses would go below zero")
	}
	f.undo = append(f.undo, undoOp{kind: undoInUse, list: l, inUse: l.inUse})
	l.inUse = uint64(int64(l.inUse) + int64(delta))
	return nil
}

// setList replaces the list of pool and fam by l (nil: drops it).
func (f *freeLists) setList(pool string, fam family, l *freeList) {
	key := poolFam{pool, fam}
	f.undo = append(f.undo, undoOp{kind: undoList, list: f.lists[key], key: key})
	if l == nil {
		delete(f.lists, key)
	} else {
		f.lists[key] = l
	}
}

// lowest returns the lowest free slot of pool and fam; ok is false when
// there is none.
func (f *freeLists) lowest(pool string, fam family) (s u128, ok bool) {
	l := f.list(pool, fam)
	if l == nil || l.root == nil {
		return u128{}, false
	}
	return l.atOrAfter(u128{}).first, true
}

// take removes the free slot s of pool and fam from its interval, and
// counts the address as held.
func (f *freeLists) take(pool string, fam family, s u128) error {
	l := f.list(pool, fam)
	if l == nil {
		return fmt.Errorf("taking slot %v of pool %q: the pool has no free list for %s", s, pool, fam)
	}
	n := l.atOrAfter(s)
	if n == nil || s.less(n.first) {
		return fmt.Errorf("taking slot %v of pool %q: not free", s, pool)
	}
	first, last := n.first, n.last
	switch {
	case first == last:
		f.remove(l, last)
	case s == first:
		f.setFirst(l, n, s.addOne()) // the part above s keeps the key
	case s == last:
		f.remove(l, last)
		f.insert(l, first, s.subOne())
	default:
		f.setFirst(l, n, s.addOne())
		f.insert(l, first, s.subOne())
	}
	return f.addInUse(l, +1)
}

// give returns slot s to the free list of pool and fam, merging it with the
// intervals next to it, and counts the address as no longer held.
func (f *freeLists) give(pool string, fam family, s u128) error {
	l := f.list(pool, fam)
	if l == nil {
		return fmt.Errorf("giving back slot %v of pool %q: the pool has no free list for %s", s, pool, fam)
	}
	next := l.atOrAfter(s)
	if next != nil && !s.less(next.first) {
		return fmt.Errorf("giving back slot %v of pool %q: already free", s, pool)
	}
	if next != nil && (s.isMax() || next.first != s.addOne()) {
		next = nil // not adjacent
	}
	var prev *freeNode
	if s != (u128{}) {
		prev = l.endingAt(s.subOne())
	}
	switch {
	case prev != nil && next != nil:
		first := prev.first
		f.remove(l, prev.last)
		f.setFirst(l, next, first)
	case prev != nil:
		first := prev.first
		f.remove(l, prev.last)
		f.insert(l, first, s)
	case next != nil:
		f.setFirst(l, next, s)
	default:
		f.insert(l, s, s)
	}
	return f.addInUse(l, -1)
}

// dropPool drops the free lists of pool.
func (f *freeLists) dropPool(pool string) {
	for _, fam := range []family{v4, v6} {
		if f.list(pool, fam) != nil {
			f.setList(pool, fam, nil)
		}
	}
}

// rebuildFreeTxn computes pool's free lists and usage from its ranges and
// the addresses held in them. It touches every held address of the pool
// once: it runs when a pool is created or changed and after Restore, never
// per allocation.
func rebuildFreeTxn(txn *memdb.Txn, free *freeLists, pool *poolRow) error {
	free.dropPool(pool.Name)
	for _, fam := range pool.families {
		slots := newSlotMap(fam, pool.AvoidBuggyIPs)
		ranges := slices.Clone(pool.Ranges)
		ranges = slices.DeleteFunc(ranges, func(r netipx.IPRange) bool { return familyOf(r.From()) != fam })
		slices.SortFunc(ranges, func(a, b netipx.IPRange) int { return a.From().Compare(b.From()) })

		l := &freeList{}
		var pending *freeNode // the last interval, not inserted yet: the next may extend it
		emit := func(first, last u128) {
			if pending != nil && !pending.last.isMax() && pending.last.addOne() == first {
				pending.last = last
				return
			}
			if pending != nil {
				pending.prio = nodePrio(pending.last)
				l.root = insertNode(l.root, pending)
			}
			pending = &freeNode{first: first, last: last}
		}
		for _, r := range ranges {
			first, last, ok := slots.slotRange(r.From(), r.To())
			if !ok {
				continue
			}
			next, done := first, false // next slot not yet accounted for
			err := heldInTxn(txn, r.From(), r.To(), func(a netip.Addr) {
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
			if err != nil {
				return fmt.Errorf("rebuilding the free list of pool %q: %w", pool.Name, err)
			}
			if !done {
				emit(next, last)
			}
		}
		if pending != nil {
			pending.prio = nodePrio(pending.last)
			l.root = insertNode(l.root, pending)
		}
		free.setList(pool.Name, fam, l)
	}
	return nil
}
