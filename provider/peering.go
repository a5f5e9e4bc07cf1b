package provider

import (
	"net/netip"
	"os"
	"slices"

	"github.com/baremetal-ccm/baremetal-ccm/bgp"
	"github.com/baremetal-ccm/baremetal-ccm/provider/config"
)

// replicaRack returns the rack of the node this replica runs on: its
// machine's rack in the inventory (Options.NodeName), else the rack
// holding the node's address ($NODE_IP, which the DaemonSet sets). Empty
// when neither says.
func (c *cloud) replicaRack(cfg *config.Config) string {
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(os.Getenv("NODE_IP")); err == nil {
		addrs = append(addrs, a.Unmap())
	}
	if r, ok := cfg.NodeRack(c.opts.NodeName, addrs); ok {
		return r.Name
	}
	return ""
}

// replicaPeers returns the peers a replica of rack peers with: every peer
// without dialFrom, and those whose dialFrom racks hold rack. A replica
// whose rack is unknown peers with the former only.
func replicaPeers(peers []bgp.Peer, rack string) []bgp.Peer {
	out := make([]bgp.Peer, 0, len(peers))
	for _, p := range peers {
		if p.DialFromRacks == nil || (rack != "" && slices.Contains(p.DialFromRacks, rack)) {
			out = append(out, p)
		}
	}
	return out
}

// peerNames lists the peers' names, for the log.
func peerNames(peers []bgp.Peer) []string {
	names := make([]string, len(peers))
	for i, p := range peers {
		names[i] = p.Name
	}
	return names
}
