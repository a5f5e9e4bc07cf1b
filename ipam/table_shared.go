package ipam

import (
	"fmt"
	"net/netip"

	memdb "github.com/hashicorp/go-memdb"
)

// The shared table: the addresses held under a sharing key, one row per
// address and holder, so that a Service with a key finds, in address
// order, the addresses it may join. Only Services with a key have rows.
//
// It is a table of its own rather than an index of the services table:
// go-memdb opens, copies into and commits every index of a table on each
// insert, even one the row has no entry in, so an index for the few
// sharing Services cost every allocation about 1 KiB.

type sharedRow struct {
	key    string
	addr   netip.Addr
	holder *serviceRow
}

func sharedRowKey(key string, a netip.Addr, namespace, name string) []byte {
	b := appendAddrKey(lengthKey(key), a)
	b = append(b, namespace...)
	b = append(b, '/')
	b = append(b, name...)
	return append(b, 0)
}

func sharedTableSchema() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tableShared,
		Indexes: map[string]*memdb.IndexSchema{
			indexID: {
				Name:   indexID,
				Unique: true,
				Indexer: singleIndex[*sharedRow]{
					key: func(r *sharedRow) []byte {
						return sharedRowKey(r.key, r.addr, r.holder.namespace, r.holder.name)
					},
					// (key, address, namespace, name)
					args: func(args []any) ([]byte, error) {
						key, err := arg[string](args, 0)
						if err != nil {
							return nil, err
						}
						a, err := arg[netip.Addr](args, 1)
						if err != nil {
							return nil, err
						}
						ns, err := arg[string](args, 2)
						if err != nil {
							return nil, err
						}
						name, err := arg[string](args, 3)
						return sharedRowKey(key, a, ns, name), err
					},
					// (key, family)
					prefix: func(args []any) ([]byte, error) {
						key, err := arg[string](args, 0)
						if err != nil {
							return nil, err
						}
						fam, err := arg[Family](args, 1)
						return append(lengthKey(key), byte(fam)), err
					},
				},
			},
		},
	}
}

// shareTxn records the addresses of row under its sharing key, if it has
// one.
func shareTxn(txn *memdb.Txn, row *serviceRow) error {
	if row.share.key == "" {
		return nil
	}
	for _, a := range row.held() {
		if err := txn.Insert(tableShared, &sharedRow{row.share.key, a, row}); err != nil {
			return fmt.Errorf("recording %s shared by Service %s: %w", a, row, err)
		}
	}
	return nil
}

// unshareTxn drops what shareTxn recorded for row.
func unshareTxn(txn *memdb.Txn, row *serviceRow) error {
	if row.share.key == "" {
		return nil
	}
	for _, a := range row.held() {
		if _, err := txn.DeleteAll(tableShared, indexID, row.share.key, a, row.namespace, row.name); err != nil {
			return fmt.Errorf("dropping %s shared by Service %s: %w", a, row, err)
		}
	}
	return nil
}

// sharedAddrsTxn calls fn, in address order, for the addresses of family
// fam held under sharing key until fn returns false.
func sharedAddrsTxn(txn *memdb.Txn, key string, fam Family, fn func(netip.Addr) (more bool, err error)) error {
	it, err := txn.Get(tableShared, indexID+"_prefix", key, fam)
	if err != nil {
		return fmt.Errorf("listing the addresses shared under key %q: %w", key, err)
	}
	var last netip.Addr
	for raw := it.Next(); raw != nil; raw = it.Next() {
		a := raw.(*sharedRow).addr
		if a == last {
			continue
		}
		last = a
		if more, err := fn(a); !more || err != nil {
			return err
		}
	}
	return nil
}
