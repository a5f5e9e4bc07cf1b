package ipam

import (
	"fmt"
	"net/netip"
	"slices"

	memdb "github.com/hashicorp/go-memdb"
)

// The services table: one row per Service holding addresses. It is the
// truth of who holds what; the free lists, the address index and the stale
// table follow from it.
//
// Its address index, the holders of each address, is not a memdb index but
// a hash map per family beside the store (see indexes.go), written with the
// row by insertServiceTxn and deleteServiceTxn: a memdb index on the
// address doubled what go-memdb copies per allocation.

// serviceRow is what a Service holds and what it asked for. Rows are never
// changed once inserted: an update inserts a new row.
type serviceRow struct {
	namespace, name string
	// addrs holds at most one address per family, the primary family first:
	// what Allocate returns.
	addrs []netip.Addr
	// pending holds the addresses the Service held before its request
	// changed and that its status still shows (see Request.Shown): it holds
	// them until Settle or Allocate learns they are no longer shown. None
	// is in addrs.
	pending []netip.Addr
	want    want
	share   sharing
}

func (r *serviceRow) String() string { return r.namespace + "/" + r.name }

// held returns every address the row holds: addrs, then pending. It does
// not allocate when nothing is pending, the common case.
func (r *serviceRow) held() []netip.Addr {
	if len(r.pending) == 0 {
		return r.addrs
	}
	return slices.Concat(r.addrs, r.pending)
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
