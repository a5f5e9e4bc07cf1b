package ipam

import (
	"fmt"
	"maps"
	"math/big"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/google/go-cmp/cmp"
	memdb "github.com/hashicorp/go-memdb"
	"go4.org/netipx"
)

// Test addresses come from the documentation ranges only: 192.0.2.0/24,
// 198.51.100.0/24, 203.0.113.0/24 and 2001:db8::/32.

var epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// Where the tests' requests say their fields come from, as the provider
// says it: error messages must quote them.
const (
	srcIPs        = "annotation baremetal-ccm.io/load-balancer-ips"
	srcLBIP       = "spec.loadBalancerIP"
	srcPool       = "annotation baremetal-ccm.io/pool"
	srcSharingKey = "annotation baremetal-ccm.io/allow-shared-ip"
)

// testService is a Service as the allocator sees it: its request, when it
// was created, and whether its request could be read (for Restore).
type testService struct {
	Request
	created    time.Time
	unreadable bool
}

func (s *testService) claim() Claim {
	return Claim{Request: s.Request, Created: s.created, Unreadable: s.unreadable}
}

// clone returns a deep copy of s.
func (s *testService) clone() *testService {
	c := *s
	c.Labels = maps.Clone(s.Labels)
	c.Families = slices.Clone(s.Families)
	c.IPs = slices.Clone(s.IPs)
	c.Ports = slices.Clone(s.Ports)
	c.PodSelector = maps.Clone(s.PodSelector)
	c.Shown = slices.Clone(s.Shown)
	return &c
}

// claims returns the claims of svcs, for Restore.
func claims(svcs []*testService) []Claim {
	out := make([]Claim, len(svcs))
	for i, s := range svcs {
		out[i] = s.claim()
	}
	return out
}

type svcOpt func(*testService)

// makeService returns the request of a LoadBalancer Service as the API
// server would store it on an IPv4 cluster: SingleStack IPv4, one TCP port,
// created at epoch.
func makeService(ns, name string, opts ...svcOpt) *testService {
	s := &testService{
		Request: Request{
			Namespace: ns,
			Name:      name,
			Policy:    SingleStack,
			Families:  []Family{IPv4},
			Ports:     []Port{{80, "TCP"}},
			Source:    Source{IPs: srcIPs, Pool: srcPool, SharingKey: srcSharingKey},
		},
		created: epoch,
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// parseAddrs parses a comma-separated list of addresses.
func parseAddrs(list string) []netip.Addr {
	if strings.TrimSpace(list) == "" {
		return nil
	}
	var out []netip.Addr
	for _, a := range strings.Split(list, ",") {
		out = append(out, netip.MustParseAddr(strings.TrimSpace(a)))
	}
	return out
}

// withIPs requests the addresses of a comma-separated list.
func withIPs(list string) svcOpt {
	return func(s *testService) { s.IPs, s.Source.IPs = parseAddrs(list), srcIPs }
}

// withLBIP requests one address, as spec.loadBalancerIP does.
func withLBIP(ip string) svcOpt {
	return func(s *testService) { s.IPs, s.Source.IPs = parseAddrs(ip), srcLBIP }
}

func withPool(name string) svcOpt { return func(s *testService) { s.Pool = name } }
func withShare(key string) svcOpt { return func(s *testService) { s.SharingKey = key } }
func unreadable() svcOpt          { return func(s *testService) { s.unreadable = true } }
func withCreated(min int) svcOpt {
	return func(s *testService) { s.created = epoch.Add(time.Duration(min) * time.Minute) }
}
func withLabels(kv ...string) svcOpt {
	return func(s *testService) {
		s.Labels = map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			s.Labels[kv[i]] = kv[i+1]
		}
	}
}

// withFamilies sets the family policy and the families.
func withFamilies(policy FamilyPolicy, fams ...Family) svcOpt {
	return func(s *testService) {
		s.Policy = policy
		s.Families = fams
	}
}

// withPorts sets the ports, each "53/UDP".
func withPorts(ports ...string) svcOpt {
	return func(s *testService) {
		s.Ports = nil
		for _, p := range ports {
			var n int32
			var proto string
			if _, err := fmt.Sscanf(strings.Replace(p, "/", " ", 1), "%d %s", &n, &proto); err != nil {
				panic(fmt.Sprintf("port %q: %v", p, err))
			}
			s.Ports = append(s.Ports, Port{n, proto})
		}
	}
}

// withLocal sets TrafficPolicyLocal and the pod selector.
func withLocal(kv ...string) svcOpt {
	return func(s *testService) {
		s.TrafficPolicyLocal = true
		s.PodSelector = map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			s.PodSelector[kv[i]] = kv[i+1]
		}
	}
}

// withStatus sets the addresses the Service's status shows.
func withStatus(ips ...string) svcOpt {
	return func(s *testService) {
		s.Shown = nil
		for _, ip := range ips {
			s.Shown = append(s.Shown, netip.MustParseAddr(ip))
		}
	}
}

var (
	v4s = []Family{IPv4}
	v6s = []Family{IPv6}
	v46 = []Family{IPv4, IPv6}
	v64 = []Family{IPv6, IPv4}
)

func ptr[T any](v T) *T { return &v }

func selector(kv ...string) *metav1.LabelSelector {
	sel := &metav1.LabelSelector{MatchLabels: map[string]string{}}
	for i := 0; i+1 < len(kv); i += 2 {
		sel.MatchLabels[kv[i]] = kv[i+1]
	}
	return sel
}

// parsePools is ParsePools for tests whose pools are valid.
func parsePools(t testing.TB, cfgs ...PoolConfig) []Pool {
	t.Helper()
	pools, errs := ParsePools(cfgs, field.NewPath("pools"))
	if len(errs) > 0 {
		t.Fatalf("ParsePools() = %v", errs.ToAggregate())
	}
	return pools
}

func newAllocator(t testing.TB, cfgs ...PoolConfig) *Allocator {
	t.Helper()
	a, err := New(parsePools(t, cfgs...))
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	return a
}

// dump returns the whole store, one line per row, for before/after
// comparisons: a failed call must not change a line.
func dump(t testing.TB, a *Allocator) []string {
	t.Helper()
	txn := a.db.Txn(false)
	var out []string
	for _, table := range []string{tablePools, tableRanges, "free", tableServices, tableShared, tableStale} {
		if table == "free" {
			out = append(out, dumpFree(a)...)
			continue
		}
		it, err := txn.Get(table, indexID)
		if err != nil {
			t.Fatalf("dumping table %s: %v", table, err)
		}
		for raw := it.Next(); raw != nil; raw = it.Next() {
			switch r := raw.(type) {
			case *poolRow:
				out = append(out, fmt.Sprintf("pool %d %s %v auto=%v buggy=%v ns=%v sel=%v", r.order, r.Name, r.Ranges, r.AutoAssign, r.AvoidBuggyIPs, r.Namespaces, r.Selector))
			case *rangeRow:
				out = append(out, fmt.Sprintf("range %s %s-%s", r.pool, r.from, r.to))
			case *serviceRow:
				out = append(out, fmt.Sprintf("service %s %v pending=%v %+v %+v", r, r.addrs, r.pending, r.want, r.share))
			case *sharedRow:
				out = append(out, fmt.Sprintf("shared %q %s %s", r.key, r.addr, r.holder))
			case *staleRow:
				out = append(out, fmt.Sprintf("stale %s", r.addr))
			default:
				t.Fatalf("table %s holds a %T", table, raw)
			}
		}
	}
	return out
}

// dumpFree returns the free lists, then the usage counts, one line per
// interval or count, by pool and family.
func dumpFree(a *Allocator) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	keys := slices.SortedFunc(maps.Keys(a.ix.free), func(x, y poolFam) int {
		if c := strings.Compare(x.pool, y.pool); c != 0 {
			return c
		}
		return int(x.fam) - int(y.fam)
	})
	var free, usage []string
	for _, k := range keys {
		l := a.ix.free[k]
		l.t.ascend(u128{}, u128{^uint64(0), ^uint64(0)}, func(last, first u128) {
			free = append(free, fmt.Sprintf("free %s %s %v-%v", k.pool, k.fam, first, last))
		})
		usage = append(usage, fmt.Sprintf("usage %s %s %d", k.pool, k.fam, l.inUse))
	}
	return append(free, usage...)
}

// freeIntervals returns the free intervals of pool and fam, in order.
func freeIntervals(a *Allocator, pool string, fam Family) [][2]u128 {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out [][2]u128
	if l := a.ix.list(pool, fam); l != nil {
		l.t.ascend(u128{}, u128{^uint64(0), ^uint64(0)}, func(last, first u128) { out = append(out, [2]u128{first, last}) })
	}
	return out
}

// checkStore checks the invariants of the store: no address has two
// holders that may not share it, every held address is in a pool (and not
// free) or marked stale, the free lists are maximal disjoint intervals
// inside the pools, and Stats equals a recount.
func checkStore(t testing.TB, a *Allocator) {
	t.Helper()
	txn := a.db.Txn(false)
	rows, err := servicesTxn(txn)
	if err != nil {
		t.Fatal(err)
	}
	holders := map[netip.Addr][]*serviceRow{}
	for _, r := range rows {
		if len(r.addrs) == 0 || len(r.addrs) > 2 || (len(r.addrs) == 2 && familyOf(r.addrs[0]) == familyOf(r.addrs[1])) {
			t.Errorf("Service %s holds %v, want one or two addresses of distinct families", r, r.addrs)
		}
		for i, addr := range r.pending {
			if slices.Contains(r.addrs, addr) || slices.Contains(r.pending[i+1:], addr) {
				t.Errorf("Service %s holds %v and %v pending, want them disjoint and without repeats", r, r.addrs, r.pending)
			}
		}
		for _, addr := range r.held() {
			holders[addr] = append(holders[addr], r)
		}
	}
	// The address index beside the store holds exactly the rows' addresses.
	nindexed := 0
	a.mu.Lock()
	for i := range a.ix.held {
		nindexed += len(a.ix.held[i])
	}
	a.mu.Unlock()
	if nindexed != len(holders) {
		t.Errorf("the address index has %d addresses, the Services hold %d", nindexed, len(holders))
	}
	for addr, hs := range holders {
		want := slices.SortedFunc(slices.Values(hs), compareRows)
		if got := holdersOf(a, addr); !slices.Equal(got, want) {
			t.Errorf("the address index says %s is held by %v, the Services say %v", addr, got, want)
		}
	}
	type pf struct {
		pool string
		fam  Family
	}
	inUse := map[pf]uint64{}
	for addr, hs := range holders {
		for i := range hs {
			for j := i + 1; j < len(hs); j++ {
				if !mayShare(hs[i].share, hs[j].share) {
					t.Errorf("%s is held by %s (%+v) and %s (%+v), which may not share it", addr, hs[i], hs[i].share, hs[j], hs[j].share)
				}
			}
		}
		loc, err := locateTxn(txn, addr)
		if err != nil {
			t.Fatal(err)
		}
		staleRaw, err := txn.First(tableStale, indexID, addr)
		if err != nil {
			t.Fatal(err)
		}
		if loc.inPool() {
			inUse[pf{loc.pool, familyOf(addr)}]++
			if free, err := isFree(a, loc.pool, familyOf(addr), loc.slot); err != nil || free {
				t.Errorf("held address %s of pool %q is on the free list (err %v)", addr, loc.pool, err)
			}
			if staleRaw != nil {
				t.Errorf("address %s of pool %q is marked stale", addr, loc.pool)
			}
		} else if staleRaw == nil {
			t.Errorf("held address %s is in no pool but not marked stale", addr)
		}
	}
	staleAddrs, err := staleAddrsTxn(txn)
	if err != nil {
		t.Fatal(err)
	}
	for _, addr := range staleAddrs {
		if len(holders[addr]) == 0 {
			t.Errorf("stale address %s is held by nobody", addr)
		}
	}

	pools, err := poolsTxn(txn)
	if err != nil {
		t.Fatal(err)
	}
	var want []PoolStats
	for _, p := range pools {
		for _, fam := range []Family{IPv4, IPv6} {
			if !p.offers(fam) {
				continue
			}
			slots := newSlotMap(fam, p.AvoidBuggyIPs)
			// The pool's slots as merged intervals.
			type iv struct{ first, last u128 }
			var spans []iv
			total := new(big.Int)
			rs := slices.Clone(p.Ranges)
			slices.SortFunc(rs, func(x, y netipx.IPRange) int { return x.From().Compare(y.From()) })
			for _, r := range rs {
				if familyOf(r.From()) != fam {
					continue
				}
				first, last, ok := slots.slotRange(r.From(), r.To())
				if !ok {
					continue
				}
				total.Add(total, first.count(last))
				if n := len(spans); n > 0 && spans[n-1].last.addOne() == first {
					spans[n-1].last = last
				} else {
					spans = append(spans, iv{first, last})
				}
			}
			free := new(big.Int)
			var prev *iv
			for _, fr := range freeIntervals(a, p.Name, fam) {
				r := &iv{fr[0], fr[1]}
				if r.last.less(r.first) {
					t.Errorf("free interval %v-%v of pool %q is empty", r.first, r.last, p.Name)
				}
				if prev != nil && !prev.last.addOne().less(r.first) {
					t.Errorf("free intervals %v-%v and %v-%v of pool %q overlap or touch", prev.first, prev.last, r.first, r.last, p.Name)
				}
				if !slices.ContainsFunc(spans, func(s iv) bool { return !r.first.less(s.first) && !s.last.less(r.last) }) {
					t.Errorf("free interval %v-%v of pool %q is not inside the pool's slots %v", r.first, r.last, p.Name, spans)
				}
				free.Add(free, r.first.count(r.last))
				prev = r
			}
			used := inUse[pf{p.Name, fam}]
			if got := new(big.Int).Add(free, new(big.Int).SetUint64(used)); got.Cmp(total) != 0 {
				t.Errorf("pool %q %s: %v free + %d held = %v, want the %v addresses of the pool", p.Name, fam, free, used, got, total)
			}
			want = append(want, PoolStats{Pool: p.Name, Family: fam.String(), Total: total, InUse: used, Free: free})
		}
	}
	if diff := cmp.Diff(want, a.Stats(), compareBig); diff != "" {
		t.Errorf("Stats() differs from a recount (-want +got):\n%s", diff)
	}
}

// mayShare is the sharing rule, written again for the checks: the same
// non-empty key, the same traffic policy (and for Local the same selector),
// no port and protocol in common.
func mayShare(x, y sharing) bool {
	if x.key == "" || x.key != y.key || x.local != y.local || (x.local && x.selector != y.selector) {
		return false
	}
	for _, p := range x.ports {
		for _, q := range y.ports {
			if p == q {
				return false
			}
		}
	}
	return true
}

// compareBig lets cmp compare big.Ints by value.
var compareBig = cmp.Comparer(func(x, y *big.Int) bool { return x.Cmp(y) == 0 })

// assignedAll returns what every Service of the store holds.
func assignedAll(t testing.TB, a *Allocator) map[string][]netip.Addr {
	t.Helper()
	rows, err := servicesTxn(a.db.Txn(false))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]netip.Addr{}
	for _, r := range rows {
		out[r.String()] = r.addrs
	}
	return out
}

// servicesTxn returns every row, ordered by namespace and name.
func servicesTxn(txn *memdb.Txn) ([]*serviceRow, error) {
	it, err := txn.Get(tableServices, indexID)
	if err != nil {
		return nil, fmt.Errorf("listing Services: %w", err)
	}
	var rows []*serviceRow
	for raw := it.Next(); raw != nil; raw = it.Next() {
		rows = append(rows, raw.(*serviceRow))
	}
	return rows, nil
}

// holdersOf returns the holders of addr, from the address index.
func holdersOf(a *Allocator, addr netip.Addr) []*serviceRow {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.ix.holders(addr))
}

// isHeld reports whether some Service holds addr, by the address index.
func isHeld(a *Allocator, addr netip.Addr) bool {
	return len(holdersOf(a, addr)) > 0
}

// isFree reports whether slot s of pool and fam is free.
func isFree(a *Allocator, pool string, fam Family, s u128) (bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	l := a.ix.list(pool, fam)
	return l != nil && l.contains(s), nil
}
