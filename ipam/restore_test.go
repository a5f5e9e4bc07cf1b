package ipam

import (
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRestore(t *testing.T) {
	pool := PoolConfig{Name: "p", Addresses: []string{"192.0.2.0/29", "2001:db8::/125"}}
	type rejected struct {
		svc, ip string
		err     error
	}
	tests := []struct {
		name         string
		pools        []PoolConfig
		svcs         []*testService
		wantAssigned map[string][]string
		wantStale    []string
		wantRejected []rejected
		// then runs after Restore.
		then []step
	}{{
		name:  "status is restored and Allocate keeps it",
		pools: []PoolConfig{pool},
		svcs: []*testService{
			makeService("ns", "a", withStatus("192.0.2.5")),
			makeService("ns", "b", withFamilies(require, v64...), withStatus("192.0.2.3", "2001:db8::7")),
			makeService("ns", "pending"),
		},
		wantAssigned: map[string][]string{"ns/a": {"192.0.2.5"}, "ns/b": {"2001:db8::7", "192.0.2.3"}},
		then: []step{
			{alloc: makeService("ns", "a"), want: []string{"192.0.2.5"}},
			{alloc: makeService("ns", "b", withFamilies(require, v64...)), want: []string{"2001:db8::7", "192.0.2.3"}},
			{alloc: makeService("ns", "pending"), want: []string{"192.0.2.0"}},
			{alloc: makeService("ns", "c", withIPs("192.0.2.5")), wantErr: ErrAddressTaken},
		},
	}, {
		name:  "the older Service keeps a contested address",
		pools: []PoolConfig{pool},
		svcs: []*testService{
			makeService("ns", "young", withCreated(10), withStatus("192.0.2.5")),
			makeService("ns", "old", withCreated(5), withStatus("192.0.2.5")),
		},
		wantAssigned: map[string][]string{"ns/old": {"192.0.2.5"}},
		wantRejected: []rejected{{"ns/young", "192.0.2.5", ErrAddressTaken}},
		then: []step{
			{alloc: makeService("ns", "young", withCreated(10)), want: []string{"192.0.2.0"}},
			{alloc: makeService("ns", "old", withCreated(5)), want: []string{"192.0.2.5"}},
		},
	}, {
		name:  "equal ages: namespace, then name decide",
		pools: []PoolConfig{pool},
		svcs: []*testService{
			makeService("b", "a", withStatus("192.0.2.5")),
			makeService("a", "z", withStatus("192.0.2.5")),
			makeService("a", "y", withStatus("192.0.2.5")),
		},
		wantAssigned: map[string][]string{"a/y": {"192.0.2.5"}},
		wantRejected: []rejected{{"a/z", "192.0.2.5", ErrAddressTaken}, {"b/a", "192.0.2.5", ErrAddressTaken}},
	}, {
		name:  "Services that may share keep a shared address",
		pools: []PoolConfig{pool},
		svcs: []*testService{
			makeService("ns", "tcp", withShare("dns"), withPorts("53/TCP"), withStatus("192.0.2.5")),
			makeService("ns", "udp", withShare("dns"), withPorts("53/UDP"), withStatus("192.0.2.5")),
			makeService("ns", "clash", withCreated(1), withShare("dns"), withPorts("53/UDP"), withStatus("192.0.2.5")),
		},
		wantAssigned: map[string][]string{"ns/tcp": {"192.0.2.5"}, "ns/udp": {"192.0.2.5"}},
		wantRejected: []rejected{{"ns/clash", "192.0.2.5", ErrSharingRefused}},
	}, {
		name:  "a dual-stack Service losing one family keeps the other and gets a fresh one",
		pools: []PoolConfig{pool},
		svcs: []*testService{
			makeService("ns", "old", withStatus("192.0.2.5")),
			makeService("ns", "young", withCreated(1), withFamilies(require, v46...), withStatus("192.0.2.5", "2001:db8::5")),
		},
		wantAssigned: map[string][]string{"ns/old": {"192.0.2.5"}, "ns/young": {"2001:db8::5"}},
		wantRejected: []rejected{{"ns/young", "192.0.2.5", ErrAddressTaken}},
		then: []step{
			{alloc: makeService("ns", "young", withCreated(1), withFamilies(require, v46...)), want: []string{"192.0.2.0", "2001:db8::5"}},
		},
	}, {
		name:  "addresses outside every pool are kept and reported stale",
		pools: []PoolConfig{pool},
		svcs: []*testService{
			makeService("ns", "a", withStatus("203.0.113.9")),
			makeService("ns", "b", withStatus("192.0.2.1")),
		},
		wantAssigned: map[string][]string{"ns/a": {"203.0.113.9"}, "ns/b": {"192.0.2.1"}},
		wantStale:    []string{"ns/a=203.0.113.9"},
		then: []step{
			{alloc: makeService("ns", "a"), want: []string{"203.0.113.9"}},
			{setPools: []PoolConfig{pool}, want: []string{"ns/a=203.0.113.9"}},
			{release: "ns/a"},
			{setPools: []PoolConfig{pool}},
		},
	}, {
		name:  "a stale address is never shared with a newcomer",
		pools: []PoolConfig{pool},
		svcs: []*testService{
			makeService("ns", "a", withShare("k"), withPorts("80/TCP"), withStatus("203.0.113.9")),
		},
		wantAssigned: map[string][]string{"ns/a": {"203.0.113.9"}},
		wantStale:    []string{"ns/a=203.0.113.9"},
		then: []step{
			{alloc: makeService("ns", "b", withShare("k"), withPorts("443/TCP")), want: []string{"192.0.2.0"}},
		},
	}, {
		name:  "entries that are not addresses, and second addresses of a family",
		pools: []PoolConfig{pool},
		svcs: []*testService{
			makeService("ns", "a", func(s *testService) {
				s.Shown = append([]netip.Addr{{}, netip.MustParseAddr("2001:db8::9%eth0"), netip.MustParseAddr("::ffff:192.0.2.4")},
					parseAddrs("192.0.2.1,192.0.2.1,192.0.2.2")...)
			}),
		},
		wantAssigned: map[string][]string{"ns/a": {"192.0.2.1"}},
		wantRejected: []rejected{
			{"ns/a", "invalid IP", ErrInvalidStatus}, {"ns/a", "2001:db8::9%eth0", ErrInvalidStatus},
			{"ns/a", "::ffff:192.0.2.4", ErrInvalidStatus}, {"ns/a", "192.0.2.2", ErrInvalidStatus},
		},
	}, {
		name:  "a status that no longer matches the spec is planned anew at the next Allocate",
		pools: []PoolConfig{pool},
		svcs: []*testService{
			makeService("ns", "moved", withIPs("192.0.2.6"), withStatus("192.0.2.1")),
			makeService("ns", "grown", withFamilies(require, v46...), withStatus("192.0.2.2")),
			makeService("ns", "bad", unreadable(), withStatus("192.0.2.3")),
		},
		wantAssigned: map[string][]string{"ns/moved": {"192.0.2.1"}, "ns/grown": {"192.0.2.2"}, "ns/bad": {"192.0.2.3"}},
		then: []step{
			{alloc: makeService("ns", "moved", withIPs("192.0.2.6")), want: []string{"192.0.2.6"}},
			{alloc: makeService("ns", "grown", withFamilies(require, v46...)), want: []string{"192.0.2.2", "2001:db8::"}},
			{alloc: makeService("ns", "bad", withIPs("192.0.2.1,192.0.2.2")), wantErr: ErrInvalidRequest},
			{alloc: makeService("ns", "bad"), want: []string{"192.0.2.3"}},
			{alloc: makeService("ns", "next"), want: []string{"192.0.2.0"}},
			{alloc: makeService("ns", "next2"), want: []string{"192.0.2.1"}},
		},
	}, {
		name:  "avoided addresses held by a status are stale",
		pools: []PoolConfig{{Name: "b", Addresses: []string{"192.0.2.0/30"}, AvoidBuggyIPs: true}},
		svcs: []*testService{
			makeService("ns", "a", withStatus("192.0.2.0")),
		},
		wantAssigned: map[string][]string{"ns/a": {"192.0.2.0"}},
		wantStale:    []string{"ns/a=192.0.2.0"},
		then: []step{
			{alloc: makeService("ns", "b"), want: []string{"192.0.2.1"}},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAllocator(t, tt.pools...)
			report := a.Restore(claims(tt.svcs))

			got := map[string][]string{}
			for k, v := range assignedAll(t, a) {
				got[k] = strs(v)
			}
			if diff := cmp.Diff(tt.wantAssigned, got); diff != "" {
				t.Errorf("assignments after Restore() differ (-want +got):\n%s", diff)
			}
			var restored []string
			for _, as := range report.Restored {
				restored = append(restored, fmt.Sprintf("%s/%s=%s", as.Namespace, as.Name, as.Addr))
			}
			var wantRestored []string
			for _, svc := range tt.svcs {
				for _, addr := range tt.wantAssigned[svc.Namespace+"/"+svc.Name] {
					wantRestored = append(wantRestored, fmt.Sprintf("%s/%s=%s", svc.Namespace, svc.Name, addr))
				}
			}
			if diff := cmp.Diff(wantRestored, restored); diff != "" {
				t.Errorf("Restore().Restored differs (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantStale, staleStrs(report.Stale)); diff != "" {
				t.Errorf("Restore().Stale differs (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantStale, staleStrs(a.Stale())); diff != "" {
				t.Errorf("Stale() after Restore() differs (-want +got):\n%s", diff)
			}
			if len(report.Rejected) != len(tt.wantRejected) {
				t.Errorf("Restore().Rejected = %v, want %d", report.Rejected, len(tt.wantRejected))
			}
			for i, want := range tt.wantRejected {
				if i >= len(report.Rejected) {
					break
				}
				r := report.Rejected[i]
				if r.Namespace+"/"+r.Name != want.svc || r.IP != want.ip || !errors.Is(r.Err, want.err) {
					t.Errorf("Restore().Rejected[%d] = %s/%s %s %v, want %s %s %v", i, r.Namespace, r.Name, r.IP, r.Err, want.svc, want.ip, want.err)
				}
			}
			checkStore(t, a)
			runStepsOn(t, a, tt.then)
		})
	}
}

// A Service the store knows keeps what it holds; its status is not read.
func TestRestoreKnownService(t *testing.T) {
	a := newAllocator(t, PoolConfig{Name: "p", Addresses: []string{"192.0.2.0/29"}})
	if _, err := a.Allocate(makeService("ns", "a").Request); err != nil {
		t.Fatal(err)
	}
	report := a.Restore(claims([]*testService{
		makeService("ns", "a", withStatus("192.0.2.5")),
		makeService("ns", "b", withCreated(-10), withStatus("192.0.2.0")),
	}))
	if got := strs(a.Assigned("ns", "a")); !cmp.Equal(got, []string{"192.0.2.0"}) {
		t.Errorf("Assigned(ns/a) = %v, want [192.0.2.0]", got)
	}
	if len(report.Rejected) != 1 || !errors.Is(report.Rejected[0].Err, ErrAddressTaken) {
		t.Errorf("Restore().Rejected = %v, want ns/b's 192.0.2.0, taken", report.Rejected)
	}
	checkStore(t, a)
}

// A restart loses nothing: Restore from the status Allocate produced gives
// the same store.
func TestRestoreRoundTrip(t *testing.T) {
	pools := []PoolConfig{
		{Name: "p", Addresses: []string{"192.0.2.0/28", "2001:db8::/124"}, AvoidBuggyIPs: true},
		{Name: "q", Addresses: []string{"198.51.100.0/30"}},
	}
	a := newAllocator(t, pools...)
	var svcs []*testService
	for i := range 20 {
		svc := makeService("ns", fmt.Sprintf("s%02d", i), withCreated(i), withShare("k"), withPorts(fmt.Sprintf("%d/TCP", i%3)))
		if i%2 == 1 {
			withFamilies(prefer, v64...)(svc)
		}
		got, err := a.Allocate(svc.Request)
		if err != nil {
			t.Fatalf("Allocate(%s) = %v", svc.Name, err)
		}
		withStatus(strs(got)...)(svc)
		svcs = append(svcs, svc)
	}
	for i := 0; i < 20; i += 3 {
		a.Release("ns", svcs[i].Name)
		withStatus()(svcs[i])
	}

	b := newAllocator(t, pools...)
	report := b.Restore(claims(svcs))
	if len(report.Rejected) > 0 || len(report.Stale) > 0 {
		t.Errorf("Restore() = %+v, want neither rejected nor stale", report)
	}
	if diff := cmp.Diff(dump(t, a), dump(t, b)); diff != "" {
		t.Errorf("store restored from status differs (-allocated +restored):\n%s", diff)
	}
	checkStore(t, b)
}

func TestStats(t *testing.T) {
	a := newAllocator(t,
		PoolConfig{Name: "big", Addresses: []string{"2001:db8::/64", "2001:db8:1::/64", "203.0.113.0/24"}, AvoidBuggyIPs: true},
		PoolConfig{Name: "small", Addresses: []string{"192.0.2.0/24"}},
	)
	for _, svc := range []*testService{
		makeService("ns", "a", withFamilies(require, v46...)),
		makeService("ns", "b", withShare("k"), withIPs("192.0.2.9"), withPorts("80/TCP")),
		makeService("ns", "c", withShare("k"), withIPs("192.0.2.9"), withPorts("443/TCP")),
	} {
		if _, err := a.Allocate(svc.Request); err != nil {
			t.Fatalf("Allocate(%s) = %v", svc.Name, err)
		}
	}
	two64 := new(big.Int).Lsh(big.NewInt(1), 64)
	two65 := new(big.Int).Lsh(big.NewInt(1), 65)
	want := []PoolStats{
		{Pool: "big", Family: "IPv4", Total: big.NewInt(254), InUse: 1, Free: big.NewInt(253)},
		{Pool: "big", Family: "IPv6", Total: two65, InUse: 1, Free: new(big.Int).Sub(two65, big.NewInt(1))},
		{Pool: "small", Family: "IPv4", Total: big.NewInt(256), InUse: 1, Free: big.NewInt(255)},
	}
	if diff := cmp.Diff(want, a.Stats(), compareBig); diff != "" {
		t.Errorf("Stats() differs (-want +got):\n%s", diff)
	}
	if two64.Cmp(want[1].Total) >= 0 {
		t.Fatal("two /64s should count 2^65")
	}
	checkStore(t, a)
}

func TestConcurrentAllocate(t *testing.T) {
	a := newAllocator(t, PoolConfig{Name: "p", Addresses: []string{"192.0.2.0/26", "2001:db8::/122"}})
	var wg sync.WaitGroup
	results := make([][]netip.Addr, 64)
	errs := make([]error, 64)
	for i := range 64 {
		wg.Go(func() {
			svc := makeService("ns", fmt.Sprintf("s%d", i), withFamilies(require, v46...))
			results[i], errs[i] = a.Allocate(svc.Request)
			if i%4 == 0 {
				a.Release("ns", svc.Name)
				results[i] = nil
			}
			_ = a.Stats()
		})
	}
	wg.Wait()
	seen := map[netip.Addr]int{}
	for i, r := range results {
		if errs[i] != nil {
			t.Errorf("Allocate(s%d) = %v", i, errs[i])
		}
		for _, addr := range r {
			if j, dup := seen[addr]; dup {
				t.Errorf("%s went to s%d and s%d", addr, j, i)
			}
			seen[addr] = i
		}
	}
	checkStore(t, a)
}
