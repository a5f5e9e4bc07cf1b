package fabric

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestNamespaceVethAddrRoutes(t *testing.T) {
	Require(t, false)
	ctx := context.Background()
	name := UniqueName("fabt")
	ns := NewNamespace(t, name)
	Veth(t, name+"a", Root, name+"b", ns)
	AddAddr(t, Root, name+"a", netip.MustParsePrefix("198.51.100.226/29"))
	AddAddr(t, ns, name+"b", netip.MustParsePrefix("198.51.100.225/29"))
	AddAddr(t, ns, name+"b", netip.MustParsePrefix("2001:db8:fa::1/64"))

	if _, err := ns.IP(ctx, "route", "add", "203.0.113.250/32",
		"nexthop", "via", "198.51.100.227", "nexthop", "via", "198.51.100.228"); err != nil {
		t.Fatal(err)
	}
	routes, err := Routes(ctx, ns, netip.MustParsePrefix("203.0.113.250/32"))
	if err != nil {
		t.Fatal(err)
	}
	if len(routes) != 1 {
		t.Fatalf("Routes() = %+v, want one route", routes)
	}
	got := routes[0].Gateways()
	want := []netip.Addr{netip.MustParseAddr("198.51.100.227"), netip.MustParseAddr("198.51.100.228")}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("Gateways() = %v, want %v", got, want)
	}
	if routes, err := Routes(ctx, ns, netip.MustParsePrefix("203.0.113.251/32")); err != nil || len(routes) != 0 {
		t.Errorf("Routes(absent) = %v, %v; want none", routes, err)
	}
	out, err := ns.Exec(ctx, "ip", "-j", "-4", "route", "get", "198.51.100.226")
	if err != nil || !strings.Contains(string(out), `"dev":"`+name+`b"`) {
		t.Errorf("route from %s to the root namespace's end: %v %s", ns, err, out)
	}
}

func TestFRRStartsAndAnswers(t *testing.T) {
	Require(t, true)
	ctx := context.Background()
	name := UniqueName("fabt")
	ns := NewNamespace(t, name)
	Veth(t, name+"a", Root, name+"b", ns)
	AddAddr(t, ns, name+"b", netip.MustParsePrefix("198.51.100.233/29"))
	frr := StartFRR(t, ns, t.TempDir(), `
router bgp 64513
 bgp router-id 198.51.100.233
 no bgp ebgp-requires-policy
 no bgp network import-check
 address-family ipv4 unicast
  network 192.0.2.0/24
 exit-address-family
`)
	if err := Eventually(ctx, time.Minute, 100*time.Millisecond, func() error {
		paths, err := frr.BGPPaths(ctx, "192.0.2.0/24")
		if err == nil && len(paths) != 1 {
			return os.ErrNotExist
		}
		return err
	}); err != nil {
		t.Fatalf("FRR's own network: %v", err)
	}
	frr.Stop()
	// Stopping twice (again in cleanup) is harmless.
	frr.Stop()
	if out, _ := run(ctx, "ip", "netns", "pids", name); strings.TrimSpace(string(out)) != "" {
		t.Errorf("processes left in %s after Stop: %s", name, out)
	}
}

func TestCleanupByPrefix(t *testing.T) {
	Require(t, false)
	ctx := context.Background()
	prefix := UniqueName("fabc") + "-"
	t.Cleanup(func() { _ = Cleanup(prefix) }) // should the test fail half-way
	// A crashed run: objects without t.Cleanup.
	for _, n := range []string{prefix + "1", prefix + "2"} {
		if _, err := run(ctx, "ip", "netns", "add", n); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := run(ctx, "ip", "link", "add", prefix+"x", "type", "veth", "peer", "name", prefix+"y", "netns", prefix+"1"); err != nil {
		t.Fatal(err)
	}
	if _, err := run(ctx, "ip", "link", "add", prefix+"d", "type", "veth", "peer", "name", prefix+"e"); err != nil {
		t.Fatal(err)
	}
	if err := Cleanup(prefix); err != nil {
		t.Fatalf("Cleanup(%q) = %v", prefix, err)
	}
	out, err := run(ctx, "ip", "netns", "list")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), prefix) {
		t.Errorf("namespaces left after Cleanup: %s", out)
	}
	out, err = run(ctx, "ip", "link", "show")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), prefix) {
		t.Errorf("links left after Cleanup: %s", out)
	}
	if err := Cleanup(""); err == nil {
		t.Error("Cleanup(\"\") = nil, want a refusal")
	}
}

// linkedNamespace creates a namespace joined to the root namespace by a
// veth, with addr on its end: where a test's routes find their gateways.
func linkedNamespace(t *testing.T, prefix string, addr netip.Prefix) *Namespace {
	t.Helper()
	name := UniqueName(prefix)
	ns := NewNamespace(t, name)
	Veth(t, name+"a", Root, name+"b", ns)
	AddAddr(t, ns, name+"b", addr)
	return ns
}

// linesWith returns the lines w recorded that contain sub.
func linesWith(w *RouteWatch, sub string) []string {
	return slices.DeleteFunc(w.Lines(), func(l string) bool { return !strings.Contains(l, sub) })
}

// TestRouteWatchRecordsChanges: a RouteWatch sees a multipath route
// added and deleted, and Stop ends the recording (a later change is not
// recorded).
func TestRouteWatchRecordsChanges(t *testing.T) {
	Require(t, false)
	ctx := context.Background()
	ns := linkedNamespace(t, "fabt", netip.MustParsePrefix("198.51.100.225/29"))
	w, err := WatchRoutes(ctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	// ip monitor subscribes after it starts: add and delete a marker
	// route until the watch has seen it.
	const marker = "203.0.113.249"
	err = Eventually(ctx, 30*time.Second, 50*time.Millisecond, func() error {
		for _, op := range []string{"add", "del"} {
			if _, err := ns.IP(ctx, "route", op, marker+"/32", "dev", "lo"); err != nil {
				return err
			}
		}
		if len(linesWith(w, marker)) == 0 {
			return fmt.Errorf("the watch has not seen %s", marker)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	const vip = "203.0.113.250"
	if _, err := ns.IP(ctx, "route", "add", vip+"/32",
		"nexthop", "via", "198.51.100.227", "nexthop", "via", "198.51.100.228"); err != nil {
		t.Fatal(err)
	}
	if _, err := ns.IP(ctx, "route", "del", vip+"/32"); err != nil {
		t.Fatal(err)
	}
	var got []string
	err = Eventually(ctx, 30*time.Second, 20*time.Millisecond, func() error {
		if got = linesWith(w, vip); len(got) < 2 {
			return fmt.Errorf("lines with %s: %q, want the addition and the deletion", vip, got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(got[0], "[") || !strings.Contains(got[0], "198.51.100.228") || !strings.Contains(got[1], "Deleted "+vip) {
		t.Errorf("lines with %s: %q, want a time-stamped addition with both next hops, then its deletion", vip, got)
	}
	w.Stop()
	if _, err := ns.IP(ctx, "route", "add", vip+"/32", "via", "198.51.100.227"); err != nil {
		t.Fatal(err)
	}
	if after := linesWith(w, vip); len(after) != len(got) {
		t.Errorf("lines after Stop: %q, want none added", after[len(got):])
	}
}
