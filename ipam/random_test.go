package ipam

import (
	"cmp"
	"errors"
	"fmt"
	"math/big"
	"math/rand/v2"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strconv"
	"testing"

	gocmp "github.com/google/go-cmp/cmp"
	"go4.org/netipx"
)

// The randomized test and the fuzz target drive the Allocator with random
// sequences of Allocate, Release, restart-and-Restore and SetPools over
// small IPv4 and IPv6 pools (small, so that pools fill up, addresses are
// contested, and the expected lowest free address can be found by brute
// force), and check after every step:
//   - no address has two holders that may not share it, every held address
//     is in a pool or stale, the free lists and Stats match a recount
//     (checkStore);
//   - a failed call changed nothing, and its error wraps a sentinel;
//   - Allocate of an unchanged Service returns what it returned before,
//     whatever happened to other Services;
//   - a new Service gets the lowest free address of the right pool;
//   - an address a Service's status shows stays held after its request
//     changes, until Settle frees it;
//   - Release and Settle free exactly the addresses no one else holds, and
//     Stats gains exactly those;
//   - SetPools moves nothing and reports exactly the held addresses outside
//     the new pools;
//   - a restart restores the store exactly; a restart from contested status
//     lets the older Service keep each address.

// randomPoolSets are the configurations SetPools switches between.
var randomPoolSets = [][]PoolConfig{{
	{Name: "a", Addresses: []string{"192.0.2.0/29", "2001:db8:a::/126"}},
	{Name: "b", Addresses: []string{"198.51.100.250-198.51.100.255", "2001:db8:b::/127"}, AvoidBuggyIPs: true},
	{Name: "c", Addresses: []string{"203.0.113.0/30"}, AutoAssign: ptr(false)},
}, {
	{Name: "a", Addresses: []string{"192.0.2.0/30"}},
	{Name: "b", Addresses: []string{"198.51.100.250-198.51.100.255", "2001:db8:b::/127"}},
	{Name: "d", Addresses: []string{"203.0.113.0/29", "2001:db8:d::/126"}, Namespaces: []string{"ns1"}},
}, {
	{Name: "c", Addresses: []string{"203.0.113.4/30"}, ServiceSelector: selector("tier", "x")},
	{Name: "a", Addresses: []string{"192.0.2.0/28", "2001:db8:a::/125"}},
}, {
	{Name: "six", Addresses: []string{"2001:db8:a::/125", "2001:db8:b::/126"}},
}}

// randomAddrs are the addresses Services request: every address of every
// pool set, and some outside all of them.
var randomAddrs = func() []netip.Addr {
	seen := map[netip.Addr]bool{}
	for _, set := range randomPoolSets {
		for _, cfg := range set {
			for _, s := range cfg.Addresses {
				r, _ := parseRange(s)
				for a := r.From(); a.IsValid() && !r.To().Less(a); a = a.Next() {
					seen[a] = true
				}
			}
		}
	}
	seen[netip.MustParseAddr("203.0.113.200")] = true
	seen[netip.MustParseAddr("2001:db8:ffff::1")] = true
	out := make([]netip.Addr, 0, len(seen))
	for a := range seen {
		out = append(out, a)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}()

// chooser makes the random choices of a run.
type chooser interface {
	// intn returns a number in [0, n).
	intn(n int) int
	// exhausted reports that the run should end.
	exhausted() bool
}

type randChooser struct {
	r     *rand.Rand
	steps int
}

func (c *randChooser) intn(n int) int  { return c.r.IntN(n) }
func (c *randChooser) exhausted() bool { c.steps--; return c.steps < 0 }

// byteChooser takes its choices from the fuzzer's bytes.
type byteChooser struct{ data []byte }

func (c *byteChooser) intn(n int) int {
	if len(c.data) == 0 {
		return 0
	}
	b := c.data[0]
	c.data = c.data[1:]
	return int(b) % n
}

func (c *byteChooser) exhausted() bool { return len(c.data) == 0 }

// randomRun is one random sequence.
type randomRun struct {
	t     testing.TB
	c     chooser
	a     *Allocator
	pools []PoolConfig
	// last is, per Service, the Service last allocated and what it got;
	// forgotten on Release and restart.
	last map[string]lastAlloc
	// specs is, per Service, the Service its assignment was made for: by
	// its last successful Allocate, or its Restore.
	specs map[string]*testService
}

type lastAlloc struct {
	svc   *testService
	addrs []netip.Addr
}

func (r *randomRun) pick(n int) int { return r.c.intn(n) }

func (r *randomRun) randomService() *testService {
	ns := []string{"ns1", "ns2"}[r.pick(2)]
	i := r.pick(12)
	svc := makeService(ns, fmt.Sprintf("s%d", i), withCreated(i%4))
	switch r.pick(8) {
	case 0, 1:
	case 2:
		withFamilies(single, v6s...)(svc)
	case 3:
		withFamilies(prefer, v46...)(svc)
	case 4:
		withFamilies(prefer, v64...)(svc)
	case 5:
		withFamilies(require, [][]Family{v46, v64}[r.pick(2)]...)(svc)
	case 6:
		withFamilies(single)(svc)
	case 7:
		withFamilies([]FamilyPolicy{prefer, require}[r.pick(2)])(svc)
	}
	if r.pick(4) == 0 {
		list := randomAddrs[r.pick(len(randomAddrs))].String()
		if r.pick(3) == 0 {
			list += "," + randomAddrs[r.pick(len(randomAddrs))].String()
		}
		withIPs(list)(svc)
	}
	if r.pick(4) == 0 {
		withPool([]string{"a", "b", "c", "d", "six", "nope"}[r.pick(6)])(svc)
	}
	if r.pick(2) == 0 {
		withShare([]string{"k1", "k2"}[r.pick(2)])(svc)
	}
	var ports []string
	for _, p := range []string{"53/TCP", "53/UDP", "80/TCP"} {
		if r.pick(2) == 0 {
			ports = append(ports, p)
		}
	}
	withPorts(ports...)(svc)
	if r.pick(4) == 0 {
		withLocal("app", []string{"x", "y"}[r.pick(2)])(svc)
	}
	if r.pick(4) == 0 {
		withLabels("tier", "x")(svc)
	}
	return svc
}

func (r *randomRun) run() {
	r.pools = randomPoolSets[0]
	r.a = newAllocator(r.t, r.pools...)
	r.last = map[string]lastAlloc{}
	r.specs = map[string]*testService{}
	for step := 0; !r.c.exhausted(); step++ {
		var what string
		switch op := r.pick(20); {
		case op < 11:
			what = r.allocate()
		case op < 12:
			what = r.settle()
		case op < 16:
			what = r.release()
		case op < 18:
			what = r.setPools()
		default:
			what = r.restart(r.pick(2) == 0)
		}
		checkStore(r.t, r.a)
		if r.t.Failed() {
			r.t.Fatalf("step %d: %s", step, what)
		}
	}
}

var sentinels = []error{ErrInvalidRequest, ErrUnknownPool, ErrPoolNotAllowed, ErrOutsidePools, ErrWrongFamily,
	ErrAddressTaken, ErrSharingRefused, ErrExhausted, ErrDualStackUnavailable}

func (r *randomRun) allocate() string {
	t := r.t
	svc := r.randomService()
	key := svc.Namespace + "/" + svc.Name
	what := fmt.Sprintf("Allocate(%s %+v)", key, svc.Request)
	before := dump(t, r.a)
	held := r.a.Assigned(svc.Namespace, svc.Name)
	expect, expectOK := r.lowestFree(svc, held)
	if r.pick(3) == 0 {
		// The status shows what the Service holds: the next change
		// must keep it held.
		svc.Shown = heldBy(r.a, svc.Namespace, svc.Name)
		what = fmt.Sprintf("Allocate(%s %+v)", key, svc.Request)
	}

	got, err := r.a.Allocate(svc.Request)
	if err != nil {
		if !slices.ContainsFunc(sentinels, func(s error) bool { return errors.Is(err, s) }) {
			t.Errorf("%s = %v, wraps no sentinel", what, err)
		}
		if diff := gocmp.Diff(before, dump(t, r.a)); diff != "" {
			t.Errorf("failed %s = %v changed the store (-before +after):\n%s", what, err, diff)
		}
		if expectOK {
			t.Errorf("%s = %v, want %s, the lowest free address", what, err, expect)
		}
		return what + " = " + err.Error()
	}
	what += fmt.Sprintf(" = %v", got)
	if !slices.Equal(got, r.a.Assigned(svc.Namespace, svc.Name)) {
		t.Errorf("%s, but Assigned() = %v", what, r.a.Assigned(svc.Namespace, svc.Name))
	}
	if prev, ok := r.last[key]; ok && reflect.DeepEqual(prev.svc, svc) && !slices.Equal(prev.addrs, got) {
		t.Errorf("%s, but the same Service got %v before", what, prev.addrs)
	}
	if expectOK && (len(got) == 0 || got[0] != expect) {
		t.Errorf("%s, want %s first, the lowest free address", what, expect)
	}
	for _, addr := range svc.Shown {
		if !isHeld(r.a, addr) {
			t.Errorf("%s, but shown %s is free", what, addr)
		}
	}
	r.last[key] = lastAlloc{svc, got}
	r.specs[key] = svc
	return what
}

// lowestFree finds by brute force the address a Service holding nothing,
// asking for one known family, no address and no sharing, must get: the
// lowest free one of the first pool that serves it.
func (r *randomRun) lowestFree(svc *testService, held []netip.Addr) (netip.Addr, bool) {
	req, err := newRequest(&svc.Request)
	if err != nil || len(held) > 0 || req.want.nips > 0 || req.want.nfams == 0 || req.share.key != "" ||
		req.want.policy == RequireDualStack {
		return netip.Addr{}, false
	}
	fam := req.want.fams[0]
	for _, p := range parsePools(r.t, r.pools...) {
		if req.want.pool != "" && p.Name != req.want.pool || req.want.pool == "" && !p.AutoAssign {
			continue
		}
		if ok, _ := p.allows(req.namespace, req.labels); !ok {
			continue
		}
		ranges := slices.Clone(p.Ranges)
		slices.SortFunc(ranges, func(x, y netipx.IPRange) int { return x.From().Compare(y.From()) })
		for _, rg := range ranges {
			if familyOf(rg.From()) != fam {
				continue
			}
			for a := rg.From(); a.IsValid() && !rg.To().Less(a); a = a.Next() {
				if p.AvoidBuggyIPs && isBuggy(a) {
					continue
				}
				if held := isHeld(r.a, a); !held {
					return a, true
				}
			}
		}
	}
	return netip.Addr{}, false
}

func (r *randomRun) release() string {
	t := r.t
	ns, name := []string{"ns1", "ns2"}[r.pick(2)], fmt.Sprintf("s%d", r.pick(12))
	what := fmt.Sprintf("Release(%s/%s)", ns, name)
	held := heldBy(r.a, ns, name)
	before := r.a.Stats()
	freed := r.soleHeld(held)

	r.a.Release(ns, name)
	delete(r.last, ns+"/"+name)
	delete(r.specs, ns+"/"+name)
	if got := heldBy(r.a, ns, name); got != nil {
		t.Errorf("%s, but the Service holds %v", what, got)
	}
	r.checkFreed(what, held, freed, before)
	return fmt.Sprintf("%s freed %v of %v", what, freed, held)
}

// settle settles a Service whose status caught up with what it is
// assigned: its pending addresses go.
func (r *randomRun) settle() string {
	t := r.t
	ns, name := []string{"ns1", "ns2"}[r.pick(2)], fmt.Sprintf("s%d", r.pick(12))
	assigned := r.a.Assigned(ns, name)
	what := fmt.Sprintf("Settle(%s/%s, %v)", ns, name, assigned)
	held := heldBy(r.a, ns, name)
	pending := slices.DeleteFunc(slices.Clone(held), func(a netip.Addr) bool { return slices.Contains(assigned, a) })
	before := r.a.Stats()
	freed := r.soleHeld(pending)

	got := r.a.Settle(ns, name, assigned)
	if !slices.Equal(got, pending) {
		t.Errorf("%s = %v, want the pending %v", what, got, pending)
	}
	if after := heldBy(r.a, ns, name); !slices.Equal(after, assigned) {
		t.Errorf("%s: the Service holds %v, want %v", what, after, assigned)
	}
	r.checkFreed(what, pending, freed, before)
	return fmt.Sprintf("%s freed %v of %v", what, freed, pending)
}

// soleHeld returns the addresses of held that one Service alone holds.
func (r *randomRun) soleHeld(held []netip.Addr) []netip.Addr {
	var sole []netip.Addr
	for _, addr := range held {
		if len(holdersOf(r.a, addr)) == 1 {
			sole = append(sole, addr)
		}
	}
	return sole
}

// checkFreed checks, after a Service dropped the addresses held, that
// exactly freed became free, and that Stats (before: before the call)
// gained exactly those.
func (r *randomRun) checkFreed(what string, held, freed []netip.Addr, before []PoolStats) {
	t := r.t
	txn := r.a.db.Txn(false)
	gained := map[string]int64{}
	for _, addr := range held {
		isHeld := isHeld(r.a, addr)
		if isHeld == slices.Contains(freed, addr) {
			t.Errorf("%s: %s is held = %v after, want %v", what, addr, isHeld, !isHeld)
		}
		loc, _ := locateTxn(txn, addr)
		if !isHeld && loc.inPool() {
			if free, _ := isFree(r.a, loc.pool, familyOf(addr), loc.slot); !free {
				t.Errorf("%s: %s is not free after", what, addr)
			}
			gained[loc.pool+" "+familyOf(addr).String()]++
		}
	}
	after := r.a.Stats()
	for i := range after {
		g := gained[after[i].Pool+" "+string(after[i].Family)]
		if d := new(big.Int).Sub(after[i].Free, before[i].Free); d.Int64() != g {
			t.Errorf("%s: pool %s %s gained %v free addresses, want %d", what, after[i].Pool, after[i].Family, d, g)
		}
	}
}

// heldBy returns what a Service holds, assigned and pending.
func heldBy(a *Allocator, ns, name string) []netip.Addr {
	row, err := serviceTxn(a.db.Txn(false), ns, name)
	if err != nil || row == nil {
		return nil
	}
	return slices.Clone(row.held())
}

func (r *randomRun) setPools() string {
	t := r.t
	set := randomPoolSets[r.pick(len(randomPoolSets))]
	what := fmt.Sprintf("SetPools(%v)", set)
	before := assignedAll(t, r.a)
	stale, err := r.a.SetPools(parsePools(t, set...))
	if err != nil {
		t.Errorf("%s = %v", what, err)
		return what
	}
	r.pools = set
	if diff := gocmp.Diff(before, assignedAll(t, r.a), gocmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" {
		t.Errorf("%s moved assignments (-before +after):\n%s", what, diff)
	}
	var want []Assignment
	for key := range before {
		ns, name, _ := cutKey(key)
		for _, addr := range heldBy(r.a, ns, name) { // pending ones too
			if !r.inPools(addr) {
				want = append(want, Assignment{ns, name, addr})
			}
		}
	}
	sortAssignments(want)
	got := slices.Clone(stale)
	sortAssignments(got)
	if diff := gocmp.Diff(want, got, gocmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" {
		t.Errorf("%s stale differs (-want +got):\n%s", what, diff)
	}
	return what
}

func (r *randomRun) inPools(addr netip.Addr) bool {
	for _, p := range parsePools(r.t, r.pools...) {
		for _, rg := range p.Ranges {
			if rg.Contains(addr) && !(p.AvoidBuggyIPs && isBuggy(addr)) {
				return true
			}
		}
	}
	return false
}

// restart builds a new Allocator from the Services' status. With
// contested, some Services' status also claims random addresses, as after
// a split brain or a hand-edited status.
func (r *randomRun) restart(contested bool) string {
	t := r.t
	what := fmt.Sprintf("restart(contested=%v)", contested)
	// The statuses caught up before the restart: nothing is pending, and
	// the status of each Service shows what it holds.
	for _, spec := range r.specs {
		r.a.Settle(spec.Namespace, spec.Name, r.a.Assigned(spec.Namespace, spec.Name))
	}
	var svcs []*testService
	for _, spec := range r.specs {
		svc := spec.clone()
		svc.Shown = r.a.Assigned(svc.Namespace, svc.Name)
		svcs = append(svcs, svc)
	}
	slices.SortFunc(svcs, func(x, y *testService) int { return cmp.Compare(x.Namespace+"/"+x.Name, y.Namespace+"/"+y.Name) })
	if contested {
		for i := 0; i < 3 && len(svcs) > 0; i++ {
			svc := svcs[r.pick(len(svcs))]
			svc.Shown = append(svc.Shown, randomAddrs[r.pick(len(randomAddrs))])
			withCreated(r.pick(4))(svc)
		}
	}

	b := newAllocator(t, r.pools...)
	report := b.Restore(claims(svcs))
	if !contested {
		if len(report.Rejected) > 0 {
			t.Errorf("%s rejected %v", what, report.Rejected)
		}
		if diff := gocmp.Diff(dump(t, r.a), dump(t, b)); diff != "" {
			t.Errorf("%s: restored store differs (-before +after):\n%s", what, diff)
		}
	}
	for _, rej := range report.Rejected {
		if !errors.Is(rej.Err, ErrAddressTaken) && !errors.Is(rej.Err, ErrSharingRefused) {
			continue
		}
		loser := findService(svcs, rej.Namespace, rej.Name)
		addr := netip.MustParseAddr(rej.IP)
		holders := holdersOf(b, addr)
		if !slices.ContainsFunc(holders, func(h *serviceRow) bool {
			return !older(loser, findService(svcs, h.namespace, h.name))
		}) {
			t.Errorf("%s: %s/%s lost %s, but no older Service holds it: %v", what, rej.Namespace, rej.Name, addr, holders)
		}
	}
	r.a = b
	r.last = map[string]lastAlloc{}
	for _, svc := range svcs {
		svc.Shown = nil
		r.specs[svc.Namespace+"/"+svc.Name] = svc
	}
	return what
}

// older reports whether x was created before y (then namespace/name).
func older(x, y *testService) bool {
	return cmp.Or(x.created.Compare(y.created), cmp.Compare(x.Namespace, y.Namespace), cmp.Compare(x.Name, y.Name)) < 0
}

func findService(svcs []*testService, ns, name string) *testService {
	for _, s := range svcs {
		if s.Namespace == ns && s.Name == name {
			return s
		}
	}
	panic("no Service " + ns + "/" + name)
}

func cutKey(key string) (ns, name string, ok bool) {
	for i := range key {
		if key[i] == '/' {
			return key[:i], key[i+1:], true
		}
	}
	return "", key, false
}

func sortAssignments(as []Assignment) {
	slices.SortFunc(as, func(x, y Assignment) int {
		return cmp.Or(cmp.Compare(x.Namespace, y.Namespace), cmp.Compare(x.Name, y.Name), x.Addr.Compare(y.Addr))
	})
}

// TestRandomSequences runs random sequences with a fixed seed; set
// IPAM_RANDOM_SEED to try others, IPAM_RANDOM_STEPS for longer runs.
func TestRandomSequences(t *testing.T) {
	seed := uint64(1)
	if s := os.Getenv("IPAM_RANDOM_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("IPAM_RANDOM_SEED=%q: %v", s, err)
		}
	}
	steps := 1500
	if s := os.Getenv("IPAM_RANDOM_STEPS"); s != "" {
		var err error
		if steps, err = strconv.Atoi(s); err != nil {
			t.Fatalf("IPAM_RANDOM_STEPS=%q: %v", s, err)
		}
	}
	for i := range uint64(4) {
		t.Run(fmt.Sprintf("seed=%d", seed+i), func(t *testing.T) {
			r := &randomRun{t: t, c: &randChooser{r: rand.New(rand.NewPCG(seed+i, 0)), steps: steps}}
			r.run()
		})
	}
}

// FuzzAllocator runs the random sequences the fuzzer's bytes choose:
//
//	go test -run '^$' -fuzz FuzzAllocator -fuzztime 30s ./ipam/
func FuzzAllocator(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f"))
	for seed := range uint64(4) {
		r := rand.New(rand.NewPCG(seed, 1))
		b := make([]byte, 400)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1500 {
			data = data[:1500] // about a hundred steps: quick to run and to minimize
		}
		r := &randomRun{t: t, c: &byteChooser{data: data}}
		r.run()
	})
}
