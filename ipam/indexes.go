package ipam

import "slices"

// The indexes beside the store: the free lists of the pools (freelist.go),
// treaps of free intervals, and the holders of each address (the services
// table's address index, table_services.go), a hash map.
//
// Both are derived from the services table, which stays the store of
// record, and both are kept out of memdb for one reason: go-memdb's
// persistent radix trees copy every node on the path of a write, with a
// channel and an LRU entry per node, so each index written costs a few KiB
// of garbage per allocation, and with a million addresses held the garbage
// collector's share of that is most of the time of an allocation (see
// docs/ipam.md). Here they are mutable structures changed in place under
// the Allocator's write lock. An undo log makes a call that fails leave them as
// they were, as the aborted memdb transaction leaves the store; readers
// that need them (Stats, Stale) take the lock.

// treap is an ordered map from u128 keys (free slots) to V. Lookups,
// inserts and removals are one descent: O(log n) in expectation.
type treap[V any] struct {
	root *tnode[V]
}

// tnode is a node of a treap. prio is a hash of key: random priorities make
// a treap balanced in expectation, and a hash keeps its shape, and so the
// tests, deterministic.
type tnode[V any] struct {
	key         u128
	val         V
	prio        uint64
	left, right *tnode[V]
}

func keyPrio(k u128) uint64 {
	// splitmix64's finaliser: every bit of the key moves every bit of the
	// priority, so that dense runs of keys get unrelated priorities.
	z := k.lo ^ (k.hi * 0x9e3779b97f4a7c15)
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// atOrAfter returns the node with the lowest key not below k, nil if there
// is none.
func (t *treap[V]) atOrAfter(k u128) *tnode[V] {
	var best *tnode[V]
	for n := t.root; n != nil; {
		if n.key.less(k) {
			n = n.right
		} else {
			best, n = n, n.left
		}
	}
	return best
}

// get returns the node of key k, nil if there is none.
func (t *treap[V]) get(k u128) *tnode[V] {
	for n := t.root; n != nil; {
		switch c := k.cmp(n.key); {
		case c < 0:
			n = n.left
		case c > 0:
			n = n.right
		default:
			return n
		}
	}
	return nil
}

// insert adds key k with value v; k must not be in t.
func (t *treap[V]) insert(k u128, v V) {
	t.root = insertNode(t.root, &tnode[V]{key: k, val: v, prio: keyPrio(k)})
}

func insertNode[V any](t, n *tnode[V]) *tnode[V] {
	if t == nil {
		return n
	}
	if n.key.less(t.key) {
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

// remove removes key k and returns its value; ok is false if k was not in t.
func (t *treap[V]) remove(k u128) (v V, ok bool) {
	var n *tnode[V]
	t.root, n = removeNode(t.root, k)
	if n == nil {
		return v, false
	}
	return n.val, true
}

func removeNode[V any](t *tnode[V], k u128) (root, removed *tnode[V]) {
	if t == nil {
		return nil, nil
	}
	switch c := k.cmp(t.key); {
	case c < 0:
		t.left, removed = removeNode(t.left, k)
	case c > 0:
		t.right, removed = removeNode(t.right, k)
	default:
		return joinNodes(t.left, t.right), t
	}
	return t, removed
}

// joinNodes joins two treaps, every key of a below every key of b.
func joinNodes[V any](a, b *tnode[V]) *tnode[V] {
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

// ascend calls fn in key order for the keys in [from, to].
func (t *treap[V]) ascend(from, to u128, fn func(k u128, v V)) {
	var walk func(*tnode[V])
	walk = func(n *tnode[V]) {
		if n == nil {
			return
		}
		if from.less(n.key) {
			walk(n.left)
		}
		if !n.key.less(from) && !to.less(n.key) {
			fn(n.key, n.val)
		}
		if n.key.less(to) {
			walk(n.right)
		}
	}
	walk(t.root)
}

// indexes are the free lists and the address index, and the undo log of
// the call under way. Only writers change them, under Allocator.mu.
type indexes struct {
	free map[poolFam]*freeList
	// held maps each held address to its holders, one map per family
	// (v4, v6), keyed by the address as a number. A hash map, not a treap:
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

type undoKind uint8

const (
	undoInsert  undoKind = iota // a free interval was inserted: remove it
	undoRemove                  // a free interval was removed: insert it again
	undoFirst                   // a free interval's first slot changed: restore it
	undoInUse                   // a free list's inUse changed: restore it
	undoList                    // a pool family's free list was replaced or dropped: restore it
	undoHolders                 // an address's holders changed: restore them
)

// undoOp reverses one change. Free intervals are found again by their
// last slot, not by node, as a removal and an insert of the same interval
// make a new node.
type undoOp struct {
	kind        undoKind
	list        *freeList     // the free list changed (undoList: the one replaced, nil for none)
	first, last u128          // the interval (undoFirst: the old first slot)
	inUse       uint64        // undoInUse: the old count
	key         poolFam       // undoList: the list's pool and family
	fam         family        // undoHolders: the address's family
	holders     []*serviceRow // undoHolders: the old holders, nil for none
}

// maxKeptUndo is the capacity of undo log kept between calls, for the few
// entries an allocation makes without allocating.
const maxKeptUndo = 64

// reserve makes room for n more undo entries, so that a bulk change (a
// Restore of many rows) grows the log once.
func (ix *indexes) reserve(n int) {
	ix.undo = slices.Grow(ix.undo, n)
}

// commit makes the changes since the last commit permanent.
func (ix *indexes) commit() {
	if cap(ix.undo) > maxKeptUndo {
		ix.undo = nil // a Restore's log: do not keep it
	} else {
		clear(ix.undo) // drop the references to replaced lists and rows
		ix.undo = ix.undo[:0]
	}
	ix.sorted = [2][]u128{}
}

// rollback reverses the changes since the last commit, newest first.
func (ix *indexes) rollback() {
	for i := len(ix.undo) - 1; i >= 0; i-- {
		op := &ix.undo[i]
		l := op.list
		switch op.kind {
		case undoInsert:
			l.t.remove(op.last)
		case undoRemove:
			l.t.insert(op.last, op.first)
		case undoFirst:
			l.t.get(op.last).val = op.first
		case undoInUse:
			l.inUse = op.inUse
		case undoList:
			if l == nil {
				delete(ix.free, op.key)
			} else {
				ix.free[op.key] = l
			}
		case undoHolders:
			ix.setHoldersRaw(op.fam, op.last, op.holders)
		}
	}
	ix.commit()
}
