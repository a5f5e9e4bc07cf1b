package ipam

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"time"

	memdb "github.com/hashicorp/go-memdb"
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

// Rejection is a shown address Restore did not restore. Err wraps
// ErrAddressTaken or ErrSharingRefused when an older Service keeps the
// address (the message names it), ErrInvalidStatus when it is not a plain
// address or is a second address of its family.
type Rejection struct {
	Namespace, Name string
	IP              string
	Err             error
}

// Claim is what Restore reads of one Service.
type Claim struct {
	// Request is what the Service asks; Request.Shown, the addresses its
	// status shows, are what Restore restores.
	Request Request
	// Unreadable: the caller could not read the Service's request (a bad
	// annotation). Restore uses its name, sharing terms and Shown only, and
	// its next Allocate plans anew.
	Unreadable bool
	// Created is when the Service was created: of Services that show one
	// address and may not share it, the older keeps it.
	Created time.Time
}

// claim is a Claim in the allocator's form.
type claim struct {
	namespace, name string
	created         time.Time
	want            want // valid false when the request cannot be read
	share           sharing
	keySource       string // where the sharing key came from, for errors
	addrs           []netip.Addr
}

func (c *claim) String() string { return c.namespace + "/" + c.name }

// Restore loads the assignments the Services' status shows, on start-up,
// before the first Allocate, so that a restart or fail-over changes no
// address. Pass the Services this controller manages.
//
// When Services claim one address and may not share it, the older Service
// (Created, then namespace/name) keeps it and the others are reported.
// Addresses in no pool are kept and reported stale, never moved. A Service
// the store already knows keeps what it holds: its claim is not read.
func (a *Allocator) Restore(in []Claim) RestoreReport {
	var report RestoreReport
	claims := make([]claim, 0, len(in))
	for i := range in {
		c, rejected := newClaim(&in[i])
		report.Rejected = append(report.Rejected, rejected...)
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

// newClaim puts a Claim in the allocator's form; rejected are the shown
// addresses it cannot restore.
func newClaim(in *Claim) (c claim, rejected []Rejection) {
	r := &in.Request
	c = claim{namespace: r.Namespace, name: r.Name, created: in.Created, keySource: r.Source.sharingKey()}
	if !in.Unreadable {
		if req, err := newRequest(r); err == nil {
			c.want, c.share = req.want, req.share
		}
	}
	if !c.want.valid {
		c.share = newSharing(r) // what a Service that cannot be read shares
	}
	for i, addr := range r.Shown {
		if err := c.addShown(i, addr); err != nil {
			rejected = append(rejected, Rejection{c.namespace, c.name, addr.String(), err})
		}
	}
	return c, rejected
}

// addShown adds the shown address addr, entry i of Shown, to what c claims,
// unless c claims it already; an error says why it cannot be restored.
func (c *claim) addShown(i int, addr netip.Addr) error {
	switch {
	case c.name == "":
		return fmt.Errorf("shown address %s of a Service without a name (namespace %q): %w", addr, c.namespace, ErrInvalidStatus)
	case !addr.IsValid() || addr.Zone() != "" || addr.Is4In6():
		return fmt.Errorf("shown address [%d] %q of Service %s is not a plain IP address: %w", i, addr, c.String(), ErrInvalidStatus)
	case slices.Contains(c.addrs, addr):
		return nil
	}
	for _, prev := range c.addrs {
		if familyOf(prev) == familyOf(addr) {
			return fmt.Errorf("shown address [%d] %s of Service %s is a second %s address after %s; a Service holds one per family: %w",
				i, addr, c.String(), familyOf(addr), prev, ErrInvalidStatus)
		}
	}
	c.addrs = append(c.addrs, addr)
	return nil
}

// restoreTxn restores claims, the older Service first. Conflicts are
// between the claims on one address only, so it sorts the claims by
// address, then age, and settles each address in turn; then it writes the
// rows in one go and rebuilds the free lists of the pools concerned: a bulk
// load of n Services costs a sort, n inserts and one pass over those pools,
// not n allocations.
func restoreTxn(txn *memdb.Txn, ix *indexes, claims []claim) (RestoreReport, error) {
	raw, err := txn.First(tableServices, indexID)
	if err != nil {
		return RestoreReport{}, fmt.Errorf("looking up Services: %w", err)
	}
	ranges, err := rangesTxn(txn)
	if err != nil {
		return RestoreReport{}, err
	}
	r := &restorer{
		txn: txn, ix: ix, claims: claims, ranges: ranges,
		emptyStore: raw == nil,
		kept:       make([][]netip.Addr, len(claims)),
		stale:      make(map[netip.Addr]bool),
		rebuild:    make(map[string]bool),
	}
	if err := r.sortEntries(); err != nil {
		return r.report, err
	}
	for g := 0; g < len(r.entries); {
		end := g + 1
		for end < len(r.entries) && r.entries[end].addr == r.entries[g].addr {
			end++
		}
		if err := r.settleAddrTxn(r.entries[g:end]); err != nil {
			return r.report, err
		}
		g = end
	}
	rows, err := r.insertRowsTxn()
	if err != nil {
		return r.report, err
	}
	r.reportRows(rows)
	pools, err := poolsTxn(txn)
	if err != nil {
		return r.report, err
	}
	for _, p := range pools {
		if r.rebuild[p.Name] {
			rebuildFree(ix, p)
		}
	}
	return r.report, nil
}

// restorer is the state of one restoreTxn.
type restorer struct {
	txn    *memdb.Txn
	ix     *indexes
	claims []claim
	// emptyStore: no Service is stored yet (at start-up), so no claim meets
	// a stored holder.
	emptyStore bool
	// entries are one per claimed address, by address, then age (rank).
	entries []claimEntry
	rank    []int
	// ranges are the pools' ranges in address order; ri is the first not
	// below the address being settled (both go up).
	ranges []*rangeRow
	ri     int
	// kept are, per claim, the addresses it keeps; stale the kept ones in
	// no pool; rebuild the pools whose free lists change.
	kept    [][]netip.Addr
	stale   map[netip.Addr]bool
	rebuild map[string]bool
	report  RestoreReport
	// holders is settleAddrTxn's list of the address's holders, kept to
	// be reused.
	holders []addrHolder
}

// addrHolder is a Service that holds, or is to hold, an address.
type addrHolder struct {
	name  string
	share sharing
}

type claimEntry struct {
	addr  netip.Addr
	claim int
}

// sortEntries ranks the claims by age and lists their addresses, by address
// then age; a claim of a Service the store knows is left out: it keeps what
// it holds.
func (r *restorer) sortEntries() error {
	order := make([]int, len(r.claims))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(i, j int) int {
		a, b := &r.claims[i], &r.claims[j]
		return cmp.Or(a.created.Compare(b.created), cmp.Compare(a.namespace, b.namespace), cmp.Compare(a.name, b.name), cmp.Compare(i, j))
	})
	r.rank = make([]int, len(r.claims))
	for k, i := range order {
		r.rank[i] = k
	}
	r.entries = make([]claimEntry, 0, len(r.claims))
	for i := range r.claims {
		c := &r.claims[i]
		if !r.emptyStore {
			if old, err := serviceTxn(r.txn, c.namespace, c.name); err != nil {
				return err
			} else if old != nil {
				continue
			}
		}
		for _, addr := range c.addrs {
			r.entries = append(r.entries, claimEntry{addr, i})
		}
	}
	slices.SortFunc(r.entries, func(x, y claimEntry) int {
		return cmp.Or(x.addr.Compare(y.addr), cmp.Compare(r.rank[x.claim], r.rank[y.claim]))
	})
	return nil
}

// settleAddrTxn decides which of the claims on one address (group, oldest
// first) keep it: each that may share it with the stored holders and the
// claims kept before it. Then it marks the address stale if it lies in no
// pool, or its pool for a rebuild of the free list.
func (r *restorer) settleAddrTxn(group []claimEntry) error {
	addr := group[0].addr
	holders := r.holders[:0]
	defer func() { r.holders = holders[:0] }() // reused by the next address
	if !r.emptyStore {
		for _, h := range r.ix.holders(addr) {
			holders = append(holders, addrHolder{h.String(), h.share})
		}
	}
	held := len(holders) > 0
	accepted := false
	for _, e := range group {
		c := &r.claims[e.claim]
		svc := c.String()
		var err error
		for _, h := range holders {
			if err = c.share.conflict(svc, c.keySource, addr, h.name, h.share); err != nil {
				err = fmt.Errorf("status of Service %s shows %s, but Service %s is older or was there first: %w", svc, addr, h.name, err)
				break
			}
		}
		if err != nil {
			r.report.Rejected = append(r.report.Rejected, Rejection{c.namespace, c.name, addr.String(), err})
			continue
		}
		holders = append(holders, addrHolder{svc, c.share})
		r.kept[e.claim] = append(r.kept[e.claim], addr)
		accepted = true
	}
	if !accepted {
		return nil
	}
	if pool, ok := r.poolOf(addr); ok {
		if !held {
			r.rebuild[pool] = true
		}
		return nil
	}
	r.stale[addr] = true
	if held {
		return nil
	}
	return markStaleTxn(r.txn, addr)
}

// poolOf returns the pool that may hand out addr; ok is false when none
// may. Successive calls must go up in address order.
func (r *restorer) poolOf(addr netip.Addr) (pool string, ok bool) {
	fam := familyOf(addr)
	for r.ri < len(r.ranges) && (familyOf(r.ranges[r.ri].to) < fam || familyOf(r.ranges[r.ri].to) == fam && r.ranges[r.ri].to.Less(addr)) {
		r.ri++
	}
	if r.ri == len(r.ranges) {
		return "", false
	}
	rg := r.ranges[r.ri]
	if familyOf(rg.to) != fam || addr.Less(rg.from) {
		return "", false
	}
	if _, ok := newSlotMap(fam, rg.avoidBuggyIPs).slot(addr); !ok {
		return "", false
	}
	return rg.pool, true
}

// insertRowsTxn writes a row for each claim that keeps an address, and
// returns them per claim (nil: none). It inserts in address order: the
// services table's address indexes are the deep ones, and a write
// transaction reuses the nodes it copied last.
func (r *restorer) insertRowsTxn() ([]*serviceRow, error) {
	rows := make([]*serviceRow, len(r.claims))
	byAddr := make([]int, 0, len(r.claims))
	for _, e := range r.entries {
		if len(r.kept[e.claim]) > 0 && r.kept[e.claim][0] == e.addr {
			byAddr = append(byAddr, e.claim)
		}
	}
	r.ix.reserve(len(byAddr) * 2) // one entry per address held
	for _, i := range byAddr {
		c := &r.claims[i]
		// In the order of the status, which is the Service's family order.
		addrs := slices.DeleteFunc(slices.Clone(c.addrs), func(a netip.Addr) bool { return !slices.Contains(r.kept[i], a) })
		row := &serviceRow{namespace: c.namespace, name: c.name, addrs: addrs, want: c.want, share: c.share}
		if !row.want.satisfiedBy(row.addrs) {
			row.want = want{} // plan anew at the next Allocate
		} else {
			row.want.order(row.addrs)
		}
		if err := insertServiceTxn(r.txn, r.ix, nil, row); err != nil {
			return nil, err
		}
		rows[i] = row
	}
	return rows, nil
}

// reportRows lists what the rows hold, in the order of the claims.
func (r *restorer) reportRows(rows []*serviceRow) {
	n := 0
	for _, row := range rows {
		if row != nil {
			n += len(row.addrs)
		}
	}
	r.report.Restored = make([]Assignment, 0, n)
	for _, row := range rows {
		if row == nil {
			continue
		}
		for _, addr := range row.addrs {
			as := Assignment{row.namespace, row.name, addr}
			r.report.Restored = append(r.report.Restored, as)
			if r.stale[addr] {
				r.report.Stale = append(r.report.Stale, as)
			}
		}
	}
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
