package provider

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/baremetal-ccm/baremetal-ccm/bgp"
	"github.com/baremetal-ccm/baremetal-ccm/provider/config"
)

// defaultConfirmTimeout bounds how long CreateRoute and DeleteRoute wait
// for this replica's view of the Nodes to agree with the route
// controller's. Both informers watch the same apiserver, so they agree
// within moments; the route controller retries at its next
// reconciliation otherwise.
const defaultConfirmTimeout = 10 * time.Second

// reasonPodCIDRNotRouted is the Warning on a Node whose pod CIDR is not
// announced, with the reason.
const reasonPodCIDRNotRouted = "PodCIDRNotRouted"

// routeSpeaker is what the pod routes need of the BGP speaker.
type routeSpeaker interface {
	SetRoutes(ctx context.Context, routes []bgp.Route) error
	Routes() []bgp.Route
}

// routeSyncerDeps are the route syncer's view of the rest of the provider.
type routeSyncerDeps struct {
	config  func() *config.Config
	speaker func() routeSpeaker // nil result: no BGP configured
	// vips are the prefixes whose addresses are VIPs: no pod CIDR may
	// overlap them.
	vips func() []netip.Prefix
	warn warner
}

// routeSyncer keeps the speaker's routes equal to the Nodes' pod CIDRs.
// It runs on every replica, leader or not, from the replica's own Node
// informer: every replica announces every pod CIDR, as it announces every
// VIP, so that losing a replica, the leader included, withdraws nothing.
// The route controller, which runs on the leader only, does not drive it:
// its CreateRoute and DeleteRoute wait until this replica's view agrees
// (see routes.go).
type routeSyncer struct {
	routeSyncerDeps
	nodes     corelisters.NodeLister
	hasSynced cache.InformerSynced
	// confirmTimeout bounds every await.
	confirmTimeout time.Duration
	*syncLoop

	// syncMu serialises syncs: the loop's, and the first one before the
	// sessions open.
	syncMu sync.Mutex
	// mu guards the outcome of the latest sync; done is closed, and
	// replaced, at the end of every sync, to wake those who wait for one.
	mu       sync.Mutex
	synced   bool
	problems map[routeKey]string
	// specOf maps each routed prefix to its pod CIDR as the Node spells
	// it, which the route controller compares.
	specOf map[netip.Prefix]string
	// routed maps each prefix the speaker announces to its node.
	routed map[netip.Prefix]string
	done   chan struct{}
}

// newRouteSyncer wires the syncer to the Node informer of factory; the
// caller starts the factory.
func newRouteSyncer(factory informers.SharedInformerFactory, deps routeSyncerDeps) *routeSyncer {
	nodeInf := factory.Core().V1().Nodes()
	r := &routeSyncer{
		routeSyncerDeps: deps,
		nodes:           nodeInf.Lister(),
		hasSynced:       nodeInf.Informer().HasSynced,
		confirmTimeout:  defaultConfirmTimeout,
		done:            make(chan struct{}),
	}
	r.syncLoop = newSyncLoop("routes", r.sync)
	watchWithoutResync(nodeInf.Informer(), cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { r.Trigger() },
		DeleteFunc: func(any) { r.Trigger() },
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(*v1.Node)
			n, ok2 := newObj.(*v1.Node)
			// Heartbeats change neither: only these move a route.
			if !ok1 || !ok2 || !slices.Equal(podCIDRs(o), podCIDRs(n)) || !slices.Equal(o.Status.Addresses, n.Status.Addresses) {
				r.Trigger()
			}
		},
	})
	return r
}

// run syncs after every change, at most every minSyncInterval, and every
// resyncInterval, until ctx ends.
func (r *routeSyncer) run(ctx context.Context) { r.syncLoop.run(ctx, r.hasSynced) }

// sync hands the speaker the routes of every Node's pod CIDRs, and tells
// the Nodes whose pod CIDRs it cannot route why.
func (r *routeSyncer) sync(ctx context.Context) error {
	r.syncMu.Lock()
	defer r.syncMu.Unlock()
	cfg := r.config()
	nodes, err := r.nodes.List(everything)
	if err != nil {
		return fmt.Errorf("listing nodes: %w", err)
	}
	var routes []bgp.Route
	var problems []routeProblem
	if cfg.Routes.Enabled {
		routes, problems = desiredRoutes(nodes, cfg, r.vips())
	}
	r.report(nodes, problems)
	routed := map[netip.Prefix]string{}
	if sp := r.speaker(); sp != nil {
		err = sp.SetRoutes(ctx, routes)
		for _, rt := range sp.Routes() {
			routed[rt.Prefix] = rt.Node
		}
	}
	specOf := make(map[netip.Prefix]string, len(routes))
	for _, n := range nodes {
		for _, s := range podCIDRs(n) {
			if p, perr := netip.ParsePrefix(s); perr == nil {
				specOf[p] = s
			}
		}
	}
	byKey := make(map[routeKey]string, len(problems))
	for _, p := range problems {
		byKey[p.key] = p.msg
	}
	r.mu.Lock()
	first := !r.synced
	r.synced, r.problems, r.specOf, r.routed = true, byKey, specOf, routed
	close(r.done)
	r.done = make(chan struct{})
	r.mu.Unlock()
	if err != nil {
		return fmt.Errorf("handing %d routes to the speaker: %w", len(routes), err)
	}
	if first {
		klog.FromContext(ctx).Info("First route sync: the pod routes are in the speaker", "routes", len(routes), "notRouted", len(problems))
	}
	klog.FromContext(ctx).V(4).Info("Synced routes", "routes", len(routes), "notRouted", len(problems))
	return nil
}

// report puts a Warning on each Node whose pod CIDRs are not routed, once
// per distinct problem, and clears the others.
func (r *routeSyncer) report(nodes []*v1.Node, problems []routeProblem) {
	r.warn.beginSweep()
	defer r.warn.endSweep()
	byNode := map[string][]string{}
	for _, p := range problems {
		byNode[p.key.node] = append(byNode[p.key.node], p.msg)
	}
	for _, n := range nodes {
		msgs := byNode[n.Name]
		if len(msgs) == 0 {
			r.warn.clear(nodeRef(n), reasonPodCIDRNotRouted)
			continue
		}
		r.warn.warnOnce(nodeRef(n), reasonPodCIDRNotRouted, strings.Join(msgs, "; ")+": not announced to the routers")
	}
}

// routeView is the outcome of the latest sync.
type routeView struct {
	problems map[routeKey]string
	specOf   map[netip.Prefix]string
	routed   map[netip.Prefix]string
}

// routes tells whether the speaker announces prefix via node.
func (v routeView) routes(prefix netip.Prefix, node string) bool {
	n, ok := v.routed[prefix]
	return ok && n == node
}

// await calls check with the outcome of each sync, the latest first,
// until it is done, ctx ends or confirmTimeout passes; it asks for a sync
// first. what says, in the error after the timeout, what did not happen.
func (r *routeSyncer) await(ctx context.Context, what string, check func(routeView) (bool, error)) error {
	r.Trigger()
	timeout := r.confirmTimeout
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		synced, done := r.synced, r.done
		v := routeView{problems: r.problems, specOf: r.specOf, routed: r.routed}
		r.mu.Unlock()
		if synced {
			if ok, err := check(v); ok {
				return err
			}
		}
		select {
		case <-done:
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, ctx.Err())
		case <-deadline.C:
			if !synced {
				return fmt.Errorf("%s: this replica has not read the Nodes yet (after %s)", what, timeout)
			}
			return fmt.Errorf("%s: not in this replica's view of the Nodes after %s", what, timeout)
		}
	}
}

// withOwnMemory returns an Event recorder that shares e's sink but
// remembers its own problems: the route syncer's sweeps must not forget
// the announcer's problems, nor the announcer's the syncer's.
func (e *events) withOwnMemory() *events {
	return &events{recorder: e.recorder, active: map[string]string{}}
}
