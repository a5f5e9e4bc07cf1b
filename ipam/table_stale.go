package ipam

import (
	"fmt"
	"net/netip"

	memdb "github.com/hashicorp/go-memdb"
)

// The stale table: the held addresses that lie in no pool (a pool was
// removed or shrunk, or avoidBuggyIPs now excludes them). They stay with
// their Services, which keep working, until those release them; they are
// never handed to anyone else, as no free list holds them.

type staleRow struct {
	addr netip.Addr
}

func staleTableSchema() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tableStale,
		Indexes: map[string]*memdb.IndexSchema{
			indexID: {
				Name:   indexID,
				Unique: true,
				Indexer: singleIndex[*staleRow]{
					key: func(r *staleRow) []byte { return addrKey(r.addr) },
					// (address)
					args: func(args []any) ([]byte, error) {
						a, err := arg[netip.Addr](args, 0)
						return addrKey(a), err
					},
				},
			},
		},
	}
}

func markStaleTxn(txn *memdb.Txn, a netip.Addr) error {
	if err := txn.Insert(tableStale, &staleRow{a}); err != nil {
		return fmt.Errorf("marking %s stale: %w", a, err)
	}
	return nil
}

func unmarkStaleTxn(txn *memdb.Txn, a netip.Addr) error {
	if _, err := txn.DeleteAll(tableStale, indexID, a); err != nil {
		return fmt.Errorf("unmarking %s stale: %w", a, err)
	}
	return nil
}

// staleAddrsTxn returns the stale addresses in order.
func staleAddrsTxn(txn *memdb.Txn) ([]netip.Addr, error) {
	it, err := txn.Get(tableStale, indexID)
	if err != nil {
		return nil, fmt.Errorf("listing stale addresses: %w", err)
	}
	var addrs []netip.Addr
	for raw := it.Next(); raw != nil; raw = it.Next() {
		addrs = append(addrs, raw.(*staleRow).addr)
	}
	return addrs, nil
}
