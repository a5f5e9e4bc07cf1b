package ipam

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// step is one call in a sequence test: Allocate, Release, Settle or
// SetPools.
type step struct {
	alloc    *testService
	release  string       // "namespace/name"
	settle   *testService // Settle with its name and Shown
	setPools []PoolConfig // SetPools
	// want is what Allocate returns; for Settle, what it frees; for
	// SetPools, the stale assignments as "namespace/name=address".
	want    []string
	wantErr error
	// wantMsg are substrings of the error message: it must name the
	// details the Event needs.
	wantMsg []string
}

// runSteps runs steps against an Allocator with pools. After every step it
// checks the store's invariants; after every failed step, that the store
// is exactly as before; after every successful Allocate, that a second
// call returns the same and changes nothing.
func runSteps(t *testing.T, pools []PoolConfig, steps []step) *Allocator {
	t.Helper()
	a := newAllocator(t, pools...)
	runStepsOn(t, a, steps)
	return a
}

// stepsCase is a sequence test: steps against an Allocator with pools.
type stepsCase struct {
	name  string
	pools []PoolConfig
	steps []step
}

// runCases runs each case as a subtest.
func runCases(t *testing.T, cases []stepsCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { runSteps(t, c.pools, c.steps) })
	}
}

func runStepsOn(t *testing.T, a *Allocator, steps []step) {
	t.Helper()
	for i, s := range steps {
		before, beforeAssigned := dump(t, a), assignedAll(t, a)
		switch {
		case s.alloc != nil:
			key := s.alloc.Namespace + "/" + s.alloc.Name
			got, err := a.Allocate(s.alloc.Request)
			if s.wantErr != nil {
				if !errors.Is(err, s.wantErr) {
					t.Fatalf("step %d: Allocate(%q) = %v, %v; want error %v", i, key, got, err, s.wantErr)
				}
				checkMsg(t, i, err, s.wantMsg)
				if got != nil {
					t.Errorf("step %d: failed Allocate(%q) = %v, want no addresses", i, key, got)
				}
				if diff := cmp.Diff(before, dump(t, a)); diff != "" {
					t.Errorf("step %d: failed Allocate(%q) changed the store (-before +after):\n%s", i, key, diff)
				}
				break
			}
			if err != nil {
				t.Fatalf("step %d: Allocate(%q) = %v, want %v", i, key, err, s.want)
			}
			if diff := cmp.Diff(s.want, strs(got)); diff != "" {
				t.Fatalf("step %d: Allocate(%q) = %v, want %v", i, key, got, s.want)
			}
			if diff := cmp.Diff(s.want, strs(a.Assigned(s.alloc.Namespace, s.alloc.Name))); diff != "" {
				t.Errorf("step %d: Assigned(%q) after Allocate differs (-want +got):\n%s", i, key, diff)
			}
			settled := dump(t, a)
			again, err := a.Allocate(s.alloc.Request)
			if err != nil || !cmp.Equal(strs(again), s.want) {
				t.Errorf("step %d: second Allocate(%q) = %v, %v; want %v", i, key, again, err, s.want)
			}
			if diff := cmp.Diff(settled, dump(t, a)); diff != "" {
				t.Errorf("step %d: second Allocate(%q) changed the store (-before +after):\n%s", i, key, diff)
			}
		case s.settle != nil:
			key := s.settle.Namespace + "/" + s.settle.Name
			assigned := a.Assigned(s.settle.Namespace, s.settle.Name)
			freed := a.Settle(s.settle.Namespace, s.settle.Name, s.settle.Shown)
			if diff := cmp.Diff(s.want, strs(freed)); diff != "" {
				t.Errorf("step %d: Settle(%q, %v) freed %v, want %v", i, key, s.settle.Shown, freed, s.want)
			}
			if got := a.Assigned(s.settle.Namespace, s.settle.Name); !slices.Equal(got, assigned) {
				t.Errorf("step %d: Settle(%q) changed the assignment from %v to %v", i, key, assigned, got)
			}
		case s.release != "":
			ns, name, _ := strings.Cut(s.release, "/")
			a.Release(ns, name)
			if got := a.Assigned(ns, name); got != nil {
				t.Errorf("step %d: Assigned(%q) after Release = %v, want nothing", i, s.release, got)
			}
		case s.setPools != nil:
			// One by one, so that SetPools gets to see pools that are
			// invalid together.
			var pools []Pool
			for _, cfg := range s.setPools {
				pools = append(pools, parsePools(t, cfg)...)
			}
			stale, err := a.SetPools(pools)
			if s.wantErr != nil {
				if !errors.Is(err, s.wantErr) {
					t.Fatalf("step %d: SetPools() = %v, want error %v", i, err, s.wantErr)
				}
				if diff := cmp.Diff(before, dump(t, a)); diff != "" {
					t.Errorf("step %d: failed SetPools() changed the store (-before +after):\n%s", i, diff)
				}
				break
			}
			if err != nil {
				t.Fatalf("step %d: SetPools() = %v", i, err)
			}
			var got []string
			for _, st := range stale {
				got = append(got, fmt.Sprintf("%s/%s=%s", st.Namespace, st.Name, st.Addr))
			}
			if diff := cmp.Diff(s.want, got); diff != "" {
				t.Errorf("step %d: SetPools() stale = %v, want %v", i, got, s.want)
			}
			if diff := cmp.Diff(got, staleStrs(a.Stale())); diff != "" {
				t.Errorf("step %d: Stale() after SetPools differs (-SetPools +Stale):\n%s", i, diff)
			}
			if diff := cmp.Diff(beforeAssigned, assignedAll(t, a), cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" {
				t.Errorf("step %d: SetPools() moved or dropped assignments (-before +after):\n%s", i, diff)
			}
		}
		checkStore(t, a)
	}
}

func checkMsg(t *testing.T, i int, err error, want []string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("step %d: error %q does not say %q", i, err, w)
		}
	}
}

func strs(as []netip.Addr) []string {
	if as == nil {
		return nil
	}
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return out
}

func staleStrs(as []Assignment) []string {
	var out []string
	for _, a := range as {
		out = append(out, fmt.Sprintf("%s/%s=%s", a.Namespace, a.Name, a.Addr))
	}
	return out
}

const (
	single  = SingleStack
	prefer  = PreferDualStack
	require = RequireDualStack
)

func TestAllocateFamilies(t *testing.T) {
	dual := PoolConfig{Name: "dual", Addresses: []string{"192.0.2.0/30", "2001:db8::/126"}}
	only4 := PoolConfig{Name: "only4", Addresses: []string{"198.51.100.0/30"}}
	only6 := PoolConfig{Name: "only6", Addresses: []string{"2001:db8:6::/126"}}
	sixFirst := PoolConfig{Name: "six-first", Addresses: []string{"2001:db8:1::/127", "203.0.113.0/31"}}
	runCases(t, []stepsCase{{
		name:  "SingleStack IPv4 gets the lowest IPv4 address",
		pools: []PoolConfig{dual},
		steps: []step{{alloc: makeService("ns", "a"), want: []string{"192.0.2.0"}}},
	}, {
		name:  "SingleStack IPv6",
		pools: []PoolConfig{dual},
		steps: []step{{alloc: makeService("ns", "a", withFamilies(single, v6s...)), want: []string{"2001:db8::"}}},
	}, {
		name:  "SingleStack takes the first of two families",
		pools: []PoolConfig{dual},
		steps: []step{{alloc: makeService("ns", "a", withFamilies(single, v64...)), want: []string{"2001:db8::"}}},
	}, {
		name:  "family no pool offers",
		pools: []PoolConfig{only4},
		steps: []step{{alloc: makeService("ns", "a", withFamilies(single, v6s...)), wantErr: ErrWrongFamily,
			wantMsg: []string{"IPv6", "ns/a", `pool "only4" offers no IPv6`}}},
	}, {
		name:  "the first pool offering the family",
		pools: []PoolConfig{only4, only6},
		steps: []step{{alloc: makeService("ns", "a", withFamilies(single, v6s...)), want: []string{"2001:db8:6::"}}},
	}, {
		name:  "PreferDualStack gets both, primary first",
		pools: []PoolConfig{dual},
		steps: []step{
			{alloc: makeService("ns", "a", withFamilies(prefer, v46...)), want: []string{"192.0.2.0", "2001:db8::"}},
			{alloc: makeService("ns", "b", withFamilies(prefer, v64...)), want: []string{"2001:db8::1", "192.0.2.1"}},
		},
	}, {
		name:  "PreferDualStack from a single-family pool gets one",
		pools: []PoolConfig{only4, dual},
		steps: []step{{alloc: makeService("ns", "a", withFamilies(prefer, v46...)), want: []string{"198.51.100.0"}}},
	}, {
		name:  "PreferDualStack with the secondary family exhausted gets one",
		pools: []PoolConfig{{Name: "p", Addresses: []string{"192.0.2.0/30", "2001:db8::/128"}}},
		steps: []step{
			{alloc: makeService("ns", "a", withFamilies(single, v6s...)), want: []string{"2001:db8::"}},
			{alloc: makeService("ns", "b", withFamilies(prefer, v46...)), want: []string{"192.0.2.0"}},
		},
	}, {
		name:  "PreferDualStack with the primary family exhausted fails",
		pools: []PoolConfig{{Name: "p", Addresses: []string{"192.0.2.0/32", "2001:db8::/126"}}},
		steps: []step{
			{alloc: makeService("ns", "a"), want: []string{"192.0.2.0"}},
			{alloc: makeService("ns", "b", withFamilies(prefer, v46...)), wantErr: ErrExhausted, wantMsg: []string{`pool "p" is full`, "ns/b"}},
		},
	}, {
		name:  "RequireDualStack gets both",
		pools: []PoolConfig{dual},
		steps: []step{{alloc: makeService("ns", "a", withFamilies(require, v64...)), want: []string{"2001:db8::", "192.0.2.0"}}},
	}, {
		name:  "RequireDualStack skips single-family pools",
		pools: []PoolConfig{only4, only6, dual},
		steps: []step{{alloc: makeService("ns", "a", withFamilies(require, v46...)), want: []string{"192.0.2.0", "2001:db8::"}}},
	}, {
		name:  "RequireDualStack without a dual-stack pool",
		pools: []PoolConfig{only4, only6},
		steps: []step{{alloc: makeService("ns", "a", withFamilies(require, v46...)), wantErr: ErrDualStackUnavailable,
			wantMsg: []string{"RequireDualStack", `pool "only4" offers no IPv6`, `pool "only6" offers no IPv4`}}},
	}, {
		name:  "RequireDualStack is atomic: one family full, nothing taken",
		pools: []PoolConfig{{Name: "p", Addresses: []string{"192.0.2.0/30", "2001:db8::/128"}}},
		steps: []step{
			{alloc: makeService("ns", "a", withFamilies(single, v6s...)), want: []string{"2001:db8::"}},
			{alloc: makeService("ns", "b", withFamilies(require, v46...)), wantErr: ErrExhausted},
		},
	}, {
		name:  "no ipFamilies: the pool's first family",
		pools: []PoolConfig{sixFirst},
		steps: []step{{alloc: makeService("ns", "a", withFamilies(single)), want: []string{"2001:db8:1::"}}},
	}, {
		name:  "no ipFamilies: the pool's other family when the first is full",
		pools: []PoolConfig{sixFirst},
		steps: []step{
			{alloc: makeService("ns", "a", withFamilies(single)), want: []string{"2001:db8:1::"}},
			{alloc: makeService("ns", "b", withFamilies(single)), want: []string{"2001:db8:1::1"}},
			{alloc: makeService("ns", "c", withFamilies(single)), want: []string{"203.0.113.0"}},
		},
	}, {
		name:  "no ipFamilies, PreferDualStack: both in the pool's order",
		pools: []PoolConfig{sixFirst},
		steps: []step{{alloc: makeService("ns", "a", withFamilies(prefer)), want: []string{"2001:db8:1::", "203.0.113.0"}}},
	}, {
		name:  "no ipFamilies, RequireDualStack: a pool with both",
		pools: []PoolConfig{only4, sixFirst},
		steps: []step{{alloc: makeService("ns", "a", withFamilies(require)), want: []string{"2001:db8:1::", "203.0.113.0"}}},
	}, {
		name:  "bad family policy",
		pools: []PoolConfig{dual},
		steps: []step{{alloc: makeService("ns", "a", withFamilies(FamilyPolicy(7), v4s...)), wantErr: ErrInvalidRequest, wantMsg: []string{"FamilyPolicy(7)", "ns/a"}}},
	}, {
		name:  "bad families",
		pools: []PoolConfig{dual},
		steps: []step{
			{alloc: makeService("ns", "a", withFamilies(prefer, IPv4, IPv4)), wantErr: ErrInvalidRequest, wantMsg: []string{"families [IPv4 IPv4]"}},
			{alloc: makeService("ns", "a", withFamilies(prefer, IPv4, 5)), wantErr: ErrInvalidRequest, wantMsg: []string{"Family(5)"}},
			{alloc: makeService("ns", "a", withFamilies(prefer, IPv4, IPv6, IPv4)), wantErr: ErrInvalidRequest},
		},
	}, {
		name:  "no name",
		pools: []PoolConfig{dual},
		steps: []step{{alloc: makeService("ns", ""), wantErr: ErrInvalidRequest, wantMsg: []string{"name"}}},
	}})
}

func TestAllocateRequestedAddresses(t *testing.T) {
	pub := PoolConfig{Name: "pub", Addresses: []string{"192.0.2.0/28", "2001:db8::/120"}}
	manual := PoolConfig{Name: "manual", Addresses: []string{"198.51.100.0/28"}, AutoAssign: ptr(false)}
	teamA := PoolConfig{Name: "team-a", Addresses: []string{"203.0.113.0/28"}, Namespaces: []string{"a"}}
	buggy := PoolConfig{Name: "buggy", Addresses: []string{"203.0.113.240-203.0.113.255"}, AvoidBuggyIPs: true}
	runCases(t, []stepsCase{{
		name:  "annotation",
		pools: []PoolConfig{pub},
		steps: []step{{alloc: makeService("ns", "a", withIPs("192.0.2.9")), want: []string{"192.0.2.9"}}},
	}, {
		name:  "annotation with both families, in the Service's family order",
		pools: []PoolConfig{pub},
		steps: []step{{alloc: makeService("ns", "a", withFamilies(require, v64...), withIPs(" 192.0.2.9 , 2001:db8::9 ")),
			want: []string{"2001:db8::9", "192.0.2.9"}}},
	}, {
		name:  "PreferDualStack with one requested address gets only it",
		pools: []PoolConfig{pub},
		steps: []step{{alloc: makeService("ns", "a", withFamilies(prefer, v46...), withIPs("192.0.2.9")), want: []string{"192.0.2.9"}}},
	}, {
		name:  "deprecated spec.loadBalancerIP",
		pools: []PoolConfig{pub},
		steps: []step{{alloc: makeService("ns", "a", withLBIP("192.0.2.7")), want: []string{"192.0.2.7"}}},
	}, {
		name:  "a pool without autoAssign serves requested addresses",
		pools: []PoolConfig{pub, manual},
		steps: []step{{alloc: makeService("ns", "a", withIPs("198.51.100.3")), want: []string{"198.51.100.3"}}},
	}, {
		name:  "mapped address",
		pools: []PoolConfig{pub},
		steps: []step{{alloc: makeService("ns", "a", withIPs("::ffff:192.0.2.1")), wantErr: ErrInvalidRequest, wantMsg: []string{srcIPs, "::ffff:192.0.2.1"}}},
	}, {
		name:  "address with a zone",
		pools: []PoolConfig{pub},
		steps: []step{{alloc: makeService("ns", "a", withFamilies(single, v6s...), withIPs("2001:db8::1%eth0")), wantErr: ErrInvalidRequest}},
	}, {
		name:  "invalid address",
		pools: []PoolConfig{pub},
		steps: []step{{alloc: makeService("ns", "a", func(s *testService) { s.IPs = []netip.Addr{{}} }), wantErr: ErrInvalidRequest}},
	}, {
		name:  "three addresses",
		pools: []PoolConfig{pub},
		steps: []step{{alloc: makeService("ns", "a", withFamilies(prefer, v46...), withIPs("192.0.2.1,2001:db8::1,192.0.2.2")), wantErr: ErrInvalidRequest}},
	}, {
		name:  "two of one family",
		pools: []PoolConfig{pub},
		steps: []step{{alloc: makeService("ns", "a", withFamilies(prefer, v46...), withIPs("192.0.2.1,192.0.2.2")), wantErr: ErrInvalidRequest,
			wantMsg: []string{"two IPv4 addresses (192.0.2.1, 192.0.2.2)"}}},
	}, {
		name:  "a family the Service does not have",
		pools: []PoolConfig{pub},
		steps: []step{{alloc: makeService("ns", "a", withIPs("2001:db8::1")), wantErr: ErrWrongFamily, wantMsg: []string{"IPv6 address 2001:db8::1", "SingleStack"}}},
	}, {
		name:  "RequireDualStack with one requested address",
		pools: []PoolConfig{pub},
		steps: []step{{alloc: makeService("ns", "a", withFamilies(require, v46...), withIPs("192.0.2.1")), wantErr: ErrDualStackUnavailable}},
	}, {
		name:  "no ipFamilies, SingleStack, two addresses",
		pools: []PoolConfig{pub},
		steps: []step{{alloc: makeService("ns", "a", withFamilies(single), withIPs("192.0.2.1,2001:db8::1")), wantErr: ErrInvalidRequest}},
	}, {
		name:  "no ipFamilies: the address decides",
		pools: []PoolConfig{pub},
		steps: []step{{alloc: makeService("ns", "a", withFamilies(single), withIPs("2001:db8::1")), want: []string{"2001:db8::1"}}},
	}, {
		name:  "outside every pool",
		pools: []PoolConfig{pub},
		steps: []step{{alloc: makeService("ns", "a", withIPs("203.0.113.1")), wantErr: ErrOutsidePools, wantMsg: []string{"203.0.113.1", "no pool"}}},
	}, {
		name:  "outside the named pool",
		pools: []PoolConfig{pub, manual},
		steps: []step{{alloc: makeService("ns", "a", withIPs("192.0.2.1"), withPool("manual")), wantErr: ErrOutsidePools,
			wantMsg: []string{`in pool "pub", not in pool "manual"`}}},
	}, {
		name:  "inside the named pool",
		pools: []PoolConfig{pub, manual},
		steps: []step{{alloc: makeService("ns", "a", withIPs("198.51.100.1"), withPool("manual")), want: []string{"198.51.100.1"}}},
	}, {
		name:  "a pool for other namespaces",
		pools: []PoolConfig{pub, teamA},
		steps: []step{
			{alloc: makeService("b", "x", withIPs("203.0.113.1")), wantErr: ErrPoolNotAllowed, wantMsg: []string{`pool "team-a" serves only namespaces a`}},
			{alloc: makeService("a", "x", withIPs("203.0.113.1")), want: []string{"203.0.113.1"}},
		},
	}, {
		name:  "a pool for other Services",
		pools: []PoolConfig{{Name: "sel", Addresses: []string{"192.0.2.0/28"}, ServiceSelector: selector("tier", "edge")}},
		steps: []step{
			{alloc: makeService("ns", "x", withIPs("192.0.2.1")), wantErr: ErrPoolNotAllowed, wantMsg: []string{"tier=edge"}},
			{alloc: makeService("ns", "y", withIPs("192.0.2.1"), withLabels("tier", "edge")), want: []string{"192.0.2.1"}},
		},
	}, {
		name:  "a .0 or .255 address of an avoidBuggyIPs pool",
		pools: []PoolConfig{buggy},
		steps: []step{
			{alloc: makeService("ns", "a", withIPs("203.0.113.255")), wantErr: ErrOutsidePools, wantMsg: []string{"avoidBuggyIPs"}},
			{alloc: makeService("ns", "b", withIPs("203.0.113.254")), want: []string{"203.0.113.254"}},
		},
	}, {
		name:  "held by another Service",
		pools: []PoolConfig{pub},
		steps: []step{
			{alloc: makeService("ns", "a"), want: []string{"192.0.2.0"}},
			{alloc: makeService("ns", "b", withIPs("192.0.2.0")), wantErr: ErrAddressTaken, wantMsg: []string{"192.0.2.0", "Service ns/a"}},
		},
	}, {
		name:  "dual-stack request is atomic: one address taken, nothing held",
		pools: []PoolConfig{pub},
		steps: []step{
			{alloc: makeService("ns", "a", withFamilies(single, v6s...), withIPs("2001:db8::5")), want: []string{"2001:db8::5"}},
			{alloc: makeService("ns", "b", withFamilies(require, v46...), withIPs("192.0.2.5,2001:db8::5")), wantErr: ErrAddressTaken},
		},
	}})
}

func TestAllocatePools(t *testing.T) {
	first := PoolConfig{Name: "first", Addresses: []string{"192.0.2.0/31"}}
	second := PoolConfig{Name: "second", Addresses: []string{"198.51.100.0/31"}}
	manual := PoolConfig{Name: "manual", Addresses: []string{"203.0.113.0/31"}, AutoAssign: ptr(false)}
	runCases(t, []stepsCase{{
		name:  "pools in configuration order, the next when one is full",
		pools: []PoolConfig{first, second},
		steps: []step{
			{alloc: makeService("ns", "a"), want: []string{"192.0.2.0"}},
			{alloc: makeService("ns", "b"), want: []string{"192.0.2.1"}},
			{alloc: makeService("ns", "c"), want: []string{"198.51.100.0"}},
			{alloc: makeService("ns", "d"), want: []string{"198.51.100.1"}},
			{alloc: makeService("ns", "e"), wantErr: ErrExhausted, wantMsg: []string{`pool "first" is full`, `pool "second" is full`}},
		},
	}, {
		name:  "the named pool",
		pools: []PoolConfig{first, second},
		steps: []step{{alloc: makeService("ns", "a", withPool("second")), want: []string{"198.51.100.0"}}},
	}, {
		name:  "the named pool, full",
		pools: []PoolConfig{first, {Name: "tiny", Addresses: []string{"198.51.100.9/32"}}},
		steps: []step{
			{alloc: makeService("ns", "a", withPool("tiny")), want: []string{"198.51.100.9"}},
			{alloc: makeService("ns", "b", withPool("tiny")), wantErr: ErrExhausted},
		},
	}, {
		name:  "an unknown pool",
		pools: []PoolConfig{first, second},
		steps: []step{{alloc: makeService("ns", "a", withPool("third")), wantErr: ErrUnknownPool, wantMsg: []string{`"third"`, "first, second"}}},
	}, {
		name:  "a named pool without autoAssign",
		pools: []PoolConfig{first, manual},
		steps: []step{{alloc: makeService("ns", "a", withPool("manual")), want: []string{"203.0.113.0"}}},
	}, {
		name:  "a pool without autoAssign is skipped",
		pools: []PoolConfig{manual, second},
		steps: []step{{alloc: makeService("ns", "a"), want: []string{"198.51.100.0"}}},
	}, {
		name:  "no pool with autoAssign",
		pools: []PoolConfig{manual},
		steps: []step{{alloc: makeService("ns", "a"), wantErr: ErrPoolNotAllowed, wantMsg: []string{`pool "manual" has autoAssign false`}}},
	}, {
		name:  "a named pool for other namespaces",
		pools: []PoolConfig{first, {Name: "ops", Addresses: []string{"198.51.100.0/31"}, Namespaces: []string{"ops"}}},
		steps: []step{
			{alloc: makeService("dev", "a", withPool("ops")), wantErr: ErrPoolNotAllowed, wantMsg: []string{`names pool "ops"`, "serves only namespaces ops"}},
			{alloc: makeService("ops", "a", withPool("ops")), want: []string{"198.51.100.0"}},
		},
	}, {
		name: "namespaces and selectors choose the pool",
		pools: []PoolConfig{
			{Name: "ops", Addresses: []string{"192.0.2.0/31"}, Namespaces: []string{"ops"}},
			{Name: "edge", Addresses: []string{"198.51.100.0/31"}, ServiceSelector: selector("tier", "edge")},
			{Name: "rest", Addresses: []string{"203.0.113.0/31"}},
		},
		steps: []step{
			{alloc: makeService("dev", "a"), want: []string{"203.0.113.0"}},
			{alloc: makeService("dev", "b", withLabels("tier", "edge")), want: []string{"198.51.100.0"}},
			{alloc: makeService("ops", "c", withLabels("tier", "edge")), want: []string{"192.0.2.0"}},
		},
	}, {
		name:  "lowest free address, a released one first",
		pools: []PoolConfig{{Name: "p", Addresses: []string{"192.0.2.0/29"}}},
		steps: []step{
			{alloc: makeService("ns", "a"), want: []string{"192.0.2.0"}},
			{alloc: makeService("ns", "b"), want: []string{"192.0.2.1"}},
			{alloc: makeService("ns", "c"), want: []string{"192.0.2.2"}},
			{release: "ns/b"},
			{alloc: makeService("ns", "d"), want: []string{"192.0.2.1"}},
			{alloc: makeService("ns", "e"), want: []string{"192.0.2.3"}},
		},
	}, {
		name: "avoidBuggyIPs skips .0 and .255 without walking",
		pools: []PoolConfig{{Name: "p", AvoidBuggyIPs: true,
			Addresses: []string{"192.0.2.254-192.0.2.255", "198.51.100.0-198.51.100.1", "203.0.113.0/31"}}},
		steps: []step{
			{alloc: makeService("ns", "a"), want: []string{"192.0.2.254"}},
			{alloc: makeService("ns", "b"), want: []string{"198.51.100.1"}},
			{alloc: makeService("ns", "c"), want: []string{"203.0.113.1"}},
			{alloc: makeService("ns", "d"), wantErr: ErrExhausted},
		},
	}, {
		name:  "no pools",
		pools: nil,
		steps: []step{{alloc: makeService("ns", "a"), wantErr: ErrPoolNotAllowed, wantMsg: []string{"no pools are configured"}}},
	}})
}

func TestAllocateSharing(t *testing.T) {
	pool := PoolConfig{Name: "p", Addresses: []string{"192.0.2.0/30", "2001:db8::/126"}}
	dns := func(name, key string, ports ...string) *testService {
		return makeService("ns", name, withIPs("192.0.2.1"), withShare(key), withPorts(ports...))
	}
	runCases(t, []stepsCase{{
		name:  "same key, other ports",
		pools: []PoolConfig{pool},
		steps: []step{
			{alloc: dns("tcp", "dns", "53/TCP"), want: []string{"192.0.2.1"}},
			{alloc: dns("udp", "dns", "53/UDP"), want: []string{"192.0.2.1"}},
			{alloc: dns("web", "dns", "80/TCP", "443/TCP"), want: []string{"192.0.2.1"}},
		},
	}, {
		name:  "same key, a port in common",
		pools: []PoolConfig{pool},
		steps: []step{
			{alloc: dns("a", "dns", "53/TCP", "53/UDP"), want: []string{"192.0.2.1"}},
			{alloc: dns("b", "dns", "80/TCP", "53/UDP"), wantErr: ErrSharingRefused, wantMsg: []string{"Service ns/a", "port 53/UDP", "192.0.2.1"}},
		},
	}, {
		name:  "another key",
		pools: []PoolConfig{pool},
		steps: []step{
			{alloc: dns("a", "dns", "53/TCP"), want: []string{"192.0.2.1"}},
			{alloc: dns("b", "web", "80/TCP"), wantErr: ErrAddressTaken, wantMsg: []string{`key "dns", not "web"`}},
		},
	}, {
		name:  "the holder does not share",
		pools: []PoolConfig{pool},
		steps: []step{
			{alloc: makeService("ns", "a", withIPs("192.0.2.1"), withPorts("53/TCP")), want: []string{"192.0.2.1"}},
			{alloc: dns("b", "dns", "80/TCP"), wantErr: ErrAddressTaken, wantMsg: []string{"does not share it"}},
		},
	}, {
		name:  "the newcomer does not share",
		pools: []PoolConfig{pool},
		steps: []step{
			{alloc: dns("a", "dns", "53/TCP"), want: []string{"192.0.2.1"}},
			{alloc: makeService("ns", "b", withIPs("192.0.2.1"), withPorts("80/TCP")), wantErr: ErrAddressTaken, wantMsg: []string{srcSharingKey + `="dns"`}},
		},
	}, {
		name:  "another externalTrafficPolicy",
		pools: []PoolConfig{pool},
		steps: []step{
			{alloc: dns("a", "dns", "53/TCP"), want: []string{"192.0.2.1"}},
			{alloc: makeService("ns", "b", withIPs("192.0.2.1"), withShare("dns"), withPorts("80/TCP"), withLocal("app", "a")), wantErr: ErrSharingRefused,
				wantMsg: []string{"externalTrafficPolicy Cluster", "has Local"}},
		},
	}, {
		name:  "Local with the same selector, then another",
		pools: []PoolConfig{pool},
		steps: []step{
			{alloc: makeService("ns", "a", withIPs("192.0.2.1"), withShare("k"), withPorts("53/TCP"), withLocal("app", "dns")), want: []string{"192.0.2.1"}},
			{alloc: makeService("ns", "b", withIPs("192.0.2.1"), withShare("k"), withPorts("53/UDP"), withLocal("app", "dns")), want: []string{"192.0.2.1"}},
			{alloc: makeService("ns", "c", withIPs("192.0.2.1"), withShare("k"), withPorts("80/TCP"), withLocal("app", "web")), wantErr: ErrSharingRefused,
				wantMsg: []string{"selector", "app=web", "app=dns"}},
		},
	}, {
		name:  "automatic allocation joins the lowest shared address with the key",
		pools: []PoolConfig{pool},
		steps: []step{
			{alloc: makeService("ns", "other"), want: []string{"192.0.2.0"}},
			{alloc: makeService("ns", "tcp", withShare("dns"), withPorts("53/TCP")), want: []string{"192.0.2.1"}},
			{alloc: makeService("ns", "udp", withShare("dns"), withPorts("53/UDP")), want: []string{"192.0.2.1"}},
			{alloc: makeService("ns", "tcp2", withShare("dns"), withPorts("53/TCP")), want: []string{"192.0.2.2"}},
			{alloc: makeService("ns", "udp2", withShare("dns"), withPorts("53/UDP")), want: []string{"192.0.2.2"}},
			{alloc: makeService("ns", "web", withShare("web"), withPorts("53/UDP")), want: []string{"192.0.2.3"}},
		},
	}, {
		name:  "of two shareable addresses, the lowest",
		pools: []PoolConfig{pool},
		steps: []step{
			{alloc: makeService("ns", "a", withShare("k"), withPorts("80/TCP")), want: []string{"192.0.2.0"}},
			{alloc: makeService("ns", "b", withShare("k"), withPorts("80/TCP")), want: []string{"192.0.2.1"}},
			{alloc: makeService("ns", "c", withShare("k"), withPorts("443/TCP")), want: []string{"192.0.2.0"}},
			{alloc: makeService("ns", "d", withShare("k"), withPorts("443/TCP")), want: []string{"192.0.2.1"}},
		},
	}, {
		name:  "a full pool still has shareable addresses",
		pools: []PoolConfig{{Name: "one", Addresses: []string{"192.0.2.7/32"}}},
		steps: []step{
			{alloc: makeService("ns", "a", withShare("k"), withPorts("80/TCP")), want: []string{"192.0.2.7"}},
			{alloc: makeService("ns", "b", withShare("k"), withPorts("443/TCP")), want: []string{"192.0.2.7"}},
			{alloc: makeService("ns", "c", withShare("k"), withPorts("443/TCP")), wantErr: ErrExhausted},
		},
	}, {
		name:  "dual-stack sharing",
		pools: []PoolConfig{pool},
		steps: []step{
			{alloc: makeService("ns", "a", withFamilies(require, v46...), withShare("k"), withPorts("80/TCP")), want: []string{"192.0.2.0", "2001:db8::"}},
			{alloc: makeService("ns", "b", withFamilies(require, v64...), withShare("k"), withPorts("443/TCP")), want: []string{"2001:db8::", "192.0.2.0"}},
			{release: "ns/a"},
			{alloc: makeService("ns", "c", withFamilies(require, v46...)), want: []string{"192.0.2.1", "2001:db8::1"}},
			{release: "ns/b"},
			{alloc: makeService("ns", "d", withFamilies(require, v46...)), want: []string{"192.0.2.0", "2001:db8::"}},
		},
	}})
}

func TestAllocateIdempotentAndChanges(t *testing.T) {
	pool := PoolConfig{Name: "p", Addresses: []string{"192.0.2.0/29", "2001:db8::/125"}}
	other := PoolConfig{Name: "q", Addresses: []string{"198.51.100.0/29"}}
	runCases(t, []stepsCase{{
		name:  "a released lower address does not move a Service",
		pools: []PoolConfig{pool},
		steps: []step{
			{alloc: makeService("ns", "a"), want: []string{"192.0.2.0"}},
			{alloc: makeService("ns", "b"), want: []string{"192.0.2.1"}},
			{release: "ns/a"},
			{alloc: makeService("ns", "b"), want: []string{"192.0.2.1"}},
		},
	}, {
		name:  "a changed requested address moves the Service and frees the old one",
		pools: []PoolConfig{pool},
		steps: []step{
			{alloc: makeService("ns", "a", withIPs("192.0.2.3")), want: []string{"192.0.2.3"}},
			{alloc: makeService("ns", "a", withIPs("192.0.2.5")), want: []string{"192.0.2.5"}},
			{alloc: makeService("ns", "b", withIPs("192.0.2.3")), want: []string{"192.0.2.3"}},
		},
	}, {
		name:  "a requested address that fails keeps the old one",
		pools: []PoolConfig{pool},
		steps: []step{
			{alloc: makeService("ns", "a"), want: []string{"192.0.2.0"}},
			{alloc: makeService("ns", "b"), want: []string{"192.0.2.1"}},
			{alloc: makeService("ns", "b", withIPs("192.0.2.0")), wantErr: ErrAddressTaken},
			{alloc: makeService("ns", "b", withIPs("203.0.113.1")), wantErr: ErrOutsidePools},
			{alloc: makeService("ns", "b", withIPs("192.0.2.2,192.0.2.3")), wantErr: ErrInvalidRequest},
			{alloc: makeService("ns", "b"), want: []string{"192.0.2.1"}},
		},
	}, {
		name:  "dropping the requested address keeps it",
		pools: []PoolConfig{pool},
		steps: []step{
			{alloc: makeService("ns", "a", withIPs("192.0.2.5")), want: []string{"192.0.2.5"}},
			{alloc: makeService("ns", "a"), want: []string{"192.0.2.5"}},
		},
	}, {
		name:  "a changed pool moves the Service",
		pools: []PoolConfig{pool, other},
		steps: []step{
			{alloc: makeService("ns", "a"), want: []string{"192.0.2.0"}},
			{alloc: makeService("ns", "a", withPool("q")), want: []string{"198.51.100.0"}},
			{alloc: makeService("ns", "b"), want: []string{"192.0.2.0"}},
			{alloc: makeService("ns", "a", withPool("p")), want: []string{"192.0.2.1"}},
		},
	}, {
		name:  "a changed pool that fails keeps the old one",
		pools: []PoolConfig{pool, other},
		steps: []step{
			{alloc: makeService("ns", "a"), want: []string{"192.0.2.0"}},
			{alloc: makeService("ns", "a", withPool("r")), wantErr: ErrUnknownPool},
			{alloc: makeService("ns", "a"), want: []string{"192.0.2.0"}},
		},
	}, {
		name:  "naming the pool it is in keeps the address",
		pools: []PoolConfig{pool, other},
		steps: []step{
			{alloc: makeService("ns", "a"), want: []string{"192.0.2.0"}},
			{alloc: makeService("ns", "a", withPool("p")), want: []string{"192.0.2.0"}},
		},
	}, {
		name:  "gaining a family keeps the address and adds one from its pool",
		pools: []PoolConfig{other, pool},
		steps: []step{
			{alloc: makeService("ns", "x", withFamilies(single, v6s...)), want: []string{"2001:db8::"}},
			{alloc: makeService("ns", "a", withIPs("192.0.2.4")), want: []string{"192.0.2.4"}},
			{alloc: makeService("ns", "a", withIPs(""), withFamilies(prefer, v46...)), want: []string{"192.0.2.4", "2001:db8::1"}},
			{alloc: makeService("ns", "a", withFamilies(prefer, v64...)), want: []string{"2001:db8::1", "192.0.2.4"}},
		},
	}, {
		name:  "losing a family frees it",
		pools: []PoolConfig{pool},
		steps: []step{
			{alloc: makeService("ns", "a", withFamilies(require, v46...)), want: []string{"192.0.2.0", "2001:db8::"}},
			{alloc: makeService("ns", "a", withFamilies(single, v6s...)), want: []string{"2001:db8::"}},
			{alloc: makeService("ns", "b"), want: []string{"192.0.2.0"}},
		},
	}, {
		name:  "new ports that collide with a sharer are refused, the old terms stay",
		pools: []PoolConfig{pool},
		steps: []step{
			{alloc: makeService("ns", "a", withShare("k"), withPorts("53/TCP")), want: []string{"192.0.2.0"}},
			{alloc: makeService("ns", "b", withShare("k"), withPorts("53/UDP")), want: []string{"192.0.2.0"}},
			{alloc: makeService("ns", "b", withShare("k"), withPorts("53/TCP")), wantErr: ErrSharingRefused, wantMsg: []string{"53/TCP", "ns/a"}},
			{alloc: makeService("ns", "b", withShare("k"), withPorts("53/UDP", "80/TCP")), want: []string{"192.0.2.0"}},
			{alloc: makeService("ns", "c", withShare("k"), withPorts("80/TCP")), want: []string{"192.0.2.1"}},
		},
	}, {
		name:  "dropping the sharing key while shared is refused",
		pools: []PoolConfig{pool},
		steps: []step{
			{alloc: makeService("ns", "a", withShare("k"), withPorts("53/TCP")), want: []string{"192.0.2.0"}},
			{alloc: makeService("ns", "b", withShare("k"), withPorts("53/UDP")), want: []string{"192.0.2.0"}},
			{alloc: makeService("ns", "b", withPorts("53/UDP")), wantErr: ErrAddressTaken},
			{release: "ns/a"},
			{alloc: makeService("ns", "b", withPorts("53/UDP")), want: []string{"192.0.2.0"}},
		},
	}, {
		name:  "pool rules that change later do not take addresses away",
		pools: []PoolConfig{{Name: "p", Addresses: []string{"192.0.2.0/29"}}},
		steps: []step{
			{alloc: makeService("ns", "a"), want: []string{"192.0.2.0"}},
			{setPools: []PoolConfig{{Name: "p", Addresses: []string{"192.0.2.0/29"}, Namespaces: []string{"other"}, AutoAssign: ptr(false)}}},
			{alloc: makeService("ns", "a"), want: []string{"192.0.2.0"}},
			{alloc: makeService("ns", "b"), wantErr: ErrPoolNotAllowed},
		},
	}})
}

func TestRelease(t *testing.T) {
	pool := PoolConfig{Name: "p", Addresses: []string{"192.0.2.0/30"}}
	a := runSteps(t, []PoolConfig{pool}, []step{
		{alloc: makeService("ns", "a", withShare("k"), withPorts("80/TCP")), want: []string{"192.0.2.0"}},
		{alloc: makeService("ns", "b", withShare("k"), withPorts("443/TCP")), want: []string{"192.0.2.0"}},
	})
	before := dump(t, a)
	a.Release("ns", "nobody")
	a.Release("other", "a")
	if diff := cmp.Diff(before, dump(t, a)); diff != "" {
		t.Errorf("Release of unknown Services changed the store (-before +after):\n%s", diff)
	}

	a.Release("ns", "a")
	if got := strs(a.Assigned("ns", "b")); !cmp.Equal(got, []string{"192.0.2.0"}) {
		t.Errorf("Assigned(ns/b) after its sharer's Release = %v, want [192.0.2.0]", got)
	}
	if got := a.Stats()[0].InUse; got != 1 {
		t.Errorf("Stats()[0].InUse with one shared address = %d, want 1", got)
	}
	checkStore(t, a)
	a.Release("ns", "b")
	if got := a.Stats()[0].InUse; got != 0 {
		t.Errorf("Stats()[0].InUse after the last sharer's Release = %d, want 0", got)
	}
	checkStore(t, a)
}

func TestSetPools(t *testing.T) {
	wide := PoolConfig{Name: "p", Addresses: []string{"192.0.2.0/29", "2001:db8::/125"}}
	narrow := PoolConfig{Name: "p", Addresses: []string{"192.0.2.0/30"}}
	runCases(t, []stepsCase{{
		name:  "shrinking keeps the addresses outside, stale, and never hands them out",
		pools: []PoolConfig{wide},
		steps: []step{
			{alloc: makeService("ns", "a", withIPs("192.0.2.6")), want: []string{"192.0.2.6"}},
			{alloc: makeService("ns", "b", withFamilies(require, v46...)), want: []string{"192.0.2.0", "2001:db8::"}},
			{setPools: []PoolConfig{narrow}, want: []string{"ns/a=192.0.2.6", "ns/b=2001:db8::"}},
			{alloc: makeService("ns", "a", withIPs("192.0.2.6")), want: []string{"192.0.2.6"}},
			{alloc: makeService("ns", "b", withFamilies(require, v46...)), want: []string{"192.0.2.0", "2001:db8::"}},
			{alloc: makeService("ns", "c", withIPs("192.0.2.6")), wantErr: ErrOutsidePools},
			{alloc: makeService("ns", "d"), want: []string{"192.0.2.1"}},
			{release: "ns/a"},
			{setPools: []PoolConfig{wide}},
			{alloc: makeService("ns", "e", withIPs("192.0.2.6")), want: []string{"192.0.2.6"}},
			{alloc: makeService("ns", "f", withFamilies(single, v6s...)), want: []string{"2001:db8::1"}},
		},
	}, {
		name:  "a removed pool's addresses stay; a new pool over them takes them in",
		pools: []PoolConfig{wide},
		steps: []step{
			{alloc: makeService("ns", "a"), want: []string{"192.0.2.0"}},
			{setPools: []PoolConfig{{Name: "other", Addresses: []string{"198.51.100.0/30"}}}, want: []string{"ns/a=192.0.2.0"}},
			{alloc: makeService("ns", "a"), want: []string{"192.0.2.0"}},
			{setPools: []PoolConfig{{Name: "renamed", Addresses: []string{"192.0.2.0/31"}}}},
			{alloc: makeService("ns", "b"), want: []string{"192.0.2.1"}},
			{alloc: makeService("ns", "c"), wantErr: ErrExhausted},
		},
	}, {
		name:  "turning avoidBuggyIPs on makes held .0 addresses stale",
		pools: []PoolConfig{{Name: "p", Addresses: []string{"192.0.2.0/30"}}},
		steps: []step{
			{alloc: makeService("ns", "a"), want: []string{"192.0.2.0"}},
			{setPools: []PoolConfig{{Name: "p", Addresses: []string{"192.0.2.0/30"}, AvoidBuggyIPs: true}}, want: []string{"ns/a=192.0.2.0"}},
			{alloc: makeService("ns", "b"), want: []string{"192.0.2.1"}},
			{release: "ns/a"},
			{alloc: makeService("ns", "c"), want: []string{"192.0.2.2"}},
		},
	}, {
		name:  "invalid pools change nothing",
		pools: []PoolConfig{wide},
		steps: []step{
			{alloc: makeService("ns", "a"), want: []string{"192.0.2.0"}},
			{setPools: []PoolConfig{{Name: "x", Addresses: []string{"192.0.2.0/30"}}, {Name: "x", Addresses: []string{"198.51.100.0/30"}}}, wantErr: ErrInvalidPool},
		},
	}})
}
