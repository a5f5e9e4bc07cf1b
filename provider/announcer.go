package provider

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/baremetal-ccm/baremetal-ccm/bgp"
	"github.com/baremetal-ccm/baremetal-ccm/ipam"
	"github.com/baremetal-ccm/baremetal-ccm/provider/config"
	"github.com/baremetal-ccm/baremetal-ccm/provider/service"
)

const (
	// minSyncInterval coalesces a burst of changes (a node flapping, many
	// EndpointSlice updates) into one sync, well inside the 1 s within which
	// a change must reach the routers.
	minSyncInterval = 100 * time.Millisecond
	// resyncInterval re-asserts the whole desired state now and then, in
	// case an event was missed. The announcer does it in resyncSlices
	// slices, one every resyncInterval/resyncSlices (see verifyDirty):
	// at 10,000 Services on 1,000 nodes one rebuild costs about 2 s of
	// CPU, and would hold up every change meanwhile; a slice, a
	// sixtieth of that.
	resyncInterval = 30 * time.Second
	resyncSlices   = 60
	// A sync that fails is retried after minSyncInterval, then twice as
	// late each time up to maxRetryDelay, so that a persistent error costs
	// a log line every few minutes, not ten a second. A change in the
	// cluster still syncs at once.
	maxRetryDelay = 5 * time.Minute
)

// speaker is what the announcer needs of the BGP speaker.
type speaker interface {
	Announce(ctx context.Context, adv bgp.Advertisement) error
	Withdraw(ctx context.Context, prefix netip.Prefix) error
	SetAll(ctx context.Context, advs []bgp.Advertisement) error
	Peers() []bgp.PeerStatus
}

// allocations is what the leader's allocator knows ahead of the Services'
// status: the addresses held by a Service, and the holders of an address.
// On other replicas it knows nothing, and the status is the truth.
type allocations interface {
	Assigned(namespace, name string) []netip.Addr
	Holders(addr netip.Addr) []ipam.Assignment
}

// healthView tells whether a node passes the node health check.
type healthView interface {
	Healthy(node string) bool
}

// announcerDeps are the announcer's view of the rest of the provider.
type announcerDeps struct {
	config  func() *config.Config
	speaker func() speaker // nil result: no BGP configured
	alloc   allocations
	health  healthView
	// mayAnnounce tells whether an address may reach the routers at all:
	// status is not authority (see poolHistory).
	mayAnnounce func(netip.Addr) bool
	warn        warner
	// report, when set, is handed the outcomes after every full sync
	// (changed nil) and every sync of changes that changed them or a
	// Service (changed names the Services, namespace/name): the
	// Services' conditions follow them.
	report func(an *announcements, changed []string)
}

// warner records Warning Events once per distinct problem.
type warner interface {
	warnOnce(obj objectRef, reason, msg string)
	clear(obj objectRef, reason string)
	// beginSweep and endSweep bracket a pass over every object, after
	// which the problems of objects that are gone are forgotten.
	beginSweep()
	endSweep()
}

// announcer keeps the speaker's paths equal to what the Services, Nodes,
// EndpointSlices and health checks ask for. It runs on every replica, leader
// or not, from the Services' status; on the leader it also sees the
// addresses allocated but not yet written to status (assigned).
type announcer struct {
	announcerDeps

	services corelisters.ServiceLister
	// byVIP indexes the Services by the addresses in their status
	// (indexByVIP), so that one Service's sync looks at the holders of its
	// addresses, not at every Service.
	byVIP cache.Indexer
	nodes corelisters.NodeLister
	// slicesByService indexes the EndpointSlices by the namespace/name
	// of their Service (indexByService): a lister's label selector would
	// look at every slice of the namespace for each VIP.
	slicesByService cache.Indexer
	// slices is used by the tests.
	slices    discoverylisters.EndpointSliceLister
	hasSynced []cache.InformerSynced

	// mu serialises syncs, so that paths are always computed from one view
	// and handed to the speaker in order. It also guards failOpen and
	// the state of the syncs below.
	mu sync.Mutex
	// failOpen holds the VIPs announced over unhealthy nodes because every
	// candidate failed its health check, to warn once per change.
	failOpen map[netip.Addr]bool
	// outsideRacks counts the Nodes in no rack (reportRackless).
	outsideRacks atomic.Int64

	// dirty collects the changes since the last sync (see syncChanges).
	dirty dirtySet
	// The state of the last syncs, which a sync of changes starts from.
	// index is nil until a full sync succeeds, and again after a failure:
	// the next sync is then a full one.
	index *vipIndex
	// sentTo is the speaker index.sent was handed to, and cfg the config
	// the index was computed with: another one asks for a full sync.
	sentTo speaker
	cfg    *config.Config
	// cands are the candidates (see freshCandidates), and healthy what
	// the health check said of each when the index was computed.
	cands   []candidate
	healthy healthSnapshot
	// outcomes are the outcomes last reported, which the syncs of
	// changes update.
	outcomes *announcements
	// nextSlice is the slice of the periodic re-assertion verifyDirty
	// looks at next, and roundVIPs the VIPs of each slice, dealt out
	// when the round began.
	nextSlice int
	roundVIPs [resyncSlices][]netip.Addr

	*syncLoop
}

// indexByService names the EndpointSlices informer's index of the
// slices' Services (namespace/name).
const indexByService = "service"

// sliceService indexes an EndpointSlice by its Service.
func sliceService(obj any) ([]string, error) {
	if key := serviceOfSlice(obj); key != "" {
		return []string{key}, nil
	}
	return nil, nil
}

// indexByVIP names the Services informer's index of status addresses.
const indexByVIP = "vip"

// statusVIPs indexes a Service by the addresses in its status.
func statusVIPs(obj any) ([]string, error) {
	s, ok := obj.(*v1.Service)
	if !ok {
		return nil, nil
	}
	var vips []string
	for _, ip := range service.StatusAddrs(s) {
		vips = append(vips, ip.String())
	}
	return vips, nil
}

// newAnnouncer wires the announcer to the informers of factory; the caller
// starts the factory.
func newAnnouncer(factory informers.SharedInformerFactory, deps announcerDeps) *announcer {
	svcInf := factory.Core().V1().Services()
	// Added before the factory starts the informer, so it cannot fail.
	_ = svcInf.Informer().AddIndexers(cache.Indexers{indexByVIP: statusVIPs})
	nodeInf := factory.Core().V1().Nodes()
	sliceInf := factory.Discovery().V1().EndpointSlices()
	_ = sliceInf.Informer().AddIndexers(cache.Indexers{indexByService: sliceService})
	a := &announcer{
		announcerDeps:   deps,
		services:        svcInf.Lister(),
		byVIP:           svcInf.Informer().GetIndexer(),
		nodes:           nodeInf.Lister(),
		slices:          sliceInf.Lister(),
		slicesByService: sliceInf.Informer().GetIndexer(),
		failOpen:        map[netip.Addr]bool{},
	}
	a.syncLoop = newSyncLoop("announcer", a.sync)
	a.syncLoop.resyncEvery = resyncInterval / resyncSlices
	a.syncLoop.beforeResync = a.dirty.markVerify
	// Synced once each handler has been handed the initial list: the
	// first sync then leaves none of those events behind.
	for inf, h := range map[cache.SharedIndexInformer]cache.ResourceEventHandler{
		svcInf.Informer(): cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { a.serviceChanged(obj) },
			UpdateFunc: a.serviceUpdated,
			DeleteFunc: a.serviceChanged,
		},
		nodeInf.Informer(): cache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { a.nodesChanged() },
			UpdateFunc: a.nodeUpdated,
			DeleteFunc: func(any) { a.nodesChanged() },
		},
		sliceInf.Informer(): cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { a.sliceChanged(obj) },
			UpdateFunc: a.sliceUpdated,
			DeleteFunc: a.sliceChanged,
		},
	} {
		reg := watchWithoutResync(inf, h)
		a.hasSynced = append(a.hasSynced, reg.HasSynced)
	}
	return a
}

// run syncs the changes after every change, at most every minSyncInterval,
// and everything every resyncInterval, until ctx ends.
func (a *announcer) run(ctx context.Context) { a.syncLoop.run(ctx, a.hasSynced...) }

// Trigger asks for a full sync soon: the config, the sessions or the
// allocator changed. It never blocks.
func (a *announcer) Trigger() {
	a.dirty.markAll()
	a.syncLoop.Trigger()
}

// syncAll hands the speaker the whole desired state.
func (a *announcer) syncAll(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.syncAllLocked(ctx)
}

// syncAllLocked is syncAll; callers hold mu. It recomputes every VIP and
// hands the speaker all of them at once (SetAll), so that whatever a
// sync of changes may have missed is set right; and it rebuilds the
// state the syncs of changes start from.
func (a *announcer) syncAllLocked(ctx context.Context) error {
	a.index = nil
	sp := a.speaker()
	if sp == nil {
		if a.report != nil {
			a.report(&announcements{}, nil)
		}
		return nil
	}
	a.warn.beginSweep()
	defer a.warn.endSweep()
	cfg := a.config()
	cands, err := a.freshCandidates(cfg)
	if err != nil {
		return err
	}
	v, err := a.view(cfg, cands, nil, nil)
	if err != nil {
		return err
	}
	healthy := newHealthSnapshot(cands, a.health)
	index := newVIPIndex()
	advs := make([]bgp.Advertisement, 0, len(v.holders))
	outcomes := &announcements{speaker: true, vips: make(map[netip.Addr]vipOutcome, len(v.holders))}
	peers := sp.Peers()
	for _, vip := range v.vips() {
		p := a.plan(ctx, v, vip, healthy)
		index.set(vip, holderKeys(v.holders[vip]), p)
		outcomes.vips[vip] = newVIPOutcome(p.adv, p.failOpen, peers)
		if len(p.adv.NextHops) > 0 {
			advs = append(advs, p.adv)
		}
	}
	if err := sp.SetAll(ctx, advs); err != nil {
		return fmt.Errorf("handing %d VIPs to the speaker: %w", len(advs), err)
	}
	for _, adv := range advs {
		index.sent[adv.Prefix.Addr()] = adv
	}
	a.index, a.sentTo, a.cfg, a.cands, a.healthy, a.outcomes = index, sp, cfg, cands, healthy, outcomes
	if a.report != nil {
		a.report(outcomes, nil)
	}
	return nil
}

// announced is what syncService did for one VIP.
type announced struct {
	vip     netip.Addr
	nodes   int
	routers int
}

// announcedVIPs is what syncService did for each VIP of a Service.
type announcedVIPs []announced

// MarshalLog shows it in a log line (logr.Marshaler): the fields are
// unexported, and would show as {}.
func (as announcedVIPs) MarshalLog() any {
	type shown struct {
		VIP     string `json:"vip"`
		Nodes   int    `json:"nodes"`
		Routers int    `json:"routers"`
	}
	out := make([]shown, len(as))
	for i, a := range as {
		out[i] = shown{a.vip.String(), a.nodes, a.routers}
	}
	return out
}

// syncService brings the VIPs of one Service up to date now, with svc (the
// version the service controller holds) in place of the cached one and
// addrs as its addresses.
func (a *announcer) syncService(ctx context.Context, svc *v1.Service, addrs []netip.Addr) (announcedVIPs, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	// The service controller's syncs under way when the replica stops
	// end here, not with the speaker it has just stopped.
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("not synced, the replica is stopping: %w", err)
	}
	sp := a.speaker()
	if sp == nil {
		return nil, fmt.Errorf("no BGP speaker: the cloud config has no bgp section")
	}
	cfg := a.config()
	cands, err := a.candidatesNow(cfg, sp)
	if err != nil {
		return nil, err
	}
	v, err := a.view(cfg, cands, &override{svc: svc, addrs: addrs}, addrs)
	if err != nil {
		return nil, err
	}
	peers := sp.Peers()
	var out announcedVIPs
	for _, vip := range addrs {
		adv, err := a.settle(ctx, sp, v, vip, a.health)
		if err != nil {
			return out, err
		}
		out = append(out, announced{vip: vip, nodes: len(adv.NextHops), routers: routersReached(peers, adv)})
	}
	// The informers will tell of the Service's new status: by then the
	// index is what it says.
	a.dirty.markService(serviceKey(svc.Namespace, svc.Name))
	return out, nil
}

// withdrawService takes the VIPs of a deleted Service away, except where
// another Service still holds the address.
func (a *announcer) withdrawService(ctx context.Context, svc *v1.Service, addrs []netip.Addr) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	sp := a.speaker()
	if sp == nil {
		return nil
	}
	cfg := a.config()
	cands, err := a.candidatesNow(cfg, sp)
	if err != nil {
		return err
	}
	v, err := a.view(cfg, cands, &override{svc: svc, gone: true}, addrs)
	if err != nil {
		return err
	}
	for _, vip := range addrs {
		if _, err := a.settle(ctx, sp, v, vip, a.health); err != nil {
			return err
		}
	}
	return nil
}

// plan computes a VIP's desired state with health and warns once when it
// turns to, or from, fail-open. Callers hold mu.
func (a *announcer) plan(ctx context.Context, v *view, vip netip.Addr, health healthView) vipPlan {
	p := v.advertisement(vip, health, a.endpointCounts)
	if p.failOpen != a.failOpen[vip] {
		if p.failOpen {
			klog.FromContext(ctx).Info("Warning: every node of this VIP fails its health check; announcing all of them (fail open)", "vip", vip, "nodes", len(p.adv.NextHops))
			a.failOpen[vip] = true
		} else {
			delete(a.failOpen, vip)
		}
	}
	return p
}

// settle computes a VIP's desired state, records it in the index and
// hands it to the speaker unless the speaker has it already. After a
// failure the next sync is a full one. Callers hold mu.
func (a *announcer) settle(ctx context.Context, sp speaker, v *view, vip netip.Addr, health healthView) (bgp.Advertisement, error) {
	p := a.plan(ctx, v, vip, health)
	x := a.index
	if x == nil || sp != a.sentTo {
		return p.adv, apply(ctx, sp, p.adv)
	}
	x.set(vip, holderKeys(v.holders[vip]), p)
	prev, had := x.sent[vip]
	switch {
	case len(p.adv.NextHops) == 0 && !had:
		return p.adv, nil
	case had && prev.Equal(&p.adv):
		return p.adv, nil
	}
	if err := apply(ctx, sp, p.adv); err != nil {
		a.index = nil
		a.Trigger()
		return p.adv, err
	}
	if len(p.adv.NextHops) == 0 {
		delete(x.sent, vip)
	} else {
		x.sent[vip] = p.adv
	}
	return p.adv, nil
}

// holderKeys returns the namespace/name of each Service.
func holderKeys(svcs []*v1.Service) []string {
	keys := make([]string, len(svcs))
	for i, s := range svcs {
		keys[i] = serviceKey(s.Namespace, s.Name)
	}
	return keys
}

func apply(ctx context.Context, sp speaker, adv bgp.Advertisement) error {
	if len(adv.NextHops) == 0 {
		if err := sp.Withdraw(ctx, adv.Prefix); err != nil {
			return fmt.Errorf("withdrawing %s: %w", adv.Prefix, err)
		}
		return nil
	}
	if err := sp.Announce(ctx, adv); err != nil {
		return fmt.Errorf("announcing %s: %w", adv.Prefix, err)
	}
	return nil
}

// routersReached counts the established routers that get a path of adv.
func routersReached(peers []bgp.PeerStatus, adv bgp.Advertisement) int {
	n := 0
	for _, p := range peers {
		if p.State != bgp.StateEstablished {
			continue
		}
		if p.Rack == "" || slices.ContainsFunc(adv.NextHops, func(h bgp.NextHop) bool { return h.Rack == p.Rack }) {
			n++
		}
	}
	return n
}
