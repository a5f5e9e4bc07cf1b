package provider

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	v1 "k8s.io/api/core/v1"
	cloudprovider "k8s.io/cloud-provider"
	cloudproviderapi "k8s.io/cloud-provider/api"
	"k8s.io/klog/v2"

	"github.com/baremetal-ccm/baremetal-ccm/provider/config"
)

// ProviderID is the provider ID of a machine: baremetal://<region>/<machine>.
// The rack is left out on purpose: a machine moved to another rack keeps its
// identity, and a Node's spec.providerID cannot change once set.
func ProviderID(region, machine string) string {
	return Name + "://" + region + "/" + machine
}

// InstanceExists is false only when an inventory is configured and the
// machine is not in it. Without an inventory every Node exists: a Node is
// never deleted on missing data.
func (c *cloud) InstanceExists(ctx context.Context, node *v1.Node) (bool, error) {
	cfg := c.config()
	if !cfg.HasInventory() {
		return true, nil
	}
	_, ok := cfg.Machines[node.Name]
	if !ok {
		klog.FromContext(ctx).V(2).Info("Machine not in the inventory", "node", klog.KObj(node))
	}
	return ok, nil
}

// InstanceShutdown is true for a machine the inventory marks shutdown.
func (c *cloud) InstanceShutdown(_ context.Context, node *v1.Node) (bool, error) {
	m, ok := c.config().Machines[node.Name]
	return ok && m.State == config.StateShutdown, nil
}

// InstanceMetadata answers from the inventory entry of the Node's machine;
// what the inventory leaves out comes from the Node itself.
func (c *cloud) InstanceMetadata(ctx context.Context, node *v1.Node) (*cloudprovider.InstanceMetadata, error) {
	cfg := c.config()
	m, ok := cfg.Machines[node.Name]
	if cfg.HasInventory() && !ok {
		return nil, fmt.Errorf("node %q is not in the inventory (machines:): %w", node.Name, cloudprovider.InstanceNotFound)
	}
	addrs := m.Addresses
	if len(addrs) == 0 {
		var err error
		if addrs, err = nodeIPs(node); err != nil {
			return nil, err
		}
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("node %q has no address: list it in the inventory (machines[].addresses) or start its kubelet with --node-ip", node.Name)
	}

	meta := &cloudprovider.InstanceMetadata{
		ProviderID:   ProviderID(cfg.Region, node.Name),
		InstanceType: config.DefaultInstanceType,
		Region:       cfg.Region,
	}
	if m.Type != "" {
		meta.InstanceType = m.Type
	}
	if rack, ok := cfg.NodeRack(node.Name, addrs); ok {
		meta.Zone = rack.Zone
	} else if len(cfg.Racks) > 0 {
		// The NodeOutsideRacks Event and metric say it; the node
		// controller asks every few minutes per node.
		klog.FromContext(ctx).V(2).Info("Warning: the node lies in no rack: it gets no zone, and no BGP peer with a rack gets paths via it; check racks[].subnets or machines[].rack",
			"node", klog.KObj(node), "addresses", addrs)
	}
	for _, a := range addrs {
		meta.NodeAddresses = append(meta.NodeAddresses, v1.NodeAddress{Type: v1.NodeInternalIP, Address: a.String()})
	}
	meta.NodeAddresses = append(meta.NodeAddresses, v1.NodeAddress{Type: v1.NodeHostName, Address: node.Name})
	klog.FromContext(ctx).V(4).Info("Instance metadata", "node", klog.KObj(node), "providerID", meta.ProviderID, "zone", meta.Zone, "addresses", addrs)
	return meta, nil
}

// nodeIPs returns the addresses the kubelet reported: those given with
// --node-ip (which a kubelet with --cloud-provider=external records in an
// annotation), else the Node's InternalIPs.
func nodeIPs(node *v1.Node) ([]netip.Addr, error) {
	if v, ok := node.Annotations[cloudproviderapi.AnnotationAlphaProvidedIPAddr]; ok && v != "" {
		var addrs []netip.Addr
		for s := range strings.SplitSeq(v, ",") {
			a, err := netip.ParseAddr(strings.TrimSpace(s))
			if err != nil {
				return nil, fmt.Errorf("node %q: annotation %s=%q: %q is not an IP address", node.Name, cloudproviderapi.AnnotationAlphaProvidedIPAddr, v, s)
			}
			addrs = append(addrs, a.Unmap())
		}
		return addrs, nil
	}
	var addrs []netip.Addr
	for _, na := range node.Status.Addresses {
		if na.Type != v1.NodeInternalIP {
			continue
		}
		if a, err := netip.ParseAddr(na.Address); err == nil {
			addrs = append(addrs, a.Unmap())
		}
	}
	return addrs, nil
}
