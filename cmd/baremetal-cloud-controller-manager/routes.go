package main

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"k8s.io/cloud-provider/options"

	"github.com/baremetal-ccm/baremetal-ccm/provider/config"
)

// alignRouteFlags makes the upstream route controller's flags agree with
// the cloud config's routes: section, before anything starts.
//
// With routes enabled the cloud offers Routes, and the route controller
// starts when --configure-cloud-routes is true (its default): it then
// needs --cluster-cidr, and the CCM fails when it is missing. So
// --cluster-cidr defaults to routes.clusterCIDRs, and when given it must
// name the same networks: the route controller deletes only routes inside
// it, and every replica announces only pod CIDRs inside the config's.
// --allocate-node-cidrs has no effect here: k8s.io/cloud-provider runs no
// node IPAM; kube-controller-manager's allocates the pod CIDRs.
//
// It returns a note for the log when it set --cluster-cidr.
func alignRouteFlags(shared *options.KubeCloudSharedOptions, routes config.Routes) (string, error) {
	if !routes.Enabled || !shared.ConfigureCloudRoutes {
		return "", nil
	}
	want := make([]string, len(routes.ClusterCIDRs))
	for i, p := range routes.ClusterCIDRs {
		want[i] = p.String()
	}
	if strings.TrimSpace(shared.ClusterCIDR) == "" {
		shared.ClusterCIDR = strings.Join(want, ",")
		return "--cluster-cidr defaults to routes.clusterCIDRs of the cloud config: " + shared.ClusterCIDR, nil
	}
	var got []netip.Prefix
	for _, s := range strings.Split(shared.ClusterCIDR, ",") {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			return "", fmt.Errorf("--cluster-cidr=%q: %q is not a CIDR", shared.ClusterCIDR, s)
		}
		got = append(got, p.Masked())
	}
	same := len(got) == len(routes.ClusterCIDRs)
	for _, p := range got {
		same = same && slices.Contains(routes.ClusterCIDRs, p)
	}
	if !same {
		return "", fmt.Errorf("--cluster-cidr=%q differs from routes.clusterCIDRs in the cloud config (%s): give the same networks, or leave --cluster-cidr out and it defaults to them",
			shared.ClusterCIDR, strings.Join(want, ", "))
	}
	return "", nil
}
