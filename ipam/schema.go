package ipam

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	memdb "github.com/hashicorp/go-memdb"
)

// The store is a go-memdb database, in memory only: the leader rebuilds it
// from the Services' status (Restore) when it starts. Each table has its own
// file with its row type, its schema factory and the transactions on it.
//
// Index keys are bytes whose order is the order the allocator needs:
// addresses are big-endian, so that a LowerBound lookup finds the range
// holding an address, and a prefix lookup the addresses shared under a key
// in order, without walking anything.
//
// The free lists and the holders of each address are indexes derived from
// the services table but kept beside the store, not in it: go-memdb copies
// every index node on a write's path, and those two were most of what an
// allocation wrote (see indexes.go).

const (
	tablePools    = "pools"
	tableRanges   = "ranges"
	tableServices = "services"
	tableShared   = "shared"
	tableStale    = "stale"

	indexID = "id"
)

// schema returns the store's schema, one factory per table.
func schema() *memdb.DBSchema {
	tables := []*memdb.TableSchema{
		poolsTableSchema(),
		rangesTableSchema(),
		servicesTableSchema(),
		sharedTableSchema(),
		staleTableSchema(),
	}
	s := &memdb.DBSchema{Tables: make(map[string]*memdb.TableSchema, len(tables))}
	for _, t := range tables {
		s.Tables[t.Name] = t
	}
	return s
}

// singleIndex is a memdb index with one key per row, computed by key; args
// builds the same key (or, for prefix lookups, a prefix of it) from the
// arguments of a lookup.
type singleIndex[T any] struct {
	key    func(T) []byte
	args   func(args []any) ([]byte, error)
	prefix func(args []any) ([]byte, error)
}

func (ix singleIndex[T]) FromObject(raw any) (bool, []byte, error) {
	row, ok := raw.(T)
	if !ok {
		return false, nil, fmt.Errorf("indexing %T: want %T", raw, row)
	}
	return true, ix.key(row), nil
}

func (ix singleIndex[T]) FromArgs(args ...any) ([]byte, error) { return ix.args(args) }

func (ix singleIndex[T]) PrefixFromArgs(args ...any) ([]byte, error) {
	if ix.prefix == nil {
		return nil, fmt.Errorf("index has no prefix lookups")
	}
	return ix.prefix(args)
}

// arg returns args[i] as an A, for the index argument decoders.
func arg[A any](args []any, i int) (A, error) {
	var zero A
	if i >= len(args) {
		return zero, fmt.Errorf("index lookup has %d arguments, want at least %d", len(args), i+1)
	}
	a, ok := args[i].(A)
	if !ok {
		return zero, fmt.Errorf("index lookup argument %d is %T, want %T", i, args[i], zero)
	}
	return a, nil
}

// Key encodings, shared by the indexes and their lookups.

// nameKey terminates a name so that a lookup of "a" cannot find "ab".
func nameKey(name string) []byte {
	return append([]byte(name), 0)
}

// appendU128Key appends u as 32 big-endian nibbles, one per byte, so that
// byte order is numeric order.
//
// Nibbles, not bytes: the radix trees under go-memdb copy every node on the
// path of a write, and a node holds one edge per distinct next byte. With
// whole bytes, a dense run of addresses makes nodes of 256 edges (4 KiB)
// near the leaves, copied on every allocation; with nibbles, nodes have at
// most 16 edges, twice as many levels, and about a quarter of the bytes
// copied per write.
func appendU128Key(b []byte, u u128) []byte {
	for shift := 60; shift >= 0; shift -= 4 {
		b = append(b, byte(u.hi>>shift)&0xf)
	}
	for shift := 60; shift >= 0; shift -= 4 {
		b = append(b, byte(u.lo>>shift)&0xf)
	}
	return b
}

// addrKey is the family then the address, so that addresses of one family
// are contiguous and in numeric order.
func addrKey(a netip.Addr) []byte {
	return appendAddrKey(make([]byte, 0, 33), a)
}

func appendAddrKey(b []byte, a netip.Addr) []byte {
	return appendU128Key(append(b, byte(familyOf(a))), u128FromAddr(a))
}

// lengthKey prefixes s with its length, so that s may hold any byte.
func lengthKey(s string) []byte {
	b := binary.AppendUvarint(make([]byte, 0, len(s)+2+33), uint64(len(s)))
	return append(b, s...)
}
