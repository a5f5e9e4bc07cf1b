package ipam

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"testing"
)

// Benchmarks of Allocate and Release with 1k, 100k and 1M addresses already
// held, in an IPv6 /64 and an IPv4 /12, and of Restore of 100k Services:
//
//	go test -run '^$' -bench . -benchmem -benchtime 20000x -p 1 ./ipam/
//
// The held addresses leave one hole every 64 addresses, so the free list
// has n/63 intervals, not one: allocations fill holes deep in the list.

const benchChunk = 1000

type benchPool struct {
	name string
	cfg  PoolConfig
	fam  Family
	// base is the pool's first address.
	base netip.Addr
}

var benchPools = []benchPool{{
	name: "ipv6-64",
	cfg:  PoolConfig{Name: "bench", Addresses: []string{"2001:db8:0:1::/64"}},
	fam:  IPv6,
	base: netip.MustParseAddr("2001:db8:0:1::"),
}, {
	// No documentation range is a /12. 240.0.0.0/4 is reserved (RFC 1112,
	// "future use") and never routed; these addresses never leave the
	// process.
	name: "ipv4-12",
	cfg:  PoolConfig{Name: "bench", Addresses: []string{"240.0.0.0/12"}},
	fam:  IPv4,
	base: netip.AddrFrom4([4]byte{240, 0, 0, 0}),
}}

func (p benchPool) service(name string) *testService {
	svc := makeService("bench", name)
	if p.fam == IPv6 {
		withFamilies(single, v6s...)(svc)
	}
	return svc
}

// prefill returns an Allocator with n Services holding one address each,
// loaded in one transaction as Restore does, not by n Allocate calls.
func (p benchPool) prefill(b *testing.B, n int) *Allocator {
	b.Helper()
	a := newAllocator(b, p.cfg)
	req, err := newRequest(&p.service("x").Request)
	if err != nil {
		b.Fatal(err)
	}
	claims := make([]claim, n)
	base := u128FromAddr(p.base)
	for i := range claims {
		j := uint64(i + i/63) // a hole every 64 addresses
		claims[i] = claim{
			namespace: "bench",
			name:      benchName(i),
			created:   epoch,
			want:      req.want,
			share:     req.share,
			addrs:     []netip.Addr{addrFromU128(p.fam, u128{base.hi, base.lo + j})},
		}
	}
	txn := a.write()
	defer a.done(txn)
	report, err := restoreTxn(txn, &a.ix, claims)
	if err != nil || len(report.Rejected) > 0 || len(report.Restored) != n {
		b.Fatalf("restoring %d claims: %v, %d restored, rejected %v", n, err, len(report.Restored), report.Rejected)
	}
	a.commit(txn)
	return a
}

func benchName(i int) string { return fmt.Sprintf("s%07d", i) }

func BenchmarkAllocator(b *testing.B) {
	for _, p := range benchPools {
		for _, n := range []int{1_000, 100_000, 1_000_000} {
			b.Run(fmt.Sprintf("%s/held=%d", p.name, n), func(b *testing.B) {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				a := p.prefill(b, n)
				runtime.GC()
				runtime.ReadMemStats(&after)
				live := float64(after.HeapAlloc-before.HeapAlloc) / float64(n)

				b.Run("allocate", func(b *testing.B) {
					benchAllocate(b, a, p)
					b.ReportMetric(live, "live-B/held")
				})
				b.Run("release", func(b *testing.B) { benchRelease(b, a, p, n) })
				b.Run("memdb-floor", func(b *testing.B) { benchFloor(b, a, p) })
				checkCounts(b, a, n)
			})
		}
	}
}

// benchAllocate allocates to new Services, releasing them (untimed) every
// benchChunk so that the store stays near its size.
func benchAllocate(b *testing.B, a *Allocator, p benchPool) {
	svcs := make([]*testService, benchChunk)
	for i := range svcs {
		svcs[i] = p.service(fmt.Sprintf("new%04d", i))
	}
	b.ReportAllocs()
	b.ResetTimer()
	k := 0
	for i := 0; i < b.N; i++ {
		if _, err := a.Allocate(svcs[k].Request); err != nil {
			b.Fatalf("Allocate(%s) = %v", svcs[k].Name, err)
		}
		k++
		if k == len(svcs) || i == b.N-1 {
			b.StopTimer()
			for _, svc := range svcs[:k] {
				a.Release(svc.Namespace, svc.Name)
			}
			k = 0
			b.StartTimer()
		}
	}
}

// benchRelease releases random held Services, allocating them again
// (untimed) every benchChunk: they take the lowest free addresses, the
// holes the releases made.
func benchRelease(b *testing.B, a *Allocator, p benchPool, n int) {
	r := rand.New(rand.NewPCG(1, 2))
	victims := make([]string, 0, benchChunk)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += benchChunk {
		b.StopTimer()
		victims = victims[:0]
		seen := map[int]bool{}
		for len(victims) < min(benchChunk, b.N-i) {
			if v := r.IntN(n); !seen[v] {
				seen[v] = true
				victims = append(victims, benchName(v))
			}
		}
		b.StartTimer()
		for _, v := range victims {
			a.Release("bench", v)
		}
		b.StopTimer()
		for _, v := range victims {
			if _, err := a.Allocate(p.service(v).Request); err != nil {
				b.Fatalf("Allocate(%s) = %v", v, err)
			}
		}
		b.StartTimer()
	}
}

// benchFloor measures what go-memdb alone costs: one write transaction
// that inserts one Service row (its one index entry) and commits, with the
// held rows already in the table. Allocate does this, plus the reads that
// decide and the changes of the indexes beside the store.
func benchFloor(b *testing.B, a *Allocator, p benchPool) {
	req, err := newRequest(&p.service("x").Request)
	if err != nil {
		b.Fatal(err)
	}
	base := u128FromAddr(p.base)
	rows := make([]*serviceRow, benchChunk)
	for i := range rows {
		// Addresses past the held ones (the last 8k of the /12), which
		// this benchmark never allocates.
		addr := addrFromU128(p.fam, u128{base.hi, base.lo + 1_040_000 + uint64(i)})
		rows[i] = &serviceRow{namespace: "bench", name: fmt.Sprintf("floor%04d", i), addrs: []netip.Addr{addr}, want: req.want, share: req.share}
	}
	b.ReportAllocs()
	b.ResetTimer()
	k := 0
	for i := 0; i < b.N; i++ {
		txn := a.db.Txn(true)
		if err := txn.Insert(tableServices, rows[k]); err != nil {
			b.Fatal(err)
		}
		txn.Commit()
		k++
		if k == len(rows) || i == b.N-1 {
			b.StopTimer()
			txn := a.db.Txn(true)
			for _, row := range rows[:k] {
				if err := txn.Delete(tableServices, row); err != nil {
					b.Fatal(err)
				}
			}
			txn.Commit()
			k = 0
			b.StartTimer()
		}
	}
}

// BenchmarkMemdbFloor is the least an allocation can cost while go-memdb
// is the store of record: one write transaction that inserts one Service
// row into the empty services table of an empty store (one index, a
// 12-byte key) and commits. No index of the store is deeper than one node,
// so this is go-memdb's fixed cost per transaction: the transaction, a
// radix transaction and its LRU of copied nodes per index written and for
// the root, a node copy with a fresh channel per level, the commit. An
// allocation pays it, plus one node copy per level of the services index.
func BenchmarkMemdbFloor(b *testing.B) {
	a := newAllocator(b, benchPools[0].cfg)
	req, err := newRequest(&benchPools[0].service("x").Request)
	if err != nil {
		b.Fatal(err)
	}
	row := &serviceRow{namespace: "bench", name: "floor", addrs: []netip.Addr{benchPools[0].base}, want: req.want, share: req.share}
	b.ReportAllocs()
	for b.Loop() {
		txn := a.db.Txn(true)
		if err := txn.Insert(tableServices, row); err != nil {
			b.Fatal(err)
		}
		txn.Commit()
		b.StopTimer()
		txn = a.db.Txn(true)
		if err := txn.Delete(tableServices, row); err != nil {
			b.Fatal(err)
		}
		txn.Commit()
		b.StartTimer()
	}
}

func checkCounts(b *testing.B, a *Allocator, n int) {
	if s := a.Stats(); len(s) != 1 || s[0].InUse != uint64(n) {
		b.Fatalf("Stats() = %+v after the benchmark, want %d in use", s, n)
	}
}

func BenchmarkRestore(b *testing.B) {
	const n = 100_000
	p := benchPools[0]
	// As a List returns them: by namespace and name, their addresses in
	// no order.
	r := rand.New(rand.NewPCG(1, 2))
	perm := r.Perm(n)
	svcs := make([]*testService, n)
	base := u128FromAddr(p.base)
	for i := range svcs {
		svcs[i] = p.service(benchName(i))
		withCreated(i % 1000)(svcs[i])
		svcs[i].Shown = []netip.Addr{addrFromU128(IPv6, u128{base.hi, base.lo + uint64(perm[i])})}
	}
	// The provider reads the claims from the Services before it calls
	// Restore; parsing their status is not timed here.
	cs := claims(svcs)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		a := newAllocator(b, p.cfg)
		b.StartTimer()
		report := a.Restore(cs)
		if len(report.Restored) != n {
			b.Fatalf("Restore() restored %d, want %d", len(report.Restored), n)
		}
	}
}
