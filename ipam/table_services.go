package ipam

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	memdb "github.com/hashicorp/go-memdb"
)

// The services table: one row per Service holding addresses. It is the
// truth of who holds what; the free lists, the address index and the stale
// table follow from it.
//
// Its address index, the holders of each address, is not a memdb index but
// a treap per family beside the store (see indexes.go), written with the
// row by insertServiceTxn and deleteServiceTxn: a memdb index on the
// address doubled what go-memdb copies per allocation.

// serviceRow is what a Service holds and what it asked for. Rows are never
// changed once inserted: an update inserts a new row.
type serviceRow struct {
	namespace, name string
	// addrs holds at most one address per family, the primary family first.
	addrs []netip.Addr
	want  want
	share sharing
}

func (r *serviceRow) String() string { return r.namespace + "/" + r.name }

// addrOf returns the row's address of family fam.
func (r *serviceRow) addrOf(fam family) (netip.Addr, bool) {
	for _, a := range r.addrs {
		if familyOf(a) == fam {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// serviceKey is "namespace/name", terminated.
func serviceKey(namespace, name string) []byte {
	b := make([]byte, 0, len(namespace)+len(name)+2)
	return append(append(append(append(b, namespace...), '/'), name...), 0)
}

func servicesTableSchema() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tableServices,
		Indexes: map[string]*memdb.IndexSchema{
			indexID: {
				Name:   indexID,
				Unique: true,
				Indexer: singleIndex[*serviceRow]{
					key: func(r *serviceRow) []byte { return serviceKey(r.namespace, r.name) },
					// (namespace, name)
					args: func(args []any) ([]byte, error) {
						ns, err := arg[string](args, 0)
						if err != nil {
							return nil, err
						}
						name, err := arg[string](args, 1)
						return serviceKey(ns, name), err
					},
				},
			},
		},
	}
}

// serviceTxn returns the row of a Service, nil if it holds nothing.
func serviceTxn(txn *memdb.Txn, namespace, name string) (*serviceRow, error) {
	raw, err := txn.First(tableServices, indexID, namespace, name)
	if err != nil {
		return nil, fmt.Errorf("looking up Service %s/%s: %w", namespace, name, err)
	}
	row, _ := raw.(*serviceRow)
	return row, nil
}

// holders returns the Services holding a, ordered by namespace and name.
// The slice is the index's own: do not change it.
func (ix *indexes) holders(a netip.Addr) []*serviceRow {
	return ix.held[familyOf(a).index()][u128FromAddr(a)]
}

// isHeld reports whether any Service holds a.
func (ix *indexes) isHeld(a netip.Addr) bool {
	return ix.holders(a) != nil
}

// heldIn calls fn, in address order, for the held addresses in [from, to].
// The first call of a write sorts the held addresses of the family: it is
// for reloads and Restore, which walk the pools, never for allocations.
func (ix *indexes) heldIn(from, to netip.Addr, fn func(netip.Addr)) {
	fam := familyOf(from)
	i := fam.index()
	if ix.sorted[i] == nil {
		ix.sorted[i] = slices.SortedFunc(maps.Keys(ix.held[i]), u128.cmp)
		if ix.sorted[i] == nil {
			ix.sorted[i] = []u128{}
		}
	}
	sorted := ix.sorted[i]
	lo, _ := slices.BinarySearchFunc(sorted, u128FromAddr(from), u128.cmp)
	last := u128FromAddr(to)
	for _, k := range sorted[lo:] {
		if last.less(k) {
			return
		}
		fn(addrFromU128(fam, k))
	}
}

// setHolders makes hs (nil: none) the holders of address a, logging the
// change for rollback.
func (ix *indexes) setHolders(fam family, a u128, old, hs []*serviceRow) {
	ix.undo = append(ix.undo, undoOp{kind: undoHolders, fam: fam, last: a, holders: old})
	ix.setHoldersRaw(fam, a, hs)
}

func (ix *indexes) setHoldersRaw(fam family, a u128, hs []*serviceRow) {
	i := fam.index()
	if hs == nil {
		delete(ix.held[i], a)
	} else {
		ix.held[i][a] = hs
	}
	ix.sorted[i] = nil
}

// addHolder records row as a holder of each of its addresses. Holder lists
// are copied on change, never changed in place: the undo log keeps the old
// ones.
func (ix *indexes) addHolder(row *serviceRow) {
	for _, a := range row.addrs {
		old := ix.holders(a)
		i, _ := slices.BinarySearchFunc(old, row, compareRows)
		hs := make([]*serviceRow, 0, len(old)+1)
		hs = append(append(append(hs, old[:i]...), row), old[i:]...)
		ix.setHolders(familyOf(a), u128FromAddr(a), old, hs)
	}
}

// removeHolder drops row from the holders of each of its addresses.
func (ix *indexes) removeHolder(row *serviceRow) {
	for _, a := range row.addrs {
		old := ix.holders(a)
		i := slices.Index(old, row)
		if i < 0 {
			continue
		}
		var hs []*serviceRow
		if len(old) > 1 {
			hs = slices.Concat(old[:i], old[i+1:])
		}
		ix.setHolders(familyOf(a), u128FromAddr(a), old, hs)
	}
}

// compareRows orders rows as the services table's id index does, by
// "namespace/name", so that holders are met in the order they were when
// the index was a memdb one (error messages name the first conflict).
func compareRows(x, y *serviceRow) int {
	return strings.Compare(x.String(), y.String())
}

// insertServiceTxn records row, which replaces old (nil: none; old must be
// the Service's current row), in the table and the address index.
func insertServiceTxn(txn *memdb.Txn, ix *indexes, old, row *serviceRow) error {
	if err := txn.Insert(tableServices, row); err != nil {
		return fmt.Errorf("recording the addresses of Service %s: %w", row, err)
	}
	if old != nil {
		if err := unshareTxn(txn, old); err != nil {
			return err
		}
		ix.removeHolder(old)
	}
	ix.addHolder(row)
	return shareTxn(txn, row)
}

// deleteServiceTxn drops row from the table and the address index.
func deleteServiceTxn(txn *memdb.Txn, ix *indexes, row *serviceRow) error {
	if err := txn.Delete(tableServices, row); err != nil {
		return fmt.Errorf("dropping the addresses of Service %s: %w", row, err)
	}
	ix.removeHolder(row)
	return unshareTxn(txn, row)
}
