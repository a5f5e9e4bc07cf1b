package ipam

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	memdb "github.com/hashicorp/go-memdb"
	v1 "k8s.io/api/core/v1"
)

// RestoreReport says what Restore did with the Services' status.
type RestoreReport struct {
	// Restored lists the addresses restored, per Service, in the order of
	// the Services given.
	Restored []Assignment
	// Stale lists the restored addresses that lie in no pool. Their
	// Services keep them (they are what clients use today); no other
	// Service gets them.
	Stale []Assignment
	// Rejected lists the status addresses not restored, and why. A Service
	// that lost an address gets a fresh one at its next Allocate.
	Rejected []Rejection
}

// Rejection is a status address Restore did not restore. Err wraps
// ErrAddressTaken or ErrSharingRefused when an older Service keeps the
// address (the message names it), ErrInvalidStatus when the entry is not an
// address or is a second address of its family.
type Rejection struct {
	Namespace, Name string
	IP              string
	Err             error
}

// claim is what a Service's status says it holds, and what its spec asks.
type claim struct {
	namespace, name string
	created         time.Time
	want            want // valid false when the spec cannot be read
	share           sharing
	addrs           []netip.Addr
}

// Restore loads the assignments the Services' status shows
// (status.loadBalancer.ingress[].ip), on start-up, before the first
// Allocate, so that a restart or fail-over changes no address. Pass the
// Services this controller manages.
//
// When Services claim one address and may not share it, the older Service
// (creationTimestamp, then namespace/name) keeps it and the others are
// reported. Addresses in no pool are kept and reported stale, never moved.
// A Service the store already knows keeps what it holds: its status is not
// read.
func (a *Allocator) Restore(svcs []*v1.Service) RestoreReport {
	var report RestoreReport
	claims := make([]claim, 0, len(svcs))
	for _, svc := range svcs {
		c := claim{namespace: svc.Namespace, name: svc.Name, created: svc.CreationTimestamp.Time}
		if req, err := newRequest(svc); err == nil {
			c.want, c.share = req.want, req.share
		} else {
			c.share = newSharing(svc)
		}
		for i, ing := range svc.Status.LoadBalancer.Ingress {
			if ing.IP == "" {
				continue // a hostname: not ours
			}
			addr, err := netip.ParseAddr(strings.TrimSpace(ing.IP))
			if err != nil || addr.Zone() != "" || addr.Is4In6() {
				report.Rejected = append(report.Rejected, Rejection{svc.Namespace, svc.Name, ing.IP,
					fmt.Errorf("status.loadBalancer.ingress[%d].ip %q of Service %s/%s is not an IP address: %w", i, ing.IP, svc.Namespace, svc.Name, ErrInvalidStatus)})
				continue
			}
			if slices.Contains(c.addrs, addr) {
				continue
			}
			if prev, ok := (&serviceRow{addrs: c.addrs}).addrOf(familyOf(addr)); ok {
				report.Rejected = append(report.Rejected, Rejection{svc.Namespace, svc.Name, ing.IP,
					fmt.Errorf("status.loadBalancer.ingress[%d].ip %s of Service %s/%s is a second %s address after %s; a Service holds one per family: %w",
						i, addr, svc.Namespace, svc.Name, familyOf(addr), prev, ErrInvalidStatus)})
				continue
			}
			c.addrs = append(c.addrs, addr)
		}
		if len(c.addrs) > 0 {
			claims = append(claims, c)
		}
	}

	txn := a.write()
	defer a.done(txn)
	r, err := restoreTxn(txn, &a.ix, claims)
	if err != nil {
		// Only a broken store fails here; nothing was restored.
		for _, c := range claims {
			for _, addr := range c.addrs {
				report.Rejected = append(report.Rejected, Rejection{c.namespace, c.name, addr.String(), err})
			}
		}
		return report
	}
	a.commit(txn)
	report.Restored = r.Restored
	report.Stale = r.Stale
	report.Rejected = append(report.Rejected, r.Rejected...)
	return report
}

// restoreTxn restores claims, the older Service first. Conflicts are
// between the claims on one address only, so it sorts the claims by
// address, then age, and settles each address in turn; then it writes the
// rows in one go and rebuilds the free lists of the pools concerned: a bulk
// load of n Services costs a sort, n inserts and one pass over those pools,
// not n allocations.
func restoreTxn(txn *memdb.Txn, ix *indexes, claims []claim) (RestoreReport, error) {
	var report RestoreReport
	raw, err := txn.First(tableServices, indexID)
	if err != nil {
		return report, fmt.Errorf("looking up Services: %w", err)
	}
	emptyStore := raw == nil // at start-up: no claim meets a stored holder

	order := make([]int, len(claims))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(i, j int) int {
		a, b := &claims[i], &claims[j]
		return cmp.Or(a.created.Compare(b.created), cmp.Compare(a.namespace, b.namespace), cmp.Compare(a.name, b.name), cmp.Compare(i, j))
	})
	rank := make([]int, len(claims))
	for r, i := range order {
		rank[i] = r
	}

	// One entry per claimed address, by address, then age.
	type entry struct {
		addr  netip.Addr
		claim int
	}
	entries := make([]entry, 0, len(claims))
	for i := range claims {
		c := &claims[i]
		if !emptyStore {
			if old, err := serviceTxn(txn, c.namespace, c.name); err != nil {
				return report, err
			} else if old != nil {
				continue // known: keeps what it holds
			}
		}
		for _, addr := range c.addrs {
			entries = append(entries, entry{addr, i})
		}
	}
	slices.SortFunc(entries, func(x, y entry) int {
		return cmp.Or(x.addr.Compare(y.addr), cmp.Compare(rank[x.claim], rank[y.claim]))
	})

	ranges, err := rangesTxn(txn)
	if err != nil {
		return report, err
	}
	type holder struct {
		name  string
		share sharing
	}
	var holders []holder
	kept := make([][]netip.Addr, len(claims))
	stale := make(map[netip.Addr]bool)
	rebuild := make(map[string]bool)
	ri := 0 // ranges[ri] is the first range not below the current address
	for g := 0; g < len(entries); {
		addr := entries[g].addr
		end := g + 1
		for end < len(entries) && entries[end].addr == addr {
			end++
		}
		holders = holders[:0]
		if !emptyStore {
			for _, h := range ix.holders(addr) {
				holders = append(holders, holder{h.String(), h.share})
			}
		}
		held := len(holders) > 0
		accepted := false
		for _, e := range entries[g:end] {
			c := &claims[e.claim]
			svc := c.namespace + "/" + c.name
			var err error
			for _, h := range holders {
				if err = c.share.conflict(svc, addr, h.name, h.share); err != nil {
					err = fmt.Errorf("status of Service %s shows %s, but Service %s is older or was there first: %w", svc, addr, h.name, err)
					break
				}
			}
			if err != nil {
				report.Rejected = append(report.Rejected, Rejection{c.namespace, c.name, addr.String(), err})
				continue
			}
			holders = append(holders, holder{svc, c.share})
			kept[e.claim] = append(kept[e.claim], addr)
			accepted = true
		}
		g = end
		if !accepted {
			continue
		}

		// Where the address lies: addresses and ranges are both in order.
		for ri < len(ranges) && (familyOf(ranges[ri].to) < familyOf(addr) || familyOf(ranges[ri].to) == familyOf(addr) && ranges[ri].to.Less(addr)) {
			ri++
		}
		inPool := false
		if ri < len(ranges) && familyOf(ranges[ri].to) == familyOf(addr) && !addr.Less(ranges[ri].from) {
			r := ranges[ri]
			_, inPool = newSlotMap(familyOf(addr), r.avoidBuggyIPs).slot(addr)
			if inPool && !held {
				rebuild[r.pool] = true
			}
		}
		if !inPool {
			stale[addr] = true
			if !held {
				if err := markStaleTxn(txn, addr); err != nil {
					return report, err
				}
			}
		}
	}

	// Insert in address order: the services table's address indexes are the
	// deep ones, and a write transaction reuses the nodes it copied last.
	rows := make([]*serviceRow, len(claims))
	byAddr := make([]int, 0, len(claims))
	for _, e := range entries {
		if len(kept[e.claim]) > 0 && kept[e.claim][0] == e.addr {
			byAddr = append(byAddr, e.claim)
		}
	}
	ix.reserve(len(byAddr) * 2) // one entry per address held
	for _, i := range byAddr {
		c := &claims[i]
		// In the order of the status, which is the Service's family order.
		addrs := slices.DeleteFunc(slices.Clone(c.addrs), func(a netip.Addr) bool { return !slices.Contains(kept[i], a) })
		row := &serviceRow{c.namespace, c.name, addrs, c.want, c.share}
		if !row.want.satisfiedBy(row.addrs) {
			row.want = want{} // plan anew at the next Allocate
		} else {
			row.want.order(row.addrs)
		}
		if err := insertServiceTxn(txn, ix, nil, row); err != nil {
			return report, err
		}
		rows[i] = row
	}
	n := 0
	for _, row := range rows {
		if row != nil {
			n += len(row.addrs)
		}
	}
	report.Restored = make([]Assignment, 0, n)
	for _, row := range rows {
		if row == nil {
			continue
		}
		for _, addr := range row.addrs {
			as := Assignment{row.namespace, row.name, addr}
			report.Restored = append(report.Restored, as)
			if stale[addr] {
				report.Stale = append(report.Stale, as)
			}
		}
	}

	pools, err := poolsTxn(txn)
	if err != nil {
		return report, err
	}
	for _, p := range pools {
		if rebuild[p.Name] {
			rebuildFree(ix, p)
		}
	}
	return report, nil
}

// satisfiedBy reports whether a Service that asks w and holds addrs has
// what it asks for, so that its next Allocate keeps them as they are.
//
// It fails only when the request certainly changed since the addresses
// were allocated: other requested addresses, or other families. It does
// not check the pool: an address outside the pool the Service names may
// be one the Service got from that pool before the pools changed, and a
// restart must not move what a running allocator would have kept.
func (w *want) satisfiedBy(addrs []netip.Addr) bool {
	if !w.valid || len(addrs) == 0 {
		return false
	}
	if w.nips > 0 {
		return len(addrs) == w.nips && !slices.ContainsFunc(addrs, func(a netip.Addr) bool { return !slices.Contains(w.addrs(), a) })
	}
	wanted, required := w.dualStack()
	switch {
	case !wanted && len(addrs) != 1:
		return false
	case required && len(addrs) != 2:
		return false
	}
	if w.nfams > 0 {
		if familyOf(addrs[0]) != w.fams[0] && (len(addrs) < 2 || familyOf(addrs[1]) != w.fams[0]) {
			return false // the primary family is missing
		}
		for _, a := range addrs {
			if !slices.Contains(w.families(), familyOf(a)) {
				return false
			}
		}
	}
	return true
}
