package realnode

import (
	"net/netip"
	"testing"
)

// TestTesterAddresses checks the tester's place in the address plan: its
// source address outside the nodes' /16 (what the ESIPP test takes for
// the cluster) and outside every range the cluster uses, its core address
// on the core LAN and no one else's.
func TestTesterAddresses(t *testing.T) {
	for _, r := range Plan {
		for i := range r.Nodes {
			nodes16 := netip.PrefixFrom(nodeAddr(r, i), 16).Masked()
			if nodes16.Contains(TesterAddr) {
				t.Errorf("TesterAddr %s is inside %s, the /16 of node %s's address", TesterAddr, nodes16, r.Nodes[i].Name)
			}
		}
	}
	for _, p := range []struct {
		name string
		net  netip.Prefix
	}{{"PoolNet", PoolNet}, {"ServiceNet", ServiceNet}, {"PodNet", PodNet}, {"CoreNet", CoreNet}} {
		if p.net.Contains(TesterAddr) {
			t.Errorf("TesterAddr %s is inside %s %s", TesterAddr, p.name, p.net)
		}
	}
	if !CoreNet.Contains(testerCoreAddr) {
		t.Errorf("testerCoreAddr %s is not on the core LAN %s", testerCoreAddr, CoreNet)
	}
	taken := map[netip.Addr]string{HostAddr: "the host", clientCoreAddr: "the client"}
	for i, r := range Plan {
		taken[torCoreAddr(i)] = r.torName()
	}
	if who, ok := taken[testerCoreAddr]; ok {
		t.Errorf("testerCoreAddr %s is %s's address", testerCoreAddr, who)
	}
}
