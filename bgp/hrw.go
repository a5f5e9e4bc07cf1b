package bgp

import (
	"net/netip"
	"sort"
)

// weight is the rendezvous (highest-random-weight) score of node for the
// VIP. It depends on nothing else, so a node joining or leaving changes no
// other node's score, and it is the same in every replica and every
// process (FNV-1a with a splitmix64 finalizer, no random seed): replicas
// that announce the same VIP choose the same nodes.
func weight(vip netip.Addr, node string) uint64 {
	return seedOf(vip).weight(node)
}

// seed is the rendezvous hash's state after the VIP: every node's weight
// for one VIP continues from it.
type seed uint64

const fnvPrime64 = 1099511628211

func seedOf(vip netip.Addr) seed {
	const offset64 = 14695981039346656037
	h := uint64(offset64)
	b := vip.As16()
	for _, c := range b {
		h ^= uint64(c)
		h *= fnvPrime64
	}
	h ^= 0xFF // separator: no node name starts the same as an address
	h *= fnvPrime64
	return seed(h)
}

// weight is node's weight for the VIP of s.
func (s seed) weight(node string) uint64 {
	h := uint64(s)
	for i := 0; i < len(node); i++ {
		h ^= uint64(node[i])
		h *= fnvPrime64
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

// med turns a weight into a MULTI_EXIT_DISC: the highest weight gets the
// lowest MED, so GoBGP's best path (what a router without ADD-PATH gets)
// is the path via the highest-weight node announced. The MED is internal:
// the export policy sends 0.
func med(w uint64) uint32 { return uint32(^w >> 32) }

type rankedHop struct {
	NextHop
	weight uint64
}

// rank orders next hops by descending weight for the VIP (ties, which need
// a 64-bit collision, by node name).
func rank(vip netip.Addr, hops []NextHop) []rankedHop {
	r := make([]rankedHop, len(hops))
	for i, h := range hops {
		r[i] = rankedHop{NextHop: h, weight: weight(vip, h.Node)}
	}
	sort.Slice(r, func(i, j int) bool {
		if r[i].weight != r[j].weight {
			return r[i].weight > r[j].weight
		}
		return r[i].Node < r[j].Node
	})
	return r
}

// views says which subsets of nodes the routers take paths via.
type views struct {
	all   bool            // some router has no rack: it takes paths via every node
	racks map[string]bool // racks that have routers of their own
}

func viewsOf(peers []Peer) views {
	v := views{racks: map[string]bool{}}
	for _, p := range peers {
		if p.Rack == "" {
			v.all = true
		} else {
			v.racks[p.Rack] = true
		}
	}
	return v
}

func (v views) equal(o views) bool {
	if v.all != o.all || len(v.racks) != len(o.racks) {
		return false
	}
	for r := range v.racks {
		if !o.racks[r] {
			return false
		}
	}
	return true
}

// choose returns, in rank order, the next hops to announce: for every view
// its first k next hops in rank order (the rendezvous subset), and the
// union of those. Because every view cuts the same ranking, a node that is
// in the first k overall is also in the first k of its rack, so a rack's
// router never gets more than k paths.
func (v views) choose(ranked []rankedHop, k int) []rankedHop {
	out := make([]rankedHop, 0, min(len(ranked), k*(len(v.racks)+1)))
	var perRack map[string]int
	if len(v.racks) > 0 {
		perRack = make(map[string]int, len(v.racks))
	}
	for i, h := range ranked {
		take := v.all && i < k
		if h.Rack != "" && v.racks[h.Rack] {
			if perRack[h.Rack] < k {
				take = true
			}
			perRack[h.Rack]++
		}
		if take {
			out = append(out, h)
		}
	}
	return out
}
