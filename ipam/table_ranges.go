package ipam

import (
	"fmt"
	"net/netip"

	memdb "github.com/hashicorp/go-memdb"
)

// The ranges table: one row per configured range, keyed by its family and
// last address, so that the range holding an address is the first one whose
// end is not below it (a LowerBound lookup). Ranges never overlap, which
// ParsePools and New guarantee.

type rangeRow struct {
	pool          string
	avoidBuggyIPs bool
	from, to      netip.Addr
}

func rangeKey(fam Family, to u128) []byte {
	return appendU128Key([]byte{byte(fam)}, to)
}

func rangesTableSchema() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tableRanges,
		Indexes: map[string]*memdb.IndexSchema{
			indexID: {
				Name:   indexID,
				Unique: true,
				Indexer: singleIndex[*rangeRow]{
					key: func(r *rangeRow) []byte { return rangeKey(familyOf(r.to), u128FromAddr(r.to)) },
					args: func(args []any) ([]byte, error) {
						a, err := arg[netip.Addr](args, 0)
						return rangeKey(familyOf(a), u128FromAddr(a)), err
					},
				},
			},
		},
	}
}

// location says where an address lies in the pools.
type location struct {
	// pool holding the address in one of its ranges; "" for none.
	pool string
	// avoided: the address is in pool's ranges but ends in .0 or .255, and
	// pool avoids those: it is not one of the pool's addresses.
	avoided bool
	slots   slotMap
	slot    u128
}

// inPool reports whether the address is one the pool hands out.
func (l location) inPool() bool { return l.pool != "" && !l.avoided }

// locateTxn finds the pool holding a.
func locateTxn(txn *memdb.Txn, a netip.Addr) (location, error) {
	it, err := txn.LowerBound(tableRanges, indexID, a)
	if err != nil {
		return location{}, fmt.Errorf("looking up the range holding %s: %w", a, err)
	}
	raw := it.Next()
	if raw == nil {
		return location{}, nil
	}
	r := raw.(*rangeRow)
	if familyOf(r.to) != familyOf(a) || a.Less(r.from) {
		return location{}, nil
	}
	loc := location{pool: r.pool, slots: newSlotMap(familyOf(a), r.avoidBuggyIPs)}
	s, ok := loc.slots.slot(a)
	loc.slot, loc.avoided = s, !ok
	return loc, nil
}

// rangesTxn returns every range, by family and address.
func rangesTxn(txn *memdb.Txn) ([]*rangeRow, error) {
	it, err := txn.Get(tableRanges, indexID)
	if err != nil {
		return nil, fmt.Errorf("listing ranges: %w", err)
	}
	var rows []*rangeRow
	for raw := it.Next(); raw != nil; raw = it.Next() {
		rows = append(rows, raw.(*rangeRow))
	}
	return rows, nil
}
