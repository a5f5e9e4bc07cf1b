package ipam

import (
	"fmt"
	"math/big"
	"net/netip"
	"slices"
	"sync"

	memdb "github.com/hashicorp/go-memdb"
)

// Allocator hands out load-balancer addresses from pools. It is safe for
// concurrent use: every change is one go-memdb write transaction, made
// under mu with the matching changes of the indexes beside the store (free
// lists, holders), and readers of the store see consistent snapshots.
//
// Allocate, Release and Restore change the store all or nothing: a call
// that fails leaves it as it was.
type Allocator struct {
	db *memdb.MemDB
	// mu serialises the writers and guards ix: a write changes the memdb
	// store and the indexes beside it together, and commits or undoes both.
	mu sync.Mutex
	ix indexes
}

// write starts a change: it takes the write lock and opens a memdb write
// transaction. Defer done, and call commit when the change succeeded.
func (a *Allocator) write() *memdb.Txn {
	a.mu.Lock()
	return a.db.Txn(true)
}

// commit makes a change permanent: the memdb transaction and the changes
// of the indexes.
func (a *Allocator) commit(txn *memdb.Txn) {
	txn.Commit()
	a.ix.commit()
}

// done ends a change: whatever commit did not make permanent is undone
// (the memdb transaction aborted, the indexes' changes reversed), and the
// write lock released.
func (a *Allocator) done(txn *memdb.Txn) {
	txn.Abort()
	a.ix.rollback()
	a.mu.Unlock()
}

// Assignment is an address a Service holds.
type Assignment struct {
	Namespace, Name string
	Addr            netip.Addr
}

// PoolStats is the usage of one family of one pool.
type PoolStats struct {
	Pool string
	// Family is "IPv4" or "IPv6".
	Family string
	// Total counts the addresses the pool may hand out (without .0 and .255
	// when it avoids them). A big.Int, as a /64 has 2^64 of them.
	Total *big.Int
	// InUse counts the held addresses, an address shared by several
	// Services once.
	InUse uint64
	// Free is Total - InUse.
	Free *big.Int
}

// New returns an Allocator with pools and no assignments: call Restore
// before the first Allocate.
func New(pools []Pool) (*Allocator, error) {
	db, err := memdb.NewMemDB(schema())
	if err != nil {
		return nil, fmt.Errorf("creating the address store: %w", err)
	}
	// Nobody watches this store. A primary MemDB tracks, for watchers, every
	// radix node a write copies and closes a channel for each at commit: a
	// fifth of the time of an allocation. A snapshot is a complete MemDB
	// that skips that bookkeeping, so the Allocator works on one and drops
	// the primary.
	a := &Allocator{db: db.Snapshot(), ix: newIndexes()}
	if _, err := a.SetPools(pools); err != nil {
		return nil, err
	}
	return a, nil
}

// SetPools replaces the pools, on a configuration reload. It never moves
// or drops an assignment: the addresses now outside every pool stay with
// their Services, and are returned as stale (all of them, not only the ones
// this call made stale) for the caller to report. They go back to no pool
// when released. On error nothing changes.
func (a *Allocator) SetPools(pools []Pool) (stale []Assignment, err error) {
	if err := validatePools(pools); err != nil {
		return nil, err
	}
	txn := a.write()
	defer a.done(txn)
	if err := setPoolsTxn(txn, &a.ix, pools); err != nil {
		return nil, err
	}
	stale, err = staleAssignmentsTxn(txn, &a.ix)
	if err != nil {
		return nil, err
	}
	a.commit(txn)
	return stale, nil
}

func setPoolsTxn(txn *memdb.Txn, ix *indexes, pools []Pool) error {
	old, err := poolsTxn(txn)
	if err != nil {
		return err
	}
	oldByName := make(map[string]*poolRow, len(old))
	for _, o := range old {
		oldByName[o.Name] = o
	}
	newByName := make(map[string]Pool, len(pools))
	for _, p := range pools {
		newByName[p.Name] = p
	}

	// The addresses whose pool may change: the stale ones, and the held
	// ones of the pools that change or go.
	candidates, err := staleAddrsTxn(txn)
	if err != nil {
		return err
	}
	for _, o := range old {
		if n, ok := newByName[o.Name]; ok && o.sameAddresses(n) {
			continue
		}
		for _, r := range o.Ranges {
			ix.heldIn(r.From(), r.To(), func(a netip.Addr) { candidates = append(candidates, a) })
		}
		ix.dropPool(o.Name)
	}

	if _, err := txn.DeleteAll(tablePools, indexID); err != nil {
		return fmt.Errorf("dropping the old pools: %w", err)
	}
	if _, err := txn.DeleteAll(tableRanges, indexID); err != nil {
		return fmt.Errorf("dropping the old ranges: %w", err)
	}
	var rebuild []*poolRow
	for i, p := range pools {
		row := newPoolRow(p, i)
		if err := txn.Insert(tablePools, row); err != nil {
			return fmt.Errorf("recording pool %q: %w", p.Name, err)
		}
		for _, r := range p.Ranges {
			if err := txn.Insert(tableRanges, &rangeRow{p.Name, p.AvoidBuggyIPs, r.From(), r.To()}); err != nil {
				return fmt.Errorf("recording range %s of pool %q: %w", r, p.Name, err)
			}
		}
		if o, ok := oldByName[p.Name]; !ok || !o.sameAddresses(p) {
			rebuild = append(rebuild, row)
		}
	}
	for _, row := range rebuild {
		rebuildFree(ix, row)
	}

	slices.SortFunc(candidates, netip.Addr.Compare)
	for _, c := range slices.Compact(candidates) {
		loc, err := locateTxn(txn, c)
		if err != nil {
			return err
		}
		if loc.inPool() {
			err = unmarkStaleTxn(txn, c)
		} else {
			err = markStaleTxn(txn, c)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Release frees the addresses of a Service, the pending ones too; an
// address shared with other Services stays with them. Releasing a Service that holds nothing does
// nothing.
func (a *Allocator) Release(namespace, name string) {
	txn := a.write()
	defer a.done(txn)
	// releaseTxn fails only on a store that breaks its own invariants; then
	// the abort keeps the Service's addresses held: an address kept too long
	// is harmless, one freed twice is not.
	if released, err := releaseTxn(txn, &a.ix, namespace, name); released && err == nil {
		a.commit(txn)
	}
}

// releaseTxn drops a Service's row and frees the addresses no one else
// holds; released is false when the Service held nothing.
func releaseTxn(txn *memdb.Txn, ix *indexes, namespace, name string) (released bool, err error) {
	row, err := serviceTxn(txn, namespace, name)
	if row == nil || err != nil {
		return false, err
	}
	return true, replaceServiceTxn(txn, ix, row, nil)
}

// replaceServiceTxn replaces a Service's row old (nil: none) by row (nil:
// none), holding the addresses row adds and freeing the ones it drops
// unless another Service holds them still.
func replaceServiceTxn(txn *memdb.Txn, ix *indexes, old, row *serviceRow) error {
	var oldHeld, newHeld []netip.Addr
	if old != nil {
		oldHeld = old.held()
		if err := deleteServiceTxn(txn, ix, old); err != nil {
			return err
		}
	}
	if row != nil {
		newHeld = row.held()
	}
	for _, a := range oldHeld {
		if !slices.Contains(newHeld, a) {
			if err := freeing.applyTxn(txn, ix, a); err != nil {
				return err
			}
		}
	}
	for _, a := range newHeld {
		if !slices.Contains(oldHeld, a) {
			if err := holding.applyTxn(txn, ix, a); err != nil {
				return err
			}
		}
	}
	if len(newHeld) > 0 {
		return insertServiceTxn(txn, ix, nil, row)
	}
	return nil
}

// holdChange is what holding an address, or freeing it, does to the pool
// bookkeeping: the first holder takes it from its pool's free list (or
// marks it stale when it is in no pool), the last one gives it back (or
// forgets it is stale).
type holdChange struct {
	verb  string // for errors
	stale func(*memdb.Txn, netip.Addr) error
	slot  func(ix *indexes, pool string, fam Family, s u128) error
}

var (
	holding = holdChange{"holding", markStaleTxn, (*indexes).take}
	freeing = holdChange{"freeing", unmarkStaleTxn, (*indexes).give}
)

// applyTxn makes the change for address a, unless some Service holds a (the
// address index is up to date for every other Service): then it was
// already taken, and stays so.
func (c holdChange) applyTxn(txn *memdb.Txn, ix *indexes, a netip.Addr) error {
	if ix.isHeld(a) {
		return nil
	}
	loc, err := locateTxn(txn, a)
	if err != nil {
		return err
	}
	if !loc.inPool() {
		return c.stale(txn, a)
	}
	if err := c.slot(ix, loc.pool, familyOf(a), loc.slot); err != nil {
		return fmt.Errorf("%s %s: %w", c.verb, a, err)
	}
	return nil
}

// Assigned returns the addresses a Service is assigned (what Allocate
// returned), its primary family first; nil if it holds none. Its pending
// addresses are not among them.
func (a *Allocator) Assigned(namespace, name string) []netip.Addr {
	row, err := serviceTxn(a.db.Txn(false), namespace, name)
	if err != nil || row == nil {
		return nil
	}
	return slices.Clone(row.addrs)
}

// Holders returns the Services that hold addr (several when it is shared;
// a Service holding it pending counts), in namespace/name order; nil if no
// one holds it.
func (a *Allocator) Holders(addr netip.Addr) []Assignment {
	// The holders live in the address index, which writers change in
	// place: read it under the write lock.
	a.mu.Lock()
	defer a.mu.Unlock()
	hs := a.ix.holders(addr)
	if len(hs) == 0 {
		return nil
	}
	out := make([]Assignment, len(hs))
	for i, h := range hs {
		out[i] = Assignment{h.namespace, h.name, addr}
	}
	return out
}

// Stale returns the held addresses that lie in no pool, per holder, in
// address order.
func (a *Allocator) Stale() []Assignment {
	// The holders live in the address index, which writers change in
	// place: read it under the write lock.
	a.mu.Lock()
	defer a.mu.Unlock()
	stale, err := staleAssignmentsTxn(a.db.Txn(false), &a.ix)
	if err != nil {
		return nil
	}
	return stale
}

func staleAssignmentsTxn(txn *memdb.Txn, ix *indexes) ([]Assignment, error) {
	addrs, err := staleAddrsTxn(txn)
	if err != nil {
		return nil, err
	}
	var out []Assignment
	for _, addr := range addrs {
		for _, h := range ix.holders(addr) {
			out = append(out, Assignment{h.namespace, h.name, addr})
		}
	}
	return out, nil
}

// Stats returns the usage of every pool and family, in configuration order,
// IPv4 before IPv6.
func (a *Allocator) Stats() []PoolStats {
	// The usage counts live in the free lists, which writers change in
	// place: read them under the write lock, with the pools of the same
	// moment.
	a.mu.Lock()
	defer a.mu.Unlock()
	stats, err := statsTxn(a.db.Txn(false), &a.ix)
	if err != nil {
		return nil
	}
	return stats
}

func statsTxn(txn *memdb.Txn, ix *indexes) ([]PoolStats, error) {
	pools, err := poolsTxn(txn)
	if err != nil {
		return nil, err
	}
	var out []PoolStats
	for _, p := range pools {
		for _, fam := range []Family{IPv4, IPv6} {
			if !p.offers(fam) {
				continue
			}
			slots := newSlotMap(fam, p.AvoidBuggyIPs)
			total := new(big.Int)
			for _, r := range p.Ranges {
				if familyOf(r.From()) != fam {
					continue
				}
				if first, last, ok := slots.slotRange(r.From(), r.To()); ok {
					total.Add(total, first.count(last))
				}
			}
			var inUse uint64
			if l := ix.list(p.Name, fam); l != nil {
				inUse = l.inUse
			}
			free := new(big.Int).Sub(total, new(big.Int).SetUint64(inUse))
			out = append(out, PoolStats{Pool: p.Name, Family: fam.String(), Total: total, InUse: inUse, Free: free})
		}
	}
	return out, nil
}
