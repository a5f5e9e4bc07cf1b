package provider

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/baremetal-ccm/baremetal-ccm/bgp"
	"github.com/baremetal-ccm/baremetal-ccm/ipam"
	"github.com/baremetal-ccm/baremetal-ccm/provider/config"
)

// Annotations that set BGP attributes of a Service's VIPs.
const (
	AnnotationBGPCommunities      = "baremetal-ccm.io/bgp-communities"
	AnnotationBGPLargeCommunities = "baremetal-ccm.io/bgp-large-communities"
	AnnotationBGPLocalPref        = "baremetal-ccm.io/bgp-local-pref"
)

const (
	// minSyncInterval coalesces a burst of changes (a node flapping, many
	// EndpointSlice updates) into one sync, well inside the 1 s within which
	// a change must reach the routers.
	minSyncInterval = 100 * time.Millisecond
	// resyncInterval re-asserts the whole desired state now and then, in
	// case an event was missed.
	resyncInterval = 30 * time.Second
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

// announcer keeps the speaker's paths equal to what the Services, Nodes,
// EndpointSlices and health checks ask for. It runs on every replica, leader
// or not, from the Services' status; on the leader it also sees the
// addresses allocated but not yet written to status (assigned).
type announcer struct {
	config  func() *config.Config
	speaker func() speaker // nil result: no BGP configured
	alloc   allocations
	health  healthView

	services corelisters.ServiceLister
	// byVIP indexes the Services by the addresses in their status
	// (indexByVIP), so that one Service's sync looks at the holders of its
	// addresses, not at every Service.
	byVIP     cache.Indexer
	nodes     corelisters.NodeLister
	slices    discoverylisters.EndpointSliceLister
	hasSynced []cache.InformerSynced

	// mu serialises syncs, so that paths are always computed from one view
	// and handed to the speaker in order.
	mu sync.Mutex
	// failOpen holds the VIPs announced over unhealthy nodes because every
	// candidate failed its health check, to warn once per change.
	failOpen map[netip.Addr]bool

	trigger chan struct{}
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
	for _, ip := range statusAddrs(s) {
		vips = append(vips, ip.String())
	}
	return vips, nil
}

func newAnnouncer(client kubernetes.Interface, cfg func() *config.Config, sp func() speaker,
	alloc allocations, health healthView) (*announcer, informers.SharedInformerFactory) {
	factory := informers.NewSharedInformerFactory(client, 0)
	svcInf := factory.Core().V1().Services()
	// Added before the factory starts the informer, so it cannot fail.
	_ = svcInf.Informer().AddIndexers(cache.Indexers{indexByVIP: statusVIPs})
	nodeInf := factory.Core().V1().Nodes()
	sliceInf := factory.Discovery().V1().EndpointSlices()
	a := &announcer{
		config:    cfg,
		speaker:   sp,
		alloc:     alloc,
		health:    health,
		services:  svcInf.Lister(),
		byVIP:     svcInf.Informer().GetIndexer(),
		nodes:     nodeInf.Lister(),
		slices:    sliceInf.Lister(),
		hasSynced: []cache.InformerSynced{svcInf.Informer().HasSynced, nodeInf.Informer().HasSynced, sliceInf.Informer().HasSynced},
		failOpen:  map[netip.Addr]bool{},
		trigger:   make(chan struct{}, 1),
	}
	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { a.Trigger() },
		UpdateFunc: func(any, any) { a.Trigger() },
		DeleteFunc: func(any) { a.Trigger() },
	}
	for _, inf := range []cache.SharedIndexInformer{svcInf.Informer(), nodeInf.Informer(), sliceInf.Informer()} {
		_, _ = inf.AddEventHandler(h)
	}
	return a, factory
}

// Trigger asks for a sync soon. It never blocks.
func (a *announcer) Trigger() {
	select {
	case a.trigger <- struct{}{}:
	default:
	}
}

// run syncs after every change, at most every minSyncInterval, and every
// resyncInterval, until ctx ends.
func (a *announcer) run(ctx context.Context) {
	logger := klog.FromContext(ctx).WithName("announcer")
	ctx = klog.NewContext(ctx, logger)
	if !cache.WaitForCacheSync(ctx.Done(), a.hasSynced...) {
		return
	}
	t := time.NewTicker(resyncInterval)
	defer t.Stop()
	for {
		if err := a.syncAll(ctx); err != nil {
			logger.Error(err, "Sync failed; retrying")
			a.Trigger()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(minSyncInterval):
		}
		select {
		case <-ctx.Done():
			return
		case <-a.trigger:
		case <-t.C:
		}
	}
}

// syncAll hands the speaker the whole desired state.
func (a *announcer) syncAll(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	sp := a.speaker()
	if sp == nil {
		return nil
	}
	v, err := a.view(nil, nil)
	if err != nil {
		return err
	}
	advs := make([]bgp.Advertisement, 0, len(v.holders))
	for _, vip := range v.vips() {
		adv := v.advertisement(ctx, a, vip)
		if len(adv.NextHops) > 0 {
			advs = append(advs, adv)
		}
	}
	if err := sp.SetAll(ctx, advs); err != nil {
		return fmt.Errorf("handing %d VIPs to the speaker: %w", len(advs), err)
	}
	return nil
}

// announced is what syncService did for one VIP.
type announced struct {
	vip     netip.Addr
	nodes   int
	routers int
}

// syncService brings the VIPs of one Service up to date now, with svc (the
// version the service controller holds) in place of the cached one and
// addrs as its addresses.
func (a *announcer) syncService(ctx context.Context, svc *v1.Service, addrs []netip.Addr) ([]announced, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	sp := a.speaker()
	if sp == nil {
		return nil, fmt.Errorf("no BGP speaker: the cloud config has no bgp section")
	}
	v, err := a.view(&override{svc: svc, addrs: addrs}, addrs)
	if err != nil {
		return nil, err
	}
	peers := sp.Peers()
	var out []announced
	for _, vip := range addrs {
		adv := v.advertisement(ctx, a, vip)
		if err := a.apply(ctx, sp, adv); err != nil {
			return out, err
		}
		out = append(out, announced{vip: vip, nodes: len(adv.NextHops), routers: routersReached(peers, adv)})
	}
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
	v, err := a.view(&override{svc: svc, gone: true}, addrs)
	if err != nil {
		return err
	}
	for _, vip := range addrs {
		if err := a.apply(ctx, sp, v.advertisement(ctx, a, vip)); err != nil {
			return err
		}
	}
	return nil
}

func (a *announcer) apply(ctx context.Context, sp speaker, adv bgp.Advertisement) error {
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

// override replaces (or, gone, removes) one Service in a view.
type override struct {
	svc   *v1.Service
	addrs []netip.Addr
	gone  bool
}

// view is one consistent picture of what is to be announced.
type view struct {
	cfg        *config.Config
	candidates []candidate
	// holders maps each VIP to the Services holding it (several when
	// shared), oldest first.
	holders map[netip.Addr][]*v1.Service
}

// view builds the picture of o (nil: none) and the other Services: of
// every VIP when scope is nil, else of the VIPs in scope only, looking at
// their holders alone (a Service's sync costs the same with 10 or 10,000
// Services).
func (a *announcer) view(o *override, scope []netip.Addr) (*view, error) {
	v := &view{cfg: a.config(), holders: map[netip.Addr][]*v1.Service{}}
	nodes, err := a.nodes.List(labels.Everything())
	if err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Name < nodes[j].Name })
	for _, n := range nodes {
		if ineligibility(n) == "" {
			v.candidates = append(v.candidates, newCandidate(n, v.cfg))
		}
	}
	isOverride := func(s *v1.Service) bool {
		return o != nil && s.Namespace == o.svc.Namespace && s.Name == o.svc.Name
	}
	if scope == nil {
		svcs, err := a.services.List(labels.Everything())
		if err != nil {
			return nil, fmt.Errorf("listing services: %w", err)
		}
		for _, s := range svcs {
			if isOverride(s) || !announceable(s) {
				continue
			}
			for _, ip := range a.addressesOf(s) {
				v.holders[ip] = append(v.holders[ip], s)
			}
		}
	} else {
		for _, vip := range scope {
			svcs, err := a.holdersOf(vip)
			if err != nil {
				return nil, err
			}
			for _, s := range svcs {
				if !isOverride(s) && announceable(s) {
					v.holders[vip] = append(v.holders[vip], s)
				}
			}
		}
	}
	if o != nil && !o.gone && announceable(o.svc) {
		for _, ip := range o.addrs {
			if scope == nil || slices.Contains(scope, ip) {
				v.holders[ip] = append(v.holders[ip], o.svc)
			}
		}
	}
	for _, hs := range v.holders {
		sort.Slice(hs, func(i, j int) bool { return olderService(hs[i], hs[j]) })
	}
	return v, nil
}

// holdersOf returns the Services whose addresses (see addressesOf) include
// vip: the ones the allocator says hold it, and the ones whose status has
// it.
func (a *announcer) holdersOf(vip netip.Addr) ([]*v1.Service, error) {
	objs, err := a.byVIP.ByIndex(indexByVIP, vip.String())
	if err != nil {
		return nil, fmt.Errorf("looking up the Services of %s: %w", vip, err)
	}
	var out []*v1.Service
	seen := map[string]bool{}
	add := func(s *v1.Service) {
		key := s.Namespace + "/" + s.Name
		if !seen[key] && slices.Contains(a.addressesOf(s), vip) {
			seen[key] = true
			out = append(out, s)
		}
	}
	for _, obj := range objs {
		if s, ok := obj.(*v1.Service); ok {
			add(s)
		}
	}
	for _, h := range a.alloc.Holders(vip) {
		s, err := a.services.Services(h.Namespace).Get(h.Name)
		if err != nil {
			continue // not in the cache yet, or gone: it holds nothing to announce
		}
		add(s)
	}
	return out, nil
}

// announceable tells whether a Service's addresses are to be announced: a
// LoadBalancer of ours that is not being deleted.
func announceable(s *v1.Service) bool {
	return s.Spec.Type == v1.ServiceTypeLoadBalancer && s.Spec.LoadBalancerClass == nil && s.DeletionTimestamp == nil
}

// addressesOf returns a Service's VIPs: what the allocator holds for it on
// the leader, else what its status says.
func (a *announcer) addressesOf(s *v1.Service) []netip.Addr {
	if addrs := a.alloc.Assigned(s.Namespace, s.Name); addrs != nil {
		return addrs
	}
	return statusAddrs(s)
}

// statusAddrs returns the addresses in a Service's status.
func statusAddrs(s *v1.Service) []netip.Addr {
	var addrs []netip.Addr
	for _, in := range s.Status.LoadBalancer.Ingress {
		if ip, err := netip.ParseAddr(in.IP); err == nil {
			addrs = append(addrs, ip.Unmap())
		}
	}
	return addrs
}

func olderService(a, b *v1.Service) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	if a.Namespace != b.Namespace {
		return a.Namespace < b.Namespace
	}
	return a.Name < b.Name
}

func (v *view) vips() []netip.Addr {
	vips := make([]netip.Addr, 0, len(v.holders))
	for ip := range v.holders {
		vips = append(vips, ip)
	}
	slices.SortFunc(vips, func(a, b netip.Addr) int { return a.Compare(b) })
	return vips
}

// advertisement computes the desired state of one VIP: the next hops are
// the candidates of its family that pass the health check and, for
// externalTrafficPolicy Local, hold a ready endpoint of a holder. When every
// such node fails its health check, all of them are used (fail open): a
// broken health check must not black-hole a Service.
func (v *view) advertisement(ctx context.Context, a *announcer, vip netip.Addr) bgp.Advertisement {
	adv := bgp.Advertisement{Prefix: netip.PrefixFrom(vip, vip.BitLen())}
	holders := v.holders[vip]
	if len(holders) == 0 {
		return adv
	}
	var local map[string]bool
	for _, s := range holders {
		if s.Spec.ExternalTrafficPolicy != v1.ServiceExternalTrafficPolicyLocal {
			continue
		}
		if local == nil {
			local = map[string]bool{}
		}
		eps, err := a.slices.EndpointSlices(s.Namespace).List(labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: s.Name}))
		if err != nil {
			continue
		}
		for n := range readyEndpointNodes(eps) {
			local[n] = true
		}
	}
	var healthy, all []bgp.NextHop
	for _, c := range v.candidates {
		if local != nil && !local[c.name] {
			continue
		}
		hop, ok := c.nextHop(vip)
		if !ok {
			continue
		}
		all = append(all, hop)
		if a.health.Healthy(c.name) {
			healthy = append(healthy, hop)
		}
	}
	adv.NextHops = healthy
	failOpen := len(healthy) == 0 && len(all) > 0
	if failOpen {
		adv.NextHops = all
	}
	if failOpen != a.failOpen[vip] {
		logger := klog.FromContext(ctx)
		if failOpen {
			logger.Info("Warning: every node of this VIP fails its health check; announcing all of them (fail open)", "vip", vip, "nodes", len(all))
			a.failOpen[vip] = true
		} else {
			delete(a.failOpen, vip)
		}
	}
	adv.Communities, adv.LargeCommunities, adv.LocalPref = bgpAttributes(holders)
	return adv
}

// bgpAttributes merges the BGP annotations of a VIP's holders; bad values
// are left out (EnsureLoadBalancer reports them).
func bgpAttributes(holders []*v1.Service) (cs []bgp.Community, lcs []bgp.LargeCommunity, localPref uint32) {
	for _, s := range holders {
		attrs, err := parseBGPAnnotations(s)
		if err != nil {
			continue
		}
		for _, c := range attrs.Communities {
			if !slices.Contains(cs, c) {
				cs = append(cs, c)
			}
		}
		for _, c := range attrs.LargeCommunities {
			if !slices.Contains(lcs, c) {
				lcs = append(lcs, c)
			}
		}
		if localPref == 0 {
			localPref = attrs.LocalPref
		}
	}
	return cs, lcs, localPref
}

// parseBGPAnnotations reads the BGP attributes a Service asks for, or the
// first bad annotation.
func parseBGPAnnotations(s *v1.Service) (bgp.Advertisement, error) {
	var attrs bgp.Advertisement
	var err error
	if v := s.Annotations[AnnotationBGPCommunities]; v != "" {
		if attrs.Communities, err = bgp.ParseCommunities(v); err != nil {
			return attrs, fmt.Errorf("annotation %s=%q: %w", AnnotationBGPCommunities, v, err)
		}
	}
	if v := s.Annotations[AnnotationBGPLargeCommunities]; v != "" {
		if attrs.LargeCommunities, err = bgp.ParseLargeCommunities(v); err != nil {
			return attrs, fmt.Errorf("annotation %s=%q: %w", AnnotationBGPLargeCommunities, v, err)
		}
	}
	if v := s.Annotations[AnnotationBGPLocalPref]; v != "" {
		p, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return attrs, fmt.Errorf("annotation %s=%q: must be a number from 0 to 4294967295", AnnotationBGPLocalPref, v)
		}
		attrs.LocalPref = uint32(p)
	}
	return attrs, nil
}
