package ipam

import (
	"fmt"
	"net/netip"

	memdb "github.com/hashicorp/go-memdb"
)

// The services table: one row per Service holding addresses. It is the
// truth of who holds what; the free lists, usage and stale tables follow
// from it.

const (
	// indexAddr4 and indexAddr6 find the holders of an address, and the
	// held addresses of a range in order. One index per family, as a row
	// holds at most one address of each: iterating one family's index meets
	// each row through the address of that family only.
	indexAddr4 = "addr4"
	indexAddr6 = "addr6"
	// indexShared finds the addresses held under a sharing key, in order.
	indexShared = "shared"
)

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

func serviceKey(namespace, name string) []byte {
	return nameKey(namespace + "/" + name)
}

func sharedKey(key string, a netip.Addr) []byte {
	return appendAddrKey(lengthKey(key), a)
}

func addrIndex(fam family) string {
	if fam == v4 {
		return indexAddr4
	}
	return indexAddr6
}

func addrIndexSchema(name string, fam family) *memdb.IndexSchema {
	return &memdb.IndexSchema{
		Name:         name,
		Unique:       false,
		AllowMissing: true,
		Indexer: multiIndex[*serviceRow]{
			keys: func(r *serviceRow) [][]byte {
				if a, ok := r.addrOf(fam); ok {
					return [][]byte{addrKey(a)}
				}
				return nil
			},
			// (address)
			args: func(args []any) ([]byte, error) {
				a, err := arg[netip.Addr](args, 0)
				return addrKey(a), err
			},
		},
	}
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
			indexAddr4: addrIndexSchema(indexAddr4, v4),
			indexAddr6: addrIndexSchema(indexAddr6, v6),
			indexShared: {
				Name:         indexShared,
				Unique:       false,
				AllowMissing: true,
				Indexer: multiIndex[*serviceRow]{
					keys: func(r *serviceRow) [][]byte {
						if r.share.key == "" {
							return nil
						}
						keys := make([][]byte, len(r.addrs))
						for i, a := range r.addrs {
							keys[i] = sharedKey(r.share.key, a)
						}
						return keys
					},
					// (key, address)
					args: func(args []any) ([]byte, error) {
						key, err := arg[string](args, 0)
						if err != nil {
							return nil, err
						}
						a, err := arg[netip.Addr](args, 1)
						return sharedKey(key, a), err
					},
					// (key, family)
					prefix: func(args []any) ([]byte, error) {
						key, err := arg[string](args, 0)
						if err != nil {
							return nil, err
						}
						fam, err := arg[family](args, 1)
						return append(lengthKey(key), byte(fam)), err
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

// holdersTxn returns the Services holding a.
func holdersTxn(txn *memdb.Txn, a netip.Addr) ([]*serviceRow, error) {
	it, err := txn.Get(tableServices, addrIndex(familyOf(a)), a)
	if err != nil {
		return nil, fmt.Errorf("looking up the holders of %s: %w", a, err)
	}
	var rows []*serviceRow
	for raw := it.Next(); raw != nil; raw = it.Next() {
		rows = append(rows, raw.(*serviceRow))
	}
	return rows, nil
}

// isHeldTxn reports whether any Service holds a.
func isHeldTxn(txn *memdb.Txn, a netip.Addr) (bool, error) {
	raw, err := txn.First(tableServices, addrIndex(familyOf(a)), a)
	if err != nil {
		return false, fmt.Errorf("looking up the holders of %s: %w", a, err)
	}
	return raw != nil, nil
}

// heldInTxn calls fn, in address order and once each, for the held
// addresses in [from, to].
func heldInTxn(txn *memdb.Txn, from, to netip.Addr, fn func(netip.Addr)) error {
	it, err := txn.LowerBound(tableServices, addrIndex(familyOf(from)), from)
	if err != nil {
		return fmt.Errorf("listing the held addresses from %s: %w", from, err)
	}
	fam := familyOf(from)
	var last netip.Addr
	for raw := it.Next(); raw != nil; raw = it.Next() {
		a, _ := raw.(*serviceRow).addrOf(fam)
		if to.Less(a) {
			return nil
		}
		if a != last {
			fn(a)
			last = a
		}
	}
	return nil
}

// sharedAddrsTxn calls fn, in address order, for the addresses of family
// fam held under sharing key until fn returns false.
func sharedAddrsTxn(txn *memdb.Txn, key string, fam family, fn func(netip.Addr) (more bool, err error)) error {
	it, err := txn.Get(tableServices, indexShared+"_prefix", key, fam)
	if err != nil {
		return fmt.Errorf("listing the addresses shared under key %q: %w", key, err)
	}
	var last netip.Addr
	for raw := it.Next(); raw != nil; raw = it.Next() {
		a, _ := raw.(*serviceRow).addrOf(fam)
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

func insertServiceTxn(txn *memdb.Txn, row *serviceRow) error {
	if err := txn.Insert(tableServices, row); err != nil {
		return fmt.Errorf("recording the addresses of Service %s: %w", row, err)
	}
	return nil
}

func deleteServiceTxn(txn *memdb.Txn, row *serviceRow) error {
	if err := txn.Delete(tableServices, row); err != nil {
		return fmt.Errorf("dropping the addresses of Service %s: %w", row, err)
	}
	return nil
}
