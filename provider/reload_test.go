package provider

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"testing"

	"github.com/baremetal-ccm/baremetal-ccm/ipam"
	"github.com/baremetal-ccm/baremetal-ccm/provider/config"
)

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

const reloadBase = `
region: lab
racks:
- name: rack-a
  subnets: [198.51.100.0/25]
pools:
- name: a
  addresses: [203.0.113.0/28]
bgp:
  asn: 64512
  routerID: 198.51.100.1
`

// TestFailedReloadChangesNothing: a reload whose BGP settings the speaker
// cannot take (the new listen port is in use) leaves everything as it was:
// the config in force, the pools, the speaker.
func TestFailedReloadChangesNothing(t *testing.T) {
	busy, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	port := busy.Addr().(*net.TCPAddr).Port

	c := makeCloud(t, reloadBase)
	before := c.config()
	next, err := config.Parse([]byte(reloadBase + "  listenPort: " + strconv.Itoa(port) + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	next.Pools = append(next.Pools, parsePools(t, `
pools:
- name: b
  addresses: [203.0.113.32/28]
`)...)
	if err := c.applyConfig(context.Background(), next); err == nil {
		t.Fatal("applyConfig with a listen port in use succeeded, want an error")
	}
	if c.config() != before {
		t.Error("the failed reload replaced the config in force")
	}
	for _, s := range c.alloc.Stats() {
		if s.Pool != "a" {
			t.Errorf("the failed reload left pool %q in force", s.Pool)
		}
	}
	if c.pools.contains(mustAddr("203.0.113.33")) {
		t.Error("the failed reload made the new pool's addresses announceable")
	}
	if c.speaker() == nil {
		t.Fatal("the failed reload stopped the speaker")
	}
	if peers := c.speaker().Peers(); len(peers) != 0 {
		t.Errorf("speaker peers after the failed reload = %v, want none", peers)
	}
}

func parsePools(t *testing.T, yaml string) []ipam.Pool {
	t.Helper()
	cfg, err := config.Parse([]byte("region: lab\n" + yaml + "bgp:\n  asn: 64512\n"))
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Pools
}
