package ipam

import (
	"encoding/binary"
	"fmt"
	"slices"

	memdb "github.com/hashicorp/go-memdb"
)

// The pools table: one row per configured pool, as SetPools got it.

const indexOrder = "order"

// poolRow is a pool and its place in the configuration. Rows are never
// changed once inserted.
type poolRow struct {
	Pool
	// order is the pool's index in the configuration: pools are tried in
	// this order when a Service names neither pool nor address.
	order int
	// families the pool offers, in the order of their first range.
	families []Family
}

func newPoolRow(p Pool, order int) *poolRow {
	row := &poolRow{Pool: p, order: order}
	row.Ranges = slices.Clone(p.Ranges)
	row.Namespaces = slices.Clone(p.Namespaces)
	for _, r := range p.Ranges {
		if f := familyOf(r.From()); !slices.Contains(row.families, f) {
			row.families = append(row.families, f)
		}
	}
	return row
}

func (p *poolRow) offers(f Family) bool { return slices.Contains(p.families, f) }

// sameAddresses reports whether p and q hand out the same slots, so that a
// reload keeps p's free list as it is.
func (p *poolRow) sameAddresses(q Pool) bool {
	return p.AvoidBuggyIPs == q.AvoidBuggyIPs && slices.Equal(p.Ranges, q.Ranges)
}

func poolsTableSchema() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tablePools,
		Indexes: map[string]*memdb.IndexSchema{
			indexID: {
				Name:   indexID,
				Unique: true,
				Indexer: singleIndex[*poolRow]{
					key: func(r *poolRow) []byte { return nameKey(r.Name) },
					args: func(args []any) ([]byte, error) {
						name, err := arg[string](args, 0)
						return nameKey(name), err
					},
				},
			},
			indexOrder: {
				Name:   indexOrder,
				Unique: true,
				Indexer: singleIndex[*poolRow]{
					key: func(r *poolRow) []byte { return binary.BigEndian.AppendUint32(nil, uint32(r.order)) },
					args: func(args []any) ([]byte, error) {
						order, err := arg[int](args, 0)
						return binary.BigEndian.AppendUint32(nil, uint32(order)), err
					},
				},
			},
		},
	}
}

// poolTxn returns the pool named name, nil if there is none.
func poolTxn(txn *memdb.Txn, name string) (*poolRow, error) {
	raw, err := txn.First(tablePools, indexID, name)
	if err != nil {
		return nil, fmt.Errorf("looking up pool %q: %w", name, err)
	}
	row, _ := raw.(*poolRow)
	return row, nil
}

// poolsTxn returns all pools in configuration order.
func poolsTxn(txn *memdb.Txn) ([]*poolRow, error) {
	it, err := txn.Get(tablePools, indexOrder)
	if err != nil {
		return nil, fmt.Errorf("listing pools: %w", err)
	}
	var rows []*poolRow
	for raw := it.Next(); raw != nil; raw = it.Next() {
		rows = append(rows, raw.(*poolRow))
	}
	return rows, nil
}
