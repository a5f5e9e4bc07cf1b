package provider

import (
	"fmt"

	v1 "k8s.io/api/core/v1"

	"github.com/baremetal-ccm/baremetal-ccm/provider/config"
)

// reasonNodeOutsideRacks is the Warning Event of a Node in no rack.
const reasonNodeOutsideRacks = "NodeOutsideRacks"

// reportRackless puts a Warning Event on each Node that lies in no rack
// while the config has racks, once per change, clears the others, and
// counts them for the metric baremetal_ccm_nodes_outside_racks. Such a
// Node is initialised without a zone and no router with a rack gets a
// path via it: a mistake in the racks' subnets or the inventory that
// would otherwise only show as traffic missing one node. A Node without
// any address yet is not counted: its kubelet has not said it.
func (a *announcer) reportRackless(nodes []*v1.Node, cfg *config.Config) {
	n := 0
	for _, node := range nodes {
		c := newCandidate(node, cfg)
		if len(cfg.Racks) == 0 || c.rack != "" || len(c.addrs) == 0 {
			a.warn.clear(nodeRef(node), reasonNodeOutsideRacks)
			continue
		}
		n++
		a.warn.warnOnce(nodeRef(node), reasonNodeOutsideRacks, fmt.Sprintf(
			"the Node's addresses %v lie in no rack's subnets (racks[].subnets) and its machine names no rack (machines[].rack): it has no zone, and no BGP peer with a rack gets paths via it", c.addrs))
	}
	a.outsideRacks.Store(int64(n))
}
