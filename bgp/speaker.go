package bgp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"
)

// ErrStopped is returned by the methods of a stopped Speaker.
var ErrStopped = errors.New("bgp speaker is stopped")

// Speaker is an embedded GoBGP speaker that announces VIPs to routers.
//
// For every VIP it announces one path per chosen node, each with its own
// path identifier, next hop = the node. Changes are reconciled against
// what is announced, so an unchanged path is never withdrawn or sent again,
// and path changes never reset a session. All methods are safe for
// concurrent use.
//
// The files of the package: speaker.go (life cycle and public API),
// peers.go (routers and policy), paths.go (VIPs and their paths),
// routes.go (routes to nodes: pod CIDRs),
// status.go (Peers), events.go (session events), config*.go (the
// configuration and its defaults), attributes.go (what one VIP may carry),
// probes.go (socket checks), router.go (the seam to the BGP
// implementation) and gobgp_*.go (GoBGP behind that seam).
type Speaker struct {
	log       logr.Logger
	newRouter newRouterFunc

	// mu serializes configuration and path changes.
	mu      sync.Mutex
	stopped bool
	cfg     Config
	views   views
	vips    map[netip.Prefix]*vipState
	racks   map[string]uint32 // rack name -> marker index, allocated on first sight
	// routes are the routes to nodes (routes.go), under mu.
	routes map[netip.Prefix]*routeState

	// routerMu guards router against being stopped while Peers uses it.
	// Writers also hold mu; nobody holds it across a call into the
	// router, so a restart never blocks Peers.
	routerMu sync.RWMutex
	router   router // nil after a failed restart

	// statMu guards what Peers reads: the applied peers and counters.
	statMu   sync.Mutex
	applied  []appliedPeer
	counters [2]familyCounters

	events        chan peerEvent
	droppedEvents atomic.Uint64
	// drops counts, per router address, the sessions that went down
	// after being Established (flaps). Guarded by statMu.
	drops  map[netip.Addr]uint64
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewSpeaker starts an embedded GoBGP with cfg and connects to its peers.
// cfg.RouterID is required (the caller derives the default); zero fields
// get the defaults of Parse (see withDefaults). The speaker lives until
// Stop; ctx is used for logging and the start only.
func NewSpeaker(ctx context.Context, cfg Config) (*Speaker, error) {
	return newSpeaker(ctx, cfg, startGoBGPRouter)
}

// newSpeaker is NewSpeaker with another router implementation.
func newSpeaker(ctx context.Context, cfg Config, newRouter newRouterFunc) (*Speaker, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	passwords, err := readPasswords(cfg.Peers)
	if err != nil {
		return nil, err
	}
	if err := checkAPIAddress(cfg.APIAddress); err != nil {
		return nil, err
	}
	logger := klog.FromContext(ctx).WithName("bgp")
	warnMD5Listener(logger, &cfg, passwords)
	loopCtx, cancel := context.WithCancel(klog.NewContext(context.WithoutCancel(ctx), logger))
	s := &Speaker{
		log:       logger,
		newRouter: newRouter,
		cfg:       cfg,
		vips:      map[netip.Prefix]*vipState{},
		routes:    map[netip.Prefix]*routeState{},
		racks:     map[string]uint32{},
		events:    make(chan peerEvent, 256),
		drops:     map[netip.Addr]uint64{},
		cancel:    cancel,
	}
	r, err := s.startRouter(ctx, &cfg)
	if err != nil {
		cancel()
		return nil, err
	}
	s.router = r
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.eventLoop(loopCtx)
	}()
	if err := s.applyPeers(ctx, &cfg, passwords); err != nil {
		s.Stop()
		return nil, err
	}
	logger.Info("BGP speaker started", "asn", cfg.ASN, "routerID", cfg.RouterID, "listenPort", cfg.ListenPort, "peers", len(cfg.Peers), "maxPathsPerPrefix", cfg.MaxPathsPerPrefix)
	return s, nil
}

func (s *Speaker) startRouter(ctx context.Context, cfg *Config) (router, error) {
	g := routerGlobal{
		ASN:             cfg.ASN,
		RouterID:        cfg.RouterID,
		ListenPort:      cfg.ListenPort,
		ListenAddresses: cfg.ListenAddresses,
		APIAddress:      cfg.APIAddress,
	}
	return s.newRouter(klog.NewContext(ctx, s.log), g, s.onEvent)
}

func (s *Speaker) usable() error {
	if s.stopped {
		return ErrStopped
	}
	if s.router == nil {
		return fmt.Errorf("bgp speaker has no running GoBGP after a failed reconfiguration")
	}
	return nil
}

// needsRestart reports whether going from old to cfg needs a new router.
func needsRestart(old, cfg *Config) bool {
	return old.ASN != cfg.ASN || old.RouterID != cfg.RouterID || old.ListenPort != cfg.ListenPort ||
		old.APIAddress != cfg.APIAddress || !slices.Equal(old.ListenAddresses, cfg.ListenAddresses)
}

// Reconfigure applies a new configuration at runtime. Routers that were
// added, removed or changed are connected, disconnected or reconnected;
// the sessions of unchanged routers are untouched, and so they are by a
// change of the export prefixes. A change of ASN, router ID, listen port,
// listen addresses or API address restarts the embedded GoBGP, and with it
// every session. Peers is not blocked meanwhile.
func (s *Speaker) Reconfigure(ctx context.Context, cfg Config) error {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return err
	}
	passwords, err := readPasswords(cfg.Peers)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return ErrStopped
	}
	log := klog.FromContext(ctx).WithName("bgp")
	old := s.cfg
	if old.APIAddress != cfg.APIAddress {
		if err := checkAPIAddress(cfg.APIAddress); err != nil {
			return err
		}
	}
	warnMD5Listener(log, &cfg, passwords)
	if s.router == nil || needsRestart(&old, &cfg) {
		log.Info("Restarting the embedded GoBGP for new global settings", "asn", cfg.ASN, "routerID", cfg.RouterID, "listenPort", cfg.ListenPort)
		return s.restart(ctx, &cfg, passwords)
	}
	return s.applyPeers(ctx, &cfg, passwords)
}

// restart replaces the router. The new RIB is empty, so everything
// desired is announced afresh. If the new settings do not start, the old
// ones are restored. Callers hold mu.
func (s *Speaker) restart(ctx context.Context, cfg *Config, passwords map[string]string) error {
	old := s.setRouter(nil)
	if old != nil {
		old.stop()
	}
	for _, v := range s.vips {
		v.paths = map[string]*pathState{}
		v.orphans = nil
		v.nextID = 1
	}
	s.forgetRoutePaths()
	s.statMu.Lock()
	s.applied = nil
	s.counters = [2]familyCounters{}
	s.statMu.Unlock()
	s.views = views{}

	r, err := s.startRouter(ctx, cfg)
	if err != nil {
		prev := s.cfg
		if r2, err2 := s.startRouter(ctx, &prev); err2 == nil {
			s.setRouter(r2)
			prevPasswords, _ := readPasswords(prev.Peers)
			if err3 := s.applyPeers(ctx, &prev, prevPasswords); err3 != nil {
				return fmt.Errorf("%w (and restoring the previous settings: %w)", err, err3)
			}
		}
		return err
	}
	s.setRouter(r)
	return s.applyPeers(ctx, cfg, passwords)
}

// setRouter swaps the router and returns the previous one.
func (s *Speaker) setRouter(r router) router {
	s.routerMu.Lock()
	defer s.routerMu.Unlock()
	old := s.router
	s.router = r
	return old
}

// Announce sets the desired state of one VIP and sends only the
// difference from what is announced: new paths, paths whose attributes
// or next hop changed (as an implicit replacement under the same
// identifier), and withdrawals. Next hops that repeat an earlier one's
// address are dropped (see Advertisement.NextHops).
func (s *Speaker) Announce(ctx context.Context, adv Advertisement) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(); err != nil {
		return err
	}
	n, err := s.normalize(ctx, adv)
	if err != nil {
		return err
	}
	return s.reconcile(ctx, n.Prefix, &n)
}

// Withdraw withdraws every path of the VIP.
func (s *Speaker) Withdraw(ctx context.Context, prefix netip.Prefix) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(); err != nil {
		return err
	}
	return s.reconcile(ctx, prefix, nil)
}

// SetAll makes the desired state exactly advs: VIPs not in advs are
// withdrawn. Invalid advertisements are reported in the returned error
// and leave their VIP as it was; the valid ones are applied regardless.
func (s *Speaker) SetAll(ctx context.Context, advs []Advertisement) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(); err != nil {
		return err
	}
	var errs []error
	desired := make(map[netip.Prefix]*Advertisement, len(advs))
	skip := map[netip.Prefix]bool{}
	for _, adv := range advs {
		n, err := s.normalize(ctx, adv)
		if err != nil {
			errs = append(errs, err)
			skip[adv.Prefix] = true
			continue
		}
		if _, dup := desired[n.Prefix]; dup {
			errs = append(errs, fmt.Errorf("%w %s: listed twice", ErrInvalidAdvertisement, n.Prefix))
			continue
		}
		desired[n.Prefix] = &n
	}
	var work []reconcileItem
	for p := range s.vips {
		if _, ok := desired[p]; !ok && !skip[p] {
			work = append(work, reconcileItem{prefix: p})
		}
	}
	gone := len(work)
	for p, adv := range desired {
		work = append(work, reconcileItem{prefix: p, adv: adv})
	}
	errs = append(errs, s.reconcileMany(ctx, work)...)
	// V(4): the announcer calls this after every change in the cluster.
	klog.FromContext(ctx).WithName("bgp").V(4).Info("Set all VIPs", "vips", len(desired), "withdrawn", gone, "errors", len(errs))
	return errors.Join(errs...)
}

// normalize checks adv against the configuration and normalizes it,
// logging the next hops it dropped. Callers hold mu.
func (s *Speaker) normalize(ctx context.Context, adv Advertisement) (Advertisement, error) {
	n, dropped, err := normalize(adv, s.cfg.ASN, s.cfg.ExportPrefixes)
	if err != nil {
		return n, err
	}
	if len(dropped) > 0 {
		klog.FromContext(ctx).WithName("bgp").V(2).Info("Dropped next hops that repeat an earlier node's address", "vip", n.Prefix, "dropped", dropped)
	}
	return n, nil
}

// Stop closes every session and stops the embedded GoBGP. It cancels the
// speaker's own goroutines before stopping GoBGP and returns when they
// have ended. Methods called after Stop return ErrStopped.
func (s *Speaker) Stop() {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	s.stopped = true
	s.mu.Unlock()

	s.cancel()
	s.wg.Wait()
	if r := s.setRouter(nil); r != nil {
		r.stop()
	}
	s.log.Info("BGP speaker stopped")
}
