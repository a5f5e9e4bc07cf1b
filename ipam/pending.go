package ipam

import (
	"net/netip"
	"slices"
)

// Pending addresses. When a Service's request changes, Allocate returns its
// new addresses at once, but clients keep using the old ones until the
// caller has announced the new ones and written them to the Service's
// status, and that may fail. An address a Service's status still shows is
// therefore still the Service's: Allocate keeps each held address that the
// new plan drops and Request.Shown shows as pending, held by the Service
// as any other (no one else gets it; a Service with the same sharing key
// may join it on the usual terms), until Settle or a later Allocate sees
// a status that no longer shows it. Release frees it with the rest.
//
// Restore needs no pending state: it gives each Service what its status
// shows, and the Service's next Allocate, which plans anew when the request
// no longer matches, makes the addresses it drops pending again.

// Settle tells the allocator which addresses a Service's status shows now:
// the Service's pending addresses that shown no longer shows are freed (or
// stay with the other Services that share them), and returned. Call it when
// a Service's status changes. The addresses the Service is assigned stay,
// shown or not; a Service with nothing pending is left as it is.
func (a *Allocator) Settle(namespace, name string, shown []netip.Addr) (freed []netip.Addr) {
	// The common case, nothing pending, needs no writer.
	row, err := serviceTxn(a.db.Txn(false), namespace, name)
	if err != nil || row == nil || allShown(row.pending, shown) {
		return nil
	}
	txn := a.write()
	defer a.done(txn)
	old, err := serviceTxn(txn, namespace, name)
	if err != nil || old == nil {
		return nil
	}
	var keep []netip.Addr
	for _, p := range old.pending {
		if slices.Contains(shown, p) {
			keep = append(keep, p)
		} else {
			freed = append(freed, p)
		}
	}
	row = &serviceRow{old.namespace, old.name, old.addrs, keep, old.want, old.share}
	// As in Release, this fails only on a store that breaks its own
	// invariants; then the abort keeps the addresses held, which is
	// harmless.
	if err := replaceServiceTxn(txn, &a.ix, old, row); err != nil {
		return nil
	}
	a.commit(txn)
	return freed
}

// allShown reports whether shown shows every pending address.
func allShown(pending, shown []netip.Addr) bool {
	for _, p := range pending {
		if !slices.Contains(shown, p) {
			return false
		}
	}
	return true
}

// pendingAfter returns the addresses the Service of req holds pending once
// it is assigned addrs: the ones it held before (old, nil: none, assigned
// or pending) that req.shown shows and addrs drops. An address that its new
// sharing terms forbid it to hold alongside the other holders is dropped:
// they hold it still, so no Service outside their key can get it.
func pendingAfter(ix *indexes, req *request, old *serviceRow, addrs []netip.Addr) []netip.Addr {
	if old == nil || len(req.shown) == 0 {
		return nil
	}
	var pending []netip.Addr
	for _, a := range old.held() {
		if slices.Contains(addrs, a) || !slices.Contains(req.shown, a) || slices.Contains(pending, a) {
			continue
		}
		if checkSharing(ix, req, a) != nil {
			continue
		}
		pending = append(pending, a)
	}
	return pending
}
