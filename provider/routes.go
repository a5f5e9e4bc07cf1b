package provider

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"k8s.io/apimachinery/pkg/types"
	cloudprovider "k8s.io/cloud-provider"
	"k8s.io/klog/v2"
)

var _ cloudprovider.Routes = (*cloud)(nil)

// Routes offers the pod routes when the cloud config enables them
// (routes:). The route controller asks once, when it starts on the
// leader: a change of the section at runtime changes what is announced
// at once, but starts or stops the route controller only with a restart.
func (c *cloud) Routes() (cloudprovider.Routes, bool) {
	if !c.config().Routes.Enabled {
		return nil, false
	}
	return c, true
}

// routeSpeaker returns the running speaker, or nil (as an interface) when
// the config has no bgp section.
func (c *cloud) routeSpeaker() routeSpeaker {
	if sp := c.speakers.get(); sp != nil {
		return sp
	}
	return nil
}

// ListRoutes answers from the speaker's desired routes: what every
// replica announces, computed from the Nodes' pod CIDRs. The route
// controller therefore finds every route it expects, and neither creates
// nor deletes anything that is in place. It waits (bounded) for this
// replica's first read of the Nodes, so that a new leader does not see a
// table that is merely empty.
func (c *cloud) ListRoutes(ctx context.Context, _ string) ([]*cloudprovider.Route, error) {
	sp := c.routeSync.speaker()
	if sp == nil {
		return nil, errors.New("listing routes: no BGP speaker runs (the cloud config has no bgp section)")
	}
	var spec map[netip.Prefix]string
	err := c.routeSync.await(ctx, "listing routes", func(v routeView) (bool, error) {
		spec = v.specOf
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	var out []*cloudprovider.Route
	for _, r := range sp.Routes() {
		cidr, ok := spec[r.Prefix]
		if !ok {
			cidr = r.Prefix.String()
		}
		out = append(out, &cloudprovider.Route{
			Name:            r.Node + "/" + cidr,
			TargetNode:      types.NodeName(r.Node),
			DestinationCIDR: cidr,
		})
	}
	return out, nil
}

// CreateRoute confirms a route: every replica announces the pod CIDRs of
// the Nodes on its own, so this waits until this replica announces the
// route, and says why when it cannot (a Node without an address of the
// CIDR's family, a CIDR outside the cluster CIDRs, ...). The route
// controller turns that error into a FailedToCreateRoute Event and the
// Node's NetworkUnavailable condition. Creating a route twice is
// harmless.
func (c *cloud) CreateRoute(ctx context.Context, _ string, nameHint string, route *cloudprovider.Route) error {
	key := routeKey{node: string(route.TargetNode), cidr: route.DestinationCIDR}
	log := klog.FromContext(ctx).WithValues("node", key.node, "podCIDR", key.cidr)
	if err := c.routesUsable(); err != nil {
		return err
	}
	prefix, err := netip.ParsePrefix(key.cidr)
	if err != nil {
		return fmt.Errorf("route to node %s: destination %q is not a CIDR", key.node, key.cidr)
	}
	what := fmt.Sprintf("route %s to node %s", key.cidr, key.node)
	err = c.routeSync.await(ctx, what, func(v routeView) (bool, error) {
		if msg, bad := v.problems[key]; bad {
			return true, fmt.Errorf("node %s: %s", key.node, msg)
		}
		return v.routes(prefix, key.node), nil
	})
	if err != nil {
		return err
	}
	log.V(2).Info("Route confirmed: announced by every replica", "nameHint", nameHint)
	return nil
}

// DeleteRoute confirms a route's end: this replica withdraws a pod CIDR
// when its Node goes or gives it up, so this waits until it has. Deleting
// a route that is not announced is harmless. A route this replica still
// sees on a Node stays: the route controller's view is behind or ahead,
// and it asks again at its next reconciliation.
func (c *cloud) DeleteRoute(ctx context.Context, _ string, route *cloudprovider.Route) error {
	key := routeKey{node: string(route.TargetNode), cidr: route.DestinationCIDR}
	if c.routeSync.speaker() == nil {
		return nil // nothing is announced
	}
	prefix, err := netip.ParsePrefix(key.cidr)
	if err != nil {
		return nil // never announced: only networks are
	}
	what := fmt.Sprintf("withdrawing route %s to node %s: the Node still has it", key.cidr, key.node)
	err = c.routeSync.await(ctx, what, func(v routeView) (bool, error) {
		return !v.routes(prefix, key.node), nil
	})
	if err != nil {
		return err
	}
	klog.FromContext(ctx).V(2).Info("Route deletion confirmed: withdrawn by every replica", "node", key.node, "podCIDR", key.cidr)
	return nil
}

// routesUsable says why no route can be created now.
func (c *cloud) routesUsable() error {
	if !c.config().Routes.Enabled {
		return errors.New("pod routes are turned off in the cloud config (routes:); restart the controller manager with --configure-cloud-routes=false, or turn them on")
	}
	if c.routeSync.speaker() == nil {
		return errors.New("no BGP speaker runs (the cloud config has no bgp section)")
	}
	return nil
}
