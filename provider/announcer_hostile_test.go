package provider

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/baremetal-ccm/baremetal-ccm/bgp"
	"github.com/baremetal-ccm/baremetal-ccm/provider/config"
)

// TestAnnouncerStatusIsNotAuthority: an address that only a write to the
// status put there, outside every pool, is not announced, and its Service
// gets a Warning; the other VIPs are announced as usual.
func TestAnnouncerStatusIsNotAuthority(t *testing.T) {
	cfg, err := config.Parse([]byte(announcerConfig))
	if err != nil {
		t.Fatal(err)
	}
	pool := netip.MustParsePrefix("203.0.113.0/24")
	sp := &fakeSpeaker{advs: map[netip.Prefix]bgp.Advertisement{}}
	deps := testDeps(cfg, sp, fakeAllocations(nil), fakeHealth{})
	deps.mayAnnounce = pool.Contains
	warn := deps.warn.(*fakeWarner)
	factory := informers.NewSharedInformerFactory(fake.NewClientset(
		node("a1", []string{"198.51.100.11"}),
		lbService("good", v1.ServiceExternalTrafficPolicyCluster, "203.0.113.1"),
		lbService("forged", v1.ServiceExternalTrafficPolicyCluster, "198.51.100.250", "203.0.113.2"),
	), 0)
	a := newAnnouncer(factory, deps)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	if err := a.syncAll(ctx); err != nil {
		t.Fatal(err)
	}
	got := sp.hops()
	if _, ok := got["198.51.100.250"]; ok {
		t.Errorf("an address outside every pool was announced: %v", got)
	}
	for _, vip := range []string{"203.0.113.1", "203.0.113.2"} {
		if len(got[vip]) != 1 {
			t.Errorf("%s: next hops %v, want the node", vip, got[vip])
		}
	}
	if _, ok := warn.active["Service/default/forged/"+reasonAddressNotAnnounced]; !ok {
		t.Errorf("no %s warning on the forged Service: %v", reasonAddressNotAnnounced, warn.active)
	}
	// A second sync reports nothing new.
	n := warn.count
	if err := a.syncAll(ctx); err != nil {
		t.Fatal(err)
	}
	if warn.count != n {
		t.Errorf("a second sync warned again: %d warnings, want %d", warn.count, n)
	}
}

// TestAnnouncerDuplicateNodeAddress: a Node that claims another's address
// does not stop the announcement; the older Node keeps its path and the
// newer one is warned.
func TestAnnouncerDuplicateNodeAddress(t *testing.T) {
	a, sp := startAnnouncer(t, fakeHealth{}, nil,
		node("a1", []string{"198.51.100.11"}, createdAt(1)),
		node("a2", []string{"198.51.100.12"}, createdAt(2)),
		node("rogue", []string{"198.51.100.11"}, createdAt(3)),
		lbService("web", v1.ServiceExternalTrafficPolicyCluster, "203.0.113.1"),
	)
	if err := a.syncAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := []string{"198.51.100.11@rack-a", "198.51.100.12@rack-a"}
	if got := sp.hops()["203.0.113.1"]; !slices.Equal(got, want) {
		t.Errorf("next hops %v, want %v", got, want)
	}
	warn := a.warn.(*fakeWarner)
	if _, ok := warn.active["Node/rogue/"+reasonDuplicateNodeAddress]; !ok || len(warn.active) != 1 {
		t.Errorf("warnings %v, want one %s on Node rogue", warn.active, reasonDuplicateNodeAddress)
	}
}

// failingSpeaker fails every SetAll and records when.
type failingSpeaker struct {
	fakeSpeaker
	mu    sync.Mutex
	calls []time.Time
	seen  chan struct{}
}

func (f *failingSpeaker) SetAll(context.Context, []bgp.Advertisement) error {
	f.mu.Lock()
	f.calls = append(f.calls, time.Now())
	f.mu.Unlock()
	select {
	case f.seen <- struct{}{}:
	default:
	}
	return errors.New("refused")
}

// TestAnnouncerBacksOff: a sync that keeps failing is retried ever later
// (each wait at least twice the one before), not every 100 ms.
func TestAnnouncerBacksOff(t *testing.T) {
	cfg, err := config.Parse([]byte(announcerConfig))
	if err != nil {
		t.Fatal(err)
	}
	sp := &failingSpeaker{seen: make(chan struct{}, 1)}
	factory := informers.NewSharedInformerFactory(fake.NewClientset(node("a1", []string{"198.51.100.11"})), 0)
	a := newAnnouncer(factory, testDeps(cfg, sp, fakeAllocations(nil), fakeHealth{}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	factory.Start(ctx.Done())
	go a.run(ctx)
	const want = 5
	deadline := time.After(2 * time.Minute)
	for {
		sp.mu.Lock()
		n := len(sp.calls)
		sp.mu.Unlock()
		if n >= want {
			break
		}
		select {
		case <-sp.seen:
		case <-deadline:
			t.Fatalf("%d failed syncs in 2 minutes, want %d", n, want)
		}
	}
	sp.mu.Lock()
	defer sp.mu.Unlock()
	// Retry k waits at least minSyncInterval × 2^(k-1): the rate limiter's
	// delay, and the coalescing pause on top.
	for k := 1; k < want; k++ {
		gap := sp.calls[k].Sub(sp.calls[k-1])
		if min := minSyncInterval << (k - 1); gap < min {
			t.Errorf("retry %d came %s after the failure before it, want at least %s", k, gap, min)
		}
	}
}
