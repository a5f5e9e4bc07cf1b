package ipam

import (
	"fmt"

	memdb "github.com/hashicorp/go-memdb"
)

// The usage table: how many addresses of each pool and family are held, so
// that Stats need not count. An address shared by several Services counts
// once.

type usageRow struct {
	pool  string
	fam   family
	inUse uint64
}

func usageTableSchema() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tableUsage,
		Indexes: map[string]*memdb.IndexSchema{
			indexID: {
				Name:   indexID,
				Unique: true,
				Indexer: singleIndex[*usageRow]{
					key: func(r *usageRow) []byte { return poolFamilyKey(r.pool, r.fam) },
					// (pool, family)
					args: func(args []any) ([]byte, error) {
						pool, err := arg[string](args, 0)
						if err != nil {
							return nil, err
						}
						fam, err := arg[family](args, 1)
						return poolFamilyKey(pool, fam), err
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

// usageTxn returns the number of held addresses of pool and fam.
func usageTxn(txn *memdb.Txn, pool string, fam family) (uint64, error) {
	raw, err := txn.First(tableUsage, indexID, pool, fam)
	if err != nil {
		return 0, fmt.Errorf("looking up the usage of pool %q: %w", pool, err)
	}
	if raw == nil {
		return 0, nil
	}
	return raw.(*usageRow).inUse, nil
}

func setUsageTxn(txn *memdb.Txn, pool string, fam family, inUse uint64) error {
	if err := txn.Insert(tableUsage, &usageRow{pool, fam, inUse}); err != nil {
		return fmt.Errorf("recording the usage of pool %q: %w", pool, err)
	}
	return nil
}

// addUsageTxn adds delta (+1 or -1) to the usage of pool and fam.
func addUsageTxn(txn *memdb.Txn, pool string, fam family, delta int) error {
	n, err := usageTxn(txn, pool, fam)
	if err != nil {
		return err
	}
	if delta < 0 && n < uint64(-delta) {
		return fmt.Errorf("usage of pool %q would go below zero", pool)
	}
	return setUsageTxn(txn, pool, fam, uint64(int64(n)+int64(delta)))
}

func deletePoolUsageTxn(txn *memdb.Txn, pool string) error {
	if _, err := txn.DeleteAll(tableUsage, indexID+"_prefix", pool); err != nil {
		return fmt.Errorf("dropping the usage of pool %q: %w", pool, err)
	}
	return nil
}
