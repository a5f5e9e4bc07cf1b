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
		c := claim{namespace: svc.Namespace, name: svc.Name, created: svc.CreationTimestamp.Time, share: newSharing(svc)}
		if req, err := newRequest(svc); err == nil {
			c.want = req.want
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

	txn := a.db.Txn(true)
	defer txn.Abort()
	r, err := restoreTxn(txn, claims)
	if err != nil {
		// Only a broken store fails here; nothing was restored.
		for _, c := range claims {
			for _, addr := range c.addrs {
				report.Rejected = append(report.Rejected, Rejection{c.namespace, c.name, addr.String(), err})
			}
		}
		return report
	}
	txn.Commit()
	report.Restored = r.Restored
	report.Stale = r.Stale
	report.Rejected = append(report.Rejected, r.Rejected...)
	return report
}

// restoreTxn restores claims, the older Service first. It checks every
// claim against the store and the claims before it, then writes the rows
// in one go and rebuilds the free lists of the pools concerned: a bulk load
// of n Services costs n inserts and one pass over those pools, not n
// allocations.
func restoreTxn(txn *memdb.Txn, claims []claim) (RestoreReport, error) {
	var report RestoreReport
	order := make([]int, len(claims))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(i, j int) int {
		a, b := &claims[i], &claims[j]
		return cmp.Or(a.created.Compare(b.created), cmp.Compare(a.namespace, b.namespace), cmp.Compare(a.name, b.name))
	})

	type holder struct {
		name  string
		share sharing
	}
	claimed := make(map[netip.Addr][]holder) // address -> restored holders
	rows := make([]*serviceRow, len(claims))
	for _, i := range order {
		c := &claims[i]
		svc := c.namespace + "/" + c.name
		if old, err := serviceTxn(txn, c.namespace, c.name); err != nil {
			return report, err
		} else if old != nil {
			continue
		}
		var kept []netip.Addr
		for _, addr := range c.addrs {
			holders := claimed[addr]
			if len(holders) == 0 {
				// Only holders from before Restore; the rows this Restore
				// adds are not written yet.
				stored, err := holdersTxn(txn, addr)
				if err != nil {
					return report, err
				}
				for _, h := range stored {
					holders = append(holders, holder{h.String(), h.share})
				}
			}
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
			claimed[addr] = append(holders, holder{svc, c.share})
			kept = append(kept, addr)
		}
		if len(kept) > 0 {
			rows[i] = &serviceRow{c.namespace, c.name, kept, c.want, c.share}
		}
	}

	// Where the restored addresses lie, and which are new to the store.
	newAddrs := make([]netip.Addr, 0, len(claimed))
	for addr := range claimed {
		newAddrs = append(newAddrs, addr)
	}
	slices.SortFunc(newAddrs, netip.Addr.Compare)
	locs := make(map[netip.Addr]location, len(newAddrs))
	rebuild := make(map[string]bool)
	for _, addr := range newAddrs {
		held, err := isHeldTxn(txn, addr)
		if err != nil {
			return report, err
		}
		loc, err := locateTxn(txn, addr)
		if err != nil {
			return report, err
		}
		locs[addr] = loc
		switch {
		case held:
		case loc.inPool():
			rebuild[loc.pool] = true
		default:
			if err := markStaleTxn(txn, addr); err != nil {
				return report, err
			}
		}
	}

	for _, row := range rows {
		if row == nil {
			continue
		}
		if !row.want.satisfiedBy(row.addrs) {
			row.want = want{} // plan anew at the next Allocate
		} else {
			row.want.order(row.addrs)
		}
		if err := insertServiceTxn(txn, row); err != nil {
			return report, err
		}
		for _, addr := range row.addrs {
			as := Assignment{row.namespace, row.name, addr}
			report.Restored = append(report.Restored, as)
			if !locs[addr].inPool() {
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
			if err := rebuildFreeTxn(txn, p); err != nil {
				return report, err
			}
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
