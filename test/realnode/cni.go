package realnode

import (
	"context"
	"fmt"
	"net/netip"
)

// cniConfig is the node's pod network: a bridge with the node as the
// pods' gateway and host-local addresses from the node's spec.podCIDR. No
// masquerading: pods reach other nodes' pods through the ToRs, which learn
// each node's pod CIDR from the CCM over BGP (the routes: section).
func cniConfig(podCIDR netip.Prefix) string {
	return fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": "lab",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": %q}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    }
  ]
}
`, podCIDR.String())
}

// setPodCIDR installs the node's pod network once the node IPAM
// controller has given it a CIDR: the CNI configuration (the kubelet then
// reports the network ready). The routes to it come from the CCM.
func (c *Cluster) setPodCIDR(ctx context.Context, n *Node, podCIDR netip.Prefix) error {
	if n.PodCIDR == podCIDR {
		return nil
	}
	if err := n.WriteFile(ctx, "/etc/cni/net.d/10-lab.conflist", []byte(cniConfig(podCIDR))); err != nil {
		return err
	}
	n.PodCIDR = podCIDR
	return nil
}
