package ipam

import (
	"fmt"
	"net/netip"
	"slices"

	memdb "github.com/hashicorp/go-memdb"
	"go4.org/netipx"
)

// The free table: the free slots of each pool and family, as maximal
// intervals [first, last], keyed by (pool, family, last).
//
// Keying by the last slot makes every lookup one LowerBound: the first
// interval at or after (pool, family, 0) holds the lowest free slot, and the
// first one at or after (pool, family, s) is the only one that can hold s.
// Taking the lowest slot changes an interval's first slot, not its key, so it
// is one in-place replace. Allocation and release therefore cost O(log n) in
// the number of intervals, which is at most one more than the number of
// allocations, whatever the size of the pool: a /64 costs what a /28 does.

type freeRow struct {
	pool        string
	fam         family
	first, last u128
}

func freeKey(pool string, fam family, last u128) []byte {
	return appendU128Key(poolFamilyKey(pool, fam), last)
}

func freeTableSchema() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tableFree,
		Indexes: map[string]*memdb.IndexSchema{
			indexID: {
				Name:   indexID,
				Unique: true,
				Indexer: singleIndex[*freeRow]{
					key: func(r *freeRow) []byte { return freeKey(r.pool, r.fam, r.last) },
					// (pool, family, slot)
					args: func(args []any) ([]byte, error) {
						pool, err := arg[string](args, 0)
						if err != nil {
							return nil, err
						}
						fam, err := arg[family](args, 1)
						if err != nil {
							return nil, err
						}
						s, err := arg[u128](args, 2)
						return freeKey(pool, fam, s), err
					},
					// (pool)
					prefix: func(args []any) ([]byte, error) {
						pool, err := arg[string](args, 0)
						return nameKey(pool), err
					},
				},
			},
		},
	}
}

// freeAtOrAfterTxn returns the first free interval of pool and fam that ends
// at or after slot s, nil if none does.
func freeAtOrAfterTxn(txn *memdb.Txn, pool string, fam family, s u128) (*freeRow, error) {
	it, err := txn.LowerBound(tableFree, indexID, pool, fam, s)
	if err != nil {
		return nil, fmt.Errorf("looking up free %s addresses of pool %q: %w", fam, pool, err)
	}
	raw := it.Next()
	if raw == nil {
		return nil, nil
	}
	row := raw.(*freeRow)
	if row.pool != pool || row.fam != fam {
		return nil, nil
	}
	return row, nil
}

// lowestFreeTxn returns the lowest free slot of pool and fam; ok is false when
// there is none.
func lowestFreeTxn(txn *memdb.Txn, pool string, fam family) (s u128, ok bool, err error) {
	row, err := freeAtOrAfterTxn(txn, pool, fam, u128{})
	if row == nil || err != nil {
		return u128{}, false, err
	}
	return row.first, true, nil
}

// takeTxn removes the free slot s from its interval.
func takeTxn(txn *memdb.Txn, pool string, fam family, s u128) error {
	row, err := freeAtOrAfterTxn(txn, pool, fam, s)
	if err != nil {
		return err
	}
	if row == nil || s.less(row.first) {
		return fmt.Errorf("taking slot %v of pool %q: not free", s, pool)
	}
	if s.less(row.last) {
		// The part above s keeps the key.
		if err := txn.Insert(tableFree, &freeRow{pool, fam, s.addOne(), row.last}); err != nil {
			return fmt.Errorf("shrinking free interval of pool %q: %w", pool, err)
		}
	} else if err := txn.Delete(tableFree, row); err != nil {
		return fmt.Errorf("deleting free interval of pool %q: %w", pool, err)
	}
	if row.first.less(s) {
		if err := txn.Insert(tableFree, &freeRow{pool, fam, row.first, s.subOne()}); err != nil {
			return fmt.Errorf("splitting free interval of pool %q: %w", pool, err)
		}
	}
	return nil
}

// giveTxn returns slot s to the free list, merging it with the intervals
// next to it.
func giveTxn(txn *memdb.Txn, pool string, fam family, s u128) error {
	next, err := freeAtOrAfterTxn(txn, pool, fam, s)
	if err != nil {
		return err
	}
	if next != nil && !s.less(next.first) {
		return fmt.Errorf("giving back slot %v of pool %q: already free", s, pool)
	}
	if next != nil && (s.isMax() || next.first != s.addOne()) {
		next = nil // not adjacent
	}
	var prev *freeRow
	if s != (u128{}) {
		raw, err := txn.First(tableFree, indexID, pool, fam, s.subOne())
		if err != nil {
			return fmt.Errorf("looking up free %s addresses of pool %q: %w", fam, pool, err)
		}
		prev, _ = raw.(*freeRow)
	}
	merged := &freeRow{pool, fam, s, s}
	if prev != nil {
		merged.first = prev.first
		if err := txn.Delete(tableFree, prev); err != nil {
			return fmt.Errorf("merging free intervals of pool %q: %w", pool, err)
		}
	}
	if next != nil {
		merged.last = next.last // same key as next: a replace
	}
	if err := txn.Insert(tableFree, merged); err != nil {
		return fmt.Errorf("freeing slot of pool %q: %w", pool, err)
	}
	return nil
}

// deletePoolFreeTxn drops every free interval of pool.
func deletePoolFreeTxn(txn *memdb.Txn, pool string) error {
	if _, err := txn.DeleteAll(tableFree, indexID+"_prefix", pool); err != nil {
		return fmt.Errorf("dropping the free list of pool %q: %w", pool, err)
	}
	return nil
}

// rebuildFreeTxn computes pool's free lists and usage from its ranges and the
// addresses held in them. It touches every held address of the pool once:
// it runs when a pool is created or changed and after Restore, never per
// allocation.
func rebuildFreeTxn(txn *memdb.Txn, pool *poolRow) error {
	if err := deletePoolFreeTxn(txn, pool.Name); err != nil {
		return err
	}
	for _, fam := range pool.families {
		slots := newSlotMap(fam, pool.AvoidBuggyIPs)
		ranges := slices.Clone(pool.Ranges)
		ranges = slices.DeleteFunc(ranges, func(r netipx.IPRange) bool { return familyOf(r.From()) != fam })
		slices.SortFunc(ranges, func(a, b netipx.IPRange) int { return a.From().Compare(b.From()) })

		var rows []*freeRow
		emit := func(first, last u128) {
			if n := len(rows); n > 0 && !rows[n-1].last.isMax() && rows[n-1].last.addOne() == first {
				rows[n-1].last = last
				return
			}
			rows = append(rows, &freeRow{pool.Name, fam, first, last})
		}
		var inUse uint64
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
				inUse++
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
		for _, row := range rows {
			if err := txn.Insert(tableFree, row); err != nil {
				return fmt.Errorf("rebuilding the free list of pool %q: %w", pool.Name, err)
			}
		}
		if err := setUsageTxn(txn, pool.Name, fam, inUse); err != nil {
			return err
		}
	}
	return nil
}
