package provider

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/baremetal-ccm/baremetal-ccm/bgp"
	"github.com/baremetal-ccm/baremetal-ccm/provider/config"
	"github.com/baremetal-ccm/baremetal-ccm/provider/service"
	"github.com/baremetal-ccm/baremetal-ccm/test/bgprouter"
)

// fuzzEnv is a real speaker peered with a real (in-process GoBGP) router,
// fed by the announcer from a fake cluster of one node and one canary
// Service.
type fuzzEnv struct {
	a      *announcer
	router *bgprouter.Router
	canary netip.Prefix
	round  int
}

func startFuzzEnv(tb testing.TB) *fuzzEnv {
	tb.Helper()
	router := bgprouter.Start(tb, bgprouter.Options{ASN: 64513, Neighbors: []string{"127.0.0.1"}, NeighborASN: 64512})
	// The speaker's ASN, for the rule about its reserved communities.
	cfg, err := config.Parse([]byte(announcerConfig + "bgp:\n  asn: 64512\n"))
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	sp, err := bgp.NewSpeaker(ctx, bgp.Config{
		ASN:            64512,
		RouterID:       netip.MustParseAddr("198.51.100.1"),
		Peers:          []bgp.Peer{{Name: "tor-a", Address: netip.MustParseAddr(router.Address), Port: uint16(router.Port), ASN: router.ASN}},
		ExportPrefixes: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("2001:db8:100::/64")},
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(sp.Stop)
	factory := informers.NewSharedInformerFactory(fake.NewClientset(
		node("a1", []string{"198.51.100.11", "2001:db8:1::11"}),
		lbService("canary", v1.ServiceExternalTrafficPolicyCluster, "203.0.113.1"),
	), 0)
	a := newAnnouncer(factory, testDeps(cfg, sp, fakeAllocations(nil), fakeHealth{}))
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	router.WaitEstablished(tb, time.Minute)
	return &fuzzEnv{a: a, router: router, canary: netip.MustParsePrefix("203.0.113.1/32")}
}

// vip returns a new VIP for each round, so that the router receiving it
// proves this round's path arrived.
func (e *fuzzEnv) vip(v6 bool) netip.Addr {
	e.round++
	if v6 {
		return netip.MustParseAddr(fmt.Sprintf("2001:db8:100::%x", e.round))
	}
	return netip.AddrFrom4([4]byte{203, 0, 113, byte(2 + e.round%250)})
}

// waitRouter waits until the router holds want and not gone.
func (e *fuzzEnv) waitRouter(t *testing.T, want []netip.Prefix, gone netip.Prefix) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		got, err := e.router.Union()
		if err != nil {
			t.Fatal(err)
		}
		ok := gone.IsValid() && len(got[gone]) == 0 || !gone.IsValid()
		for _, p := range want {
			ok = ok && len(got[p]) == 1
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("router table %v: want %v announced and %v withdrawn", got, want, gone)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// FuzzBGPAnnotations drives a Service's BGP annotations through the
// announcer into the speaker and on to the router. Whatever the
// annotations say, the process must not crash, the Service's VIP must
// reach the router (a holder with bad attributes loses its attributes,
// never its route), and the canary Service's VIP must stay.
//
//	go test -run '^$' -fuzz FuzzBGPAnnotations -fuzztime 10m ./provider/
func FuzzBGPAnnotations(f *testing.F) {
	many := func(n int, format string) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = fmt.Sprintf(format, i)
		}
		return strings.Join(parts, ",")
	}
	f.Add("65000:1,no-export", "64512:1:2", "200", false)
	f.Add(many(1100, "65000:%d"), "", "", false)                     // crashed GoBGP's UPDATE packer
	f.Add(many(1100, "65000:%d"), "", "", true)                      // was dropped silently for IPv6
	f.Add("", many(400, "64512:1:%d"), "", true)                     // large communities over the limit
	f.Add("", "64512:1380008779:1", "", false)                       // the rack-marker range
	f.Add("65536:1", "1:2", "-1", false)                             // unparsable
	f.Add(many(300, "65000:%d"), many(200, "65000:2:%d"), "", false) // each fine, too much together
	env := startFuzzEnv(f)
	var last netip.Prefix
	f.Fuzz(func(t *testing.T, communities, large, localPref string, v6 bool) {
		vip := env.vip(v6)
		svc := lbService("fuzzed", v1.ServiceExternalTrafficPolicyCluster)
		svc.Annotations[service.AnnotationBGPCommunities] = communities
		svc.Annotations[service.AnnotationBGPLargeCommunities] = large
		svc.Annotations[service.AnnotationBGPLocalPref] = localPref
		ctx := context.Background()
		if last.IsValid() {
			if err := env.a.withdrawService(ctx, svc, []netip.Addr{last.Addr()}); err != nil {
				t.Fatalf("withdrawing the previous round's %s: %v", last, err)
			}
		}
		if _, err := env.a.syncService(ctx, svc, []netip.Addr{vip}); err != nil {
			t.Fatalf("syncService(%s) with communities %.60q, large %.60q, local-pref %.20q: %v", vip, communities, large, localPref, err)
		}
		if err := env.a.syncAll(ctx); err != nil {
			t.Fatalf("syncAll: %v", err)
		}
		// syncAll withdrew the fuzzed VIP (no status): announce it again.
		if _, err := env.a.syncService(ctx, svc, []netip.Addr{vip}); err != nil {
			t.Fatalf("syncService(%s) again: %v", vip, err)
		}
		p := netip.PrefixFrom(vip, vip.BitLen())
		env.waitRouter(t, []netip.Prefix{p, env.canary}, last)
		last = p
	})
}
