package ipam

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
