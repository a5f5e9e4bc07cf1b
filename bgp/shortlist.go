package bgp

import (
	"net/netip"
	"sort"
)

// Shortlist returns the next hops among hops that the speaker may announce
// for vip when it gives each router at most k paths: the first k in
// rendezvous order and, when byRack, the first k of each rack. From the
// shortlist the speaker chooses the same paths as from all of hops,
// whatever racks its routers have (views.choose cuts the same ranking),
// so a caller with many nodes hands over, and keeps, at most
// k × (racks + 1) next hops per VIP rather than every node: 16 instead of
// 1,000 on a rackless cluster of 1,000 nodes.
//
// Without byRack the shortlist is the first k alone, and a rack's routers
// get a path only when one of those k is in their rack: the VIP is
// carried by k nodes in the whole cluster.
//
// The shortlist keeps the order of hops. bar tells which node that is not
// in hops would enter the shortlist.
func Shortlist(vip netip.Addr, hops []NextHop, k int, byRack bool) (shortlist []NextHop, bar Bar) {
	bar.byRack = byRack
	if k < 1 {
		k = 1
	}
	if len(hops) <= k && !byRack {
		return append([]NextHop(nil), hops...), bar
	}
	s := seedOf(vip)
	overall := topK{k: k}
	var racks map[string]*topK
	for i, h := range hops {
		r := scored{index: i, weight: s.weight(h.Node), node: h.Node}
		overall.offer(r)
		if !byRack || h.Rack == "" {
			continue
		}
		if racks == nil {
			racks = map[string]*topK{}
		}
		t := racks[h.Rack]
		if t == nil {
			t = &topK{k: k}
			racks[h.Rack] = t
		}
		t.offer(r)
	}
	in := make([]bool, len(hops))
	for _, r := range overall.best {
		in[r.index] = true
	}
	if overall.full() {
		bar.all = overall.last().weight
	}
	for name, t := range racks {
		for _, r := range t.best {
			in[r.index] = true
		}
		if t.full() {
			if bar.racks == nil {
				bar.racks = map[string]uint64{}
			}
			bar.racks[name] = t.last().weight
		}
	}
	for i, h := range hops {
		if in[i] {
			shortlist = append(shortlist, h)
		}
	}
	return shortlist, bar
}

// Bar tells whether a node that is not among the next hops a shortlist
// was made from would enter it. The zero Bar admits every node.
type Bar struct {
	// all is the weight of the k-th next hop overall; 0 while there are
	// fewer than k.
	all    uint64
	byRack bool
	// racks holds, for each rack with k next hops or more, the weight of
	// its k-th; a node of another rack enters as one of its rack's first.
	racks map[string]uint64
}

// Admits reports whether the node, in rack, would be in vip's shortlist if
// it were one of the next hops. It may say yes for a node that ties the
// last one (a 64-bit collision): callers recompute such a VIP for nothing,
// never miss one.
func (b Bar) Admits(vip netip.Addr, node, rack string) bool {
	w := weight(vip, node)
	if w >= b.all {
		return true
	}
	if !b.byRack || rack == "" {
		return false
	}
	last, full := b.racks[rack]
	return !full || w >= last
}

// scored is one next hop of a shortlist with its weight.
type scored struct {
	index  int
	weight uint64
	node   string
}

// before is rank's order: descending weight, then node name.
func (r scored) before(o scored) bool {
	if r.weight != o.weight {
		return r.weight > o.weight
	}
	return r.node < o.node
}

// topK keeps the first k of the next hops offered, in rank order.
type topK struct {
	k    int
	best []scored
}

func (t *topK) full() bool   { return len(t.best) >= t.k }
func (t *topK) last() scored { return t.best[len(t.best)-1] }
func (t *topK) offer(r scored) {
	if t.full() && !r.before(t.last()) {
		return
	}
	pos := sort.Search(len(t.best), func(j int) bool { return r.before(t.best[j]) })
	if !t.full() {
		t.best = append(t.best, scored{})
	}
	copy(t.best[pos+1:], t.best[pos:len(t.best)-1])
	t.best[pos] = r
}
