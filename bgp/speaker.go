package bgp

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	api "github.com/osrg/gobgp/v3/api"
	"golang.org/x/sys/unix"
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
type Speaker struct {
	log logr.Logger

	// mu serializes configuration and path changes.
	mu      sync.Mutex
	stopped bool
	cfg     Config
	views   views
	vips    map[netip.Prefix]*vipState
	racks   map[string]uint32 // rack name -> marker index, allocated on first sight

	// srvMu guards srv against being stopped while Peers or the event
	// loop use it. Writers also hold mu.
	srvMu sync.RWMutex
	srv   *gobgpServer

	// statMu guards what Peers reads: the applied peers and counters.
	statMu   sync.Mutex
	applied  []appliedPeer
	counters [2]familyCounters

	events        chan peerEvent
	droppedEvents atomic.Uint64
	cancel        context.CancelFunc
	wg            sync.WaitGroup
}

// vipState is one VIP: what is desired and what is announced.
type vipState struct {
	adv   *Advertisement // desired; nil while only withdrawals remain
	gen   uint32         // bumped when the desired attributes change
	attrs *vipAttrs      // marshalled attributes of adv, built on demand
	paths map[string]*pathState
	// orphans are replaced paths still to withdraw (a node that moved
	// rack is announced anew before its old path goes).
	orphans []*pathState
	// nextID is the next path identifier. Identifiers are allocated in
	// order and never reused while the VIP has paths, which is exactly
	// how GoBGP v3 numbers a prefix's local paths on the wire: routers
	// therefore see these identifiers.
	nextID uint32
}

// pathState is one announced path.
type pathState struct {
	id      uint32
	nextHop netip.Addr
	rack    string
	weight  uint64
	gen     uint32 // vipState.gen it was announced with
}

type appliedPeer struct {
	Peer
	key string // everything that GoBGP's neighbor depends on
}

type peerEvent struct {
	addr  string
	state SessionState
}

// NewSpeaker starts an embedded GoBGP with cfg and connects to its peers.
// cfg.RouterID is required (the caller derives the default); zero timers
// and maxPathsPerPrefix get the defaults of Parse. The speaker lives until
// Stop; ctx is used for logging and the start only.
func NewSpeaker(ctx context.Context, cfg Config) (*Speaker, error) {
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
		log:    logger,
		cfg:    cfg,
		vips:   map[netip.Prefix]*vipState{},
		racks:  map[string]uint32{},
		events: make(chan peerEvent, 256),
		cancel: cancel,
	}
	srv, err := s.startServer(ctx, &cfg)
	if err != nil {
		cancel()
		return nil, err
	}
	s.srv = srv
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

func (c Config) withDefaults() Config {
	if c.HoldTime == 0 {
		c.HoldTime = DefaultHoldTime
	}
	if c.KeepaliveTime == 0 {
		c.KeepaliveTime = min(DefaultKeepaliveTime, (c.HoldTime / 3).Truncate(time.Second))
	}
	if c.GracefulRestart.Enabled && c.GracefulRestart.RestartTime == 0 {
		c.GracefulRestart.RestartTime = DefaultRestartTime
	}
	if c.MaxPathsPerPrefix == 0 {
		c.MaxPathsPerPrefix = DefaultMaxPathsPerPrefix
	}
	c.Peers = slices.Clone(c.Peers)
	for i := range c.Peers {
		if c.Peers[i].Port == 0 {
			c.Peers[i].Port = DefaultPeerPort
		}
	}
	return c
}

// validate checks what the speaker relies on; Parse has already reported
// configuration mistakes in detail.
func (c *Config) validate() error {
	var errs []error
	if msg := validASN(int64(c.ASN)); msg != "" {
		errs = append(errs, fmt.Errorf("asn %d: %s", c.ASN, msg))
	}
	if !c.RouterID.Is4() || c.RouterID.IsUnspecified() {
		errs = append(errs, fmt.Errorf("router ID %q: want a non-zero IPv4 address", c.RouterID))
	}
	if c.ListenPort < 0 || c.ListenPort > 65535 {
		errs = append(errs, fmt.Errorf("listen port %d: want 0-65535", c.ListenPort))
	}
	if c.MaxPathsPerPrefix < 1 || c.MaxPathsPerPrefix > maxMaxPathsPerPrefix {
		errs = append(errs, fmt.Errorf("maxPathsPerPrefix %d: want 1-%d", c.MaxPathsPerPrefix, maxMaxPathsPerPrefix))
	}
	if c.HoldTime < minHoldTime || c.HoldTime > maxHoldTime || c.KeepaliveTime < time.Second || c.KeepaliveTime >= c.HoldTime {
		errs = append(errs, fmt.Errorf("hold time %s, keepalive %s: want 3s <= hold <= 65535s and 1s <= keepalive < hold", c.HoldTime, c.KeepaliveTime))
	}
	if c.APIAddress.IsValid() && !c.APIAddress.Addr().IsLoopback() {
		errs = append(errs, fmt.Errorf("API address %s: must be a loopback address", c.APIAddress))
	}
	names := map[string]bool{}
	addrs := map[netip.Addr]bool{}
	for _, p := range c.Peers {
		switch {
		case p.Name == "" || names[p.Name]:
			errs = append(errs, fmt.Errorf("peer %q: names must be non-empty and unique", p.Name))
		case !p.Address.IsValid() || addrs[p.Address.Unmap()]:
			errs = append(errs, fmt.Errorf("peer %q: address %q must be valid and unique", p.Name, p.Address))
		case validASN(int64(p.ASN)) != "":
			errs = append(errs, fmt.Errorf("peer %q: asn %d: %s", p.Name, p.ASN, validASN(int64(p.ASN))))
		}
		names[p.Name] = true
		addrs[p.Address.Unmap()] = true
	}
	if len(errs) > 0 {
		return fmt.Errorf("invalid BGP configuration: %w", errors.Join(errs...))
	}
	return nil
}

// checkAPIAddress makes sure that the gRPC API can listen on a: GoBGP
// listens asynchronously and would only log the failure.
func checkAPIAddress(a netip.AddrPort) error {
	if !a.IsValid() {
		return nil
	}
	l, err := net.Listen("tcp", a.String())
	if err != nil {
		return fmt.Errorf("GoBGP API address: %w", err)
	}
	return l.Close()
}

// warnMD5Listener warns when the speaker listens and some peer has a
// password, but TCP MD5 cannot protect the listening socket: Go 1.24+
// listeners use MPTCP, on which Linux refuses TCP_MD5SIG, unless the
// binary is built with //go:debug multipathtcp=0. Sessions then come up
// only from our side, as if the speaker did not listen.
func warnMD5Listener(log logr.Logger, cfg *Config, passwords map[string]string) {
	if cfg.ListenPort <= 0 || len(passwords) == 0 {
		return
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return
	}
	defer l.Close()
	sc, err := l.(*net.TCPListener).SyscallConn()
	if err != nil {
		return
	}
	var serr error
	_ = sc.Control(func(fd uintptr) {
		sig := unix.TCPMD5Sig{Keylen: 1}
		sig.Addr.Family = unix.AF_INET
		sig.Key[0] = 'x'
		serr = unix.SetsockoptTCPMD5Sig(int(fd), unix.IPPROTO_TCP, unix.TCP_MD5SIG, &sig)
	})
	if serr != nil {
		log.Error(serr, "TCP MD5 cannot protect the listening socket: routers with a password cannot connect to the speaker, only the speaker to them; build the binary with //go:debug multipathtcp=0 (Go 1.24+ listeners use MPTCP)",
			"listenPort", cfg.ListenPort)
	}
}

func readPasswords(peers []Peer) (map[string]string, error) {
	out := map[string]string{}
	for _, p := range peers {
		if p.PasswordFile == "" {
			continue
		}
		pw, err := readPassword(p.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("peer %q: password file %s: %w", p.Name, p.PasswordFile, err)
		}
		out[p.Name] = pw
	}
	return out, nil
}

func (s *Speaker) startServer(ctx context.Context, cfg *Config) (*gobgpServer, error) {
	listen := int32(-1) // never listen
	if cfg.ListenPort > 0 {
		listen = cfg.ListenPort
	}
	apiAddr := ""
	if cfg.APIAddress.IsValid() {
		apiAddr = cfg.APIAddress.String()
	}
	srv, err := startGoBGP(ctx, s.log, newGlobal(cfg, listen), apiAddr,
		&api.WatchEventRequest{Peer: &api.WatchEventRequest_Peer{}}, s.onEvent)
	if err != nil {
		return nil, err
	}
	// Policies before anything else: until they exist GoBGP would accept
	// routes from routers and send our paths to every router.
	if err := srv.bgp.SetPolicies(ctx, policies(cfg.ASN, nil, s.rackIndex)); err != nil {
		srv.stop(s.log)
		return nil, fmt.Errorf("setting the BGP policies: %w", err)
	}
	if err := assignPolicies(ctx, srv.bgp); err != nil {
		srv.stop(s.log)
		return nil, err
	}
	return srv, nil
}

func newGlobal(cfg *Config, listen int32) *api.Global {
	return &api.Global{Asn: cfg.ASN, RouterId: cfg.RouterID.String(), ListenPort: listen}
}

// rackIndex returns the marker index of rack, allocating one on first
// sight. Indexes are never reused, so two racks never share a marker.
// Callers hold mu.
func (s *Speaker) rackIndex(rack string) uint32 {
	if i, ok := s.racks[rack]; ok {
		return i
	}
	i := uint32(len(s.racks)) + 1
	s.racks[rack] = i
	return i
}

func (s *Speaker) usable() error {
	if s.stopped {
		return ErrStopped
	}
	if s.srv == nil {
		return fmt.Errorf("bgp speaker has no running GoBGP after a failed reconfiguration")
	}
	return nil
}

// Reconfigure applies a new configuration at runtime. Routers that were
// added, removed or changed are connected, disconnected or reconnected;
// the sessions of unchanged routers are untouched. A change of ASN,
// router ID, listen port or API address restarts the embedded GoBGP, and
// with it every session.
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
	if s.srv == nil || old.ASN != cfg.ASN || old.RouterID != cfg.RouterID || old.ListenPort != cfg.ListenPort || old.APIAddress != cfg.APIAddress {
		log.Info("Restarting the embedded GoBGP for new global settings", "asn", cfg.ASN, "routerID", cfg.RouterID, "listenPort", cfg.ListenPort)
		if err := s.restart(ctx, &cfg, passwords); err != nil {
			return err
		}
		return nil
	}
	if err := s.applyPeers(ctx, &cfg, passwords); err != nil {
		return err
	}
	s.cfg = cfg
	return nil
}

// restart replaces the GoBGP server. The new RIB is empty, so everything
// desired is announced afresh. If the new settings do not start, the old
// ones are restored.
func (s *Speaker) restart(ctx context.Context, cfg *Config, passwords map[string]string) error {
	s.srvMu.Lock()
	old := s.srv
	s.srv = nil
	s.srvMu.Unlock()
	if old != nil {
		old.stop(s.log)
	}
	for _, v := range s.vips {
		v.paths = map[string]*pathState{}
		v.orphans = nil
		v.nextID = 1
	}
	s.statMu.Lock()
	s.applied = nil
	s.counters = [2]familyCounters{}
	s.statMu.Unlock()

	srv, err := s.startServer(ctx, cfg)
	if err != nil {
		prev := s.cfg
		if srv2, err2 := s.startServer(ctx, &prev); err2 == nil {
			s.setServer(srv2)
			s.views = views{}
			prevPasswords, _ := readPasswords(prev.Peers)
			if err3 := s.applyPeers(ctx, &prev, prevPasswords); err3 != nil {
				return fmt.Errorf("%w (and restoring the previous settings: %w)", err, err3)
			}
		}
		return err
	}
	s.setServer(srv)
	s.cfg = *cfg
	s.views = views{}
	return s.applyPeers(ctx, cfg, passwords)
}

func (s *Speaker) setServer(srv *gobgpServer) {
	s.srvMu.Lock()
	s.srv = srv
	s.srvMu.Unlock()
}

func peerKey(p *Peer, password string, cfg *Config) string {
	return fmt.Sprintf("%s|%s|%d|%d|%s|%d|%s|%q|%s|%s|%v|%s|%d",
		p.Name, p.Address, p.ASN, p.Port, p.Rack, p.EBGPMultihop, p.LocalAddress, password,
		cfg.HoldTime, cfg.KeepaliveTime, cfg.GracefulRestart.Enabled, cfg.GracefulRestart.RestartTime, cfg.MaxPathsPerPrefix)
}

// applyPeers makes GoBGP's neighbors, the export policy and the announced
// paths match cfg. Callers hold mu.
func (s *Speaker) applyPeers(ctx context.Context, cfg *Config, passwords map[string]string) error {
	log := klog.FromContext(ctx).WithName("bgp")
	want := make(map[string]appliedPeer, len(cfg.Peers))
	for i := range cfg.Peers {
		p := &cfg.Peers[i]
		want[p.Name] = appliedPeer{Peer: *p, key: peerKey(p, passwords[p.Name], cfg)}
	}
	s.statMu.Lock()
	current := slices.Clone(s.applied)
	s.statMu.Unlock()

	// 1. Disconnect removed and changed routers.
	var kept []appliedPeer
	for i, a := range current {
		if w, ok := want[a.Name]; ok && w.key == a.key {
			kept = append(kept, a)
			continue
		}
		if err := s.srv.bgp.DeletePeer(ctx, &api.DeletePeerRequest{Address: a.Address.String()}); err != nil {
			s.setApplied(append(kept, current[i:]...))
			return fmt.Errorf("removing BGP peer %q (%s): %w", a.Name, a.Address, err)
		}
		log.Info("Removed BGP peer", "peer", a.Name, "address", a.Address)
	}
	s.setApplied(kept)

	// 2. Export policy for the new set of routers, before their sessions
	// exist, so that a new router gets exactly its paths.
	for _, p := range cfg.Peers {
		if p.Rack != "" {
			s.rackIndex(p.Rack)
		}
	}
	if err := s.srv.bgp.SetPolicies(ctx, policies(cfg.ASN, cfg.Peers, s.rackIndex)); err != nil {
		return fmt.Errorf("setting the BGP export policy: %w", err)
	}

	// 3. The paths: which nodes to announce depends on the routers' racks
	// and on maxPathsPerPrefix.
	nv := viewsOf(cfg.Peers)
	if !nv.equal(s.views) || cfg.MaxPathsPerPrefix != s.cfg.MaxPathsPerPrefix {
		s.views = nv
		s.cfg.MaxPathsPerPrefix = cfg.MaxPathsPerPrefix
		if err := s.reconcileAll(ctx); err != nil {
			return err
		}
	}

	// 4. Connect new and changed routers.
	isKept := make(map[string]bool, len(kept))
	for _, a := range kept {
		isKept[a.Name] = true
	}
	applied := kept
	for i := range cfg.Peers {
		p := &cfg.Peers[i]
		if isKept[p.Name] {
			continue
		}
		if err := s.srv.bgp.AddPeer(ctx, &api.AddPeerRequest{Peer: apiPeer(p, passwords[p.Name], cfg)}); err != nil {
			s.setApplied(applied)
			return fmt.Errorf("adding BGP peer %q (%s): %w", p.Name, p.Address, err)
		}
		applied = append(applied, want[p.Name])
		log.Info("Added BGP peer", "peer", p.Name, "address", p.Address, "asn", p.ASN, "rack", p.Rack, "md5", passwords[p.Name] != "")
	}
	// Keep the configuration's order for Peers.
	order := make(map[string]int, len(cfg.Peers))
	for i, p := range cfg.Peers {
		order[p.Name] = i
	}
	slices.SortFunc(applied, func(a, b appliedPeer) int { return cmp.Compare(order[a.Name], order[b.Name]) })
	s.setApplied(applied)
	return nil
}

func (s *Speaker) setApplied(a []appliedPeer) {
	s.statMu.Lock()
	s.applied = slices.Clone(a)
	s.statMu.Unlock()
}

// Announce sets the desired state of one VIP and sends only the
// difference from what is announced: new paths, paths whose attributes
// or next hop changed (as an implicit replacement under the same
// identifier), and withdrawals.
func (s *Speaker) Announce(ctx context.Context, adv Advertisement) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(); err != nil {
		return err
	}
	n, err := normalize(adv, s.cfg.ASN)
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
		n, err := normalize(adv, s.cfg.ASN)
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

// reconcileAll re-reconciles every VIP against its desired state, after
// the routers' racks or maxPathsPerPrefix changed. Callers hold mu.
func (s *Speaker) reconcileAll(ctx context.Context) error {
	work := make([]reconcileItem, 0, len(s.vips))
	for p, v := range s.vips {
		work = append(work, reconcileItem{prefix: p, adv: v.adv})
	}
	return errors.Join(s.reconcileMany(ctx, work)...)
}

type reconcileItem struct {
	prefix netip.Prefix
	adv    *Advertisement // nil: withdraw
}

// reconcileWorkers is how many VIPs are reconciled at once. Every GoBGP
// call is a round trip to GoBGP's single server loop; with several VIPs
// in flight the loop never waits for a caller to wake up, which doubles
// the announcement rate. The paths of one VIP stay in order.
const reconcileWorkers = 8

// reconcileMany reconciles many VIPs, withdrawals first, several at a time.
// Callers hold mu.
func (s *Speaker) reconcileMany(ctx context.Context, work []reconcileItem) []error {
	slices.SortFunc(work, func(a, b reconcileItem) int {
		if (a.adv == nil) != (b.adv == nil) {
			if a.adv == nil {
				return -1
			}
			return 1
		}
		return a.prefix.Compare(b.prefix)
	})
	// Sequential: map changes and marker allocation.
	states := make([]*vipState, len(work))
	for i, w := range work {
		v := s.vips[w.prefix]
		if v == nil && w.adv != nil {
			v = &vipState{paths: map[string]*pathState{}, nextID: 1}
			s.vips[w.prefix] = v
		}
		states[i] = v
		if w.adv != nil {
			for _, h := range w.adv.NextHops {
				if h.Rack != "" {
					s.rackIndex(h.Rack)
				}
			}
		}
	}
	var (
		mu   sync.Mutex
		errs []error
		next atomic.Int64
		wg   sync.WaitGroup
	)
	for range min(reconcileWorkers, len(work)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(work) || ctx.Err() != nil {
					return
				}
				if states[i] == nil {
					continue
				}
				if err := s.reconcileVIP(ctx, work[i].prefix, states[i], work[i].adv); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		errs = append(errs, fmt.Errorf("reconciling %d VIPs: %w", len(work), err))
	}
	for i, w := range work {
		if v := states[i]; v != nil {
			s.forgetIfEmpty(w.prefix, v)
		}
	}
	return errs
}

// forgetIfEmpty resets a VIP without paths and drops it when nothing is
// desired either. Callers hold mu.
func (s *Speaker) forgetIfEmpty(prefix netip.Prefix, v *vipState) {
	if len(v.paths) == 0 && len(v.orphans) == 0 {
		// GoBGP drops a prefix with no paths, and with it its
		// identifier numbering.
		v.nextID = 1
		if v.adv == nil {
			delete(s.vips, prefix)
		}
	}
}

// reconcile brings the announced paths of one VIP to adv (nil: none).
// Callers hold mu.
func (s *Speaker) reconcile(ctx context.Context, prefix netip.Prefix, adv *Advertisement) error {
	v := s.vips[prefix]
	if v == nil {
		if adv == nil {
			return nil
		}
		v = &vipState{paths: map[string]*pathState{}, nextID: 1}
		s.vips[prefix] = v
	}
	err := s.reconcileVIP(ctx, prefix, v, adv)
	s.forgetIfEmpty(prefix, v)
	return err
}

// reconcileVIP brings the announced paths of v to adv. Order: new paths
// first, then replacements, then withdrawals, so that a VIP that keeps
// some node never has a moment without a path, and a node that moves rack
// is announced under its new identifier before the old one goes. It
// touches only v, the counters (under statMu) and GoBGP, so that
// different VIPs can be reconciled at once; callers hold mu.
func (s *Speaker) reconcileVIP(ctx context.Context, prefix netip.Prefix, v *vipState, adv *Advertisement) error {
	before := s.contribution(prefix, v)
	defer func() {
		after := s.contribution(prefix, v)
		s.statMu.Lock()
		s.counters[before.fam].add(before, -1)
		s.counters[after.fam].add(after, +1)
		s.statMu.Unlock()
	}()

	if adv != nil && (v.adv == nil || !sameAttributes(v.adv, adv)) {
		v.gen++
		v.attrs = nil
	}
	v.adv = adv
	var want []rankedHop
	if adv != nil {
		want = s.views.choose(rank(prefix.Addr(), adv.NextHops), s.cfg.MaxPathsPerPrefix)
	}
	attrs := func() *vipAttrs {
		if v.attrs == nil {
			v.attrs = newVIPAttrs(adv)
		}
		return v.attrs
	}

	var added, replaced, withdrawn int
	wanted := make(map[string]bool, len(want))
	for _, h := range want {
		wanted[h.Node] = true
		p := v.paths[h.Node]
		if p != nil && p.rack == h.Rack {
			continue
		}
		// A new path, or the node moved rack: the rack's marker decides
		// which routers accept the path, and GoBGP does not withdraw
		// a replaced path from routers that no longer accept it. So it
		// becomes a new path and the old one is withdrawn below.
		np := &pathState{id: v.nextID, nextHop: h.Addr, rack: h.Rack, weight: h.weight, gen: v.gen}
		if err := s.addPath(ctx, attrs(), np); err != nil {
			return fmt.Errorf("announcing %s via %s (%s): %w", prefix, h.Node, h.Addr, err)
		}
		v.nextID++
		if p != nil {
			v.orphans = append(v.orphans, p)
		}
		v.paths[h.Node] = np
		added++
	}
	for _, h := range want {
		p := v.paths[h.Node]
		if p.gen == v.gen && p.nextHop == h.Addr {
			continue
		}
		np := *p
		np.nextHop, np.gen = h.Addr, v.gen
		if err := s.addPath(ctx, attrs(), &np); err != nil {
			return fmt.Errorf("updating %s via %s (%s): %w", prefix, h.Node, h.Addr, err)
		}
		*p = np
		replaced++
	}
	for node, p := range v.paths {
		if wanted[node] {
			continue
		}
		if err := s.deletePath(ctx, prefix, p); err != nil {
			return fmt.Errorf("withdrawing %s via %s (%s): %w", prefix, node, p.nextHop, err)
		}
		delete(v.paths, node)
		withdrawn++
	}
	for len(v.orphans) > 0 {
		p := v.orphans[0]
		if err := s.deletePath(ctx, prefix, p); err != nil {
			return fmt.Errorf("withdrawing the previous path of %s via %s: %w", prefix, p.nextHop, err)
		}
		v.orphans = v.orphans[1:]
		withdrawn++
	}
	if added+replaced+withdrawn > 0 {
		if l := klog.FromContext(ctx).WithName("bgp").V(4); l.Enabled() {
			l.Info("Reconciled VIP", "vip", prefix, "paths", len(v.paths), "added", added, "replaced", replaced, "withdrawn", withdrawn)
		}
	}
	return nil
}

func (s *Speaker) addPath(ctx context.Context, a *vipAttrs, p *pathState) error {
	var m LargeCommunity
	if p.rack != "" {
		m = marker(s.cfg.ASN, s.rackIndex(p.rack))
	}
	_, err := s.srv.bgp.AddPath(ctx, &api.AddPathRequest{Path: a.apiPath(p.id, p.nextHop, med(p.weight), m, p.rack != "")})
	return err
}

func (s *Speaker) deletePath(ctx context.Context, prefix netip.Prefix, p *pathState) error {
	return s.srv.bgp.DeletePath(ctx, &api.DeletePathRequest{Path: withdrawPath(prefix, p.id, p.nextHop)})
}

// contribution is the VIP's share of the counters behind Peers.
func (s *Speaker) contribution(prefix netip.Prefix, v *vipState) contribution {
	c := contribution{fam: familyIndex(prefix.Addr()), paths: len(v.paths)}
	c.capped = min(c.paths, s.cfg.MaxPathsPerPrefix)
	var best *pathState
	for _, p := range v.paths {
		if p.rack != "" {
			if c.byRack == nil {
				c.byRack = map[string]int{}
			}
			c.byRack[p.rack]++
		}
		if best == nil || p.weight > best.weight {
			best = p
		}
	}
	if best != nil {
		c.bestRack = best.rack
	}
	return c
}

// onEvent is GoBGP's watcher callback: it must never block.
func (s *Speaker) onEvent(r *api.WatchEventResponse) {
	p := r.GetPeer()
	if p == nil || p.Type != api.WatchEventResponse_PeerEvent_STATE || p.Peer == nil || p.Peer.State == nil {
		return
	}
	ev := peerEvent{addr: p.Peer.State.NeighborAddress, state: sessionState(p.Peer.State.SessionState)}
	select {
	case s.events <- ev:
	default:
		s.droppedEvents.Add(1)
	}
}

func (s *Speaker) eventLoop(ctx context.Context) {
	log := klog.FromContext(ctx)
	last := map[string]SessionState{}
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-s.events:
			s.handlePeerEvent(log, ev, last[ev.addr])
			last[ev.addr] = ev.state
		}
	}
}

// handlePeerEvent logs a session's state change: coming up and going down
// at V(0), the attempts in between at V(2).
func (s *Speaker) handlePeerEvent(log logr.Logger, ev peerEvent, prev SessionState) {
	addr, err := netip.ParseAddr(ev.addr)
	if err != nil {
		return
	}
	var name string
	s.statMu.Lock()
	for _, a := range s.applied {
		if a.Address == addr {
			name = a.Name
		}
	}
	s.statMu.Unlock()
	switch {
	case ev.state == StateEstablished:
		log.Info("BGP session established", "peer", name, "address", addr)
	case prev == StateEstablished:
		log.Info("BGP session down", "peer", name, "address", addr, "state", ev.state)
	default:
		log.V(2).Info("BGP session state changed", "peer", name, "address", addr, "state", ev.state)
	}
	if ev.state != StateEstablished {
		return
	}
	for _, st := range s.Peers() {
		if st.Address != addr || !st.SinglePath {
			continue
		}
		for _, f := range st.Families {
			if f.Negotiated && !f.AddPath {
				log.Info("Warning: router did not negotiate ADD-PATH; it gets one path per VIP, the path via the node of highest rendezvous weight",
					"peer", name, "address", addr, "family", f.Family)
			}
		}
	}
}

// Peers reports every configured router: session state, per family
// whether it was negotiated with ADD-PATH, and how many paths the speaker
// sends it.
func (s *Speaker) Peers() []PeerStatus {
	live := map[netip.Addr]*api.Peer{}
	s.srvMu.RLock()
	if s.srv != nil {
		_ = s.srv.bgp.ListPeer(context.Background(), &api.ListPeerRequest{}, func(p *api.Peer) {
			if p.Conf == nil {
				return
			}
			if a, err := netip.ParseAddr(p.Conf.NeighborAddress); err == nil {
				live[a] = p
			}
		})
	}
	s.srvMu.RUnlock()

	s.statMu.Lock()
	defer s.statMu.Unlock()
	out := make([]PeerStatus, 0, len(s.applied))
	for _, a := range s.applied {
		st := PeerStatus{Name: a.Name, Address: a.Address, ASN: a.ASN, Rack: a.Rack, State: StateUnknown}
		lp := live[a.Address]
		if lp != nil && lp.State != nil {
			st.State = sessionState(lp.State.SessionState)
		}
		if lp != nil && lp.Timers != nil && lp.Timers.State != nil {
			ts := lp.Timers.State.Downtime
			if st.State == StateEstablished {
				ts = lp.Timers.State.Uptime
			}
			if ts != nil && ts.GetSeconds() > 0 {
				st.Since = ts.AsTime()
			}
		}
		negotiated, addPath := remoteCapabilities(lp)
		for fi, fam := range []Family{IPv4Unicast, IPv6Unicast} {
			fs := FamilyStatus{Family: fam, Negotiated: st.State == StateEstablished && negotiated[fam]}
			if fs.Negotiated {
				fs.AddPath = addPath[fam]
				c := &s.counters[fi]
				switch {
				case fs.AddPath && a.Rack == "":
					fs.Paths = c.capped
				case fs.AddPath:
					fs.Paths = c.rackPaths[a.Rack]
				case a.Rack == "":
					fs.Paths = c.vips
				default:
					fs.Paths = c.rackBest[a.Rack]
					fs.MissingVIPs = c.rackVIPs[a.Rack] - c.rackBest[a.Rack]
				}
				if !fs.AddPath {
					st.SinglePath = true
				}
			}
			st.Families = append(st.Families, fs)
		}
		out = append(out, st)
	}
	return out
}

func familyName(f *api.Family) Family {
	switch {
	case f == nil || f.Safi != api.Family_SAFI_UNICAST:
		return ""
	case f.Afi == api.Family_AFI_IP:
		return IPv4Unicast
	case f.Afi == api.Family_AFI_IP6:
		return IPv6Unicast
	}
	return ""
}

// remoteCapabilities reads the router's OPEN: the unicast families it
// offered (we offer both; a router that offers no multiprotocol capability
// speaks IPv4 unicast only, RFC 4760) and those for which it can receive
// several paths (ADD-PATH, RFC 7911; we always offer to send). GoBGP's
// ListPeer does not report the negotiated ADD-PATH modes themselves.
func remoteCapabilities(p *api.Peer) (families, addPath map[Family]bool) {
	families, addPath = map[Family]bool{}, map[Family]bool{}
	if p == nil || p.State == nil {
		return families, addPath
	}
	mp := false
	for _, c := range p.State.RemoteCap {
		m, err := c.UnmarshalNew()
		if err != nil {
			continue
		}
		switch v := m.(type) {
		case *api.MultiProtocolCapability:
			mp = true
			if f := familyName(v.Family); f != "" {
				families[f] = true
			}
		case *api.AddPathCapability:
			for _, t := range v.Tuples {
				if f := familyName(t.Family); f != "" &&
					(t.Mode == api.AddPathCapabilityTuple_RECEIVE || t.Mode == api.AddPathCapabilityTuple_BOTH) {
					addPath[f] = true
				}
			}
		}
	}
	if !mp {
		families[IPv4Unicast] = true
	}
	return families, addPath
}

// Stop closes every session and stops the embedded GoBGP. It cancels the
// speaker's own goroutines and GoBGP's watcher before stopping GoBGP and
// returns when all of them have ended. Methods called after Stop return
// ErrStopped.
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
	s.srvMu.Lock()
	srv := s.srv
	s.srv = nil
	s.srvMu.Unlock()
	if srv != nil {
		srv.stop(s.log)
	}
	s.log.Info("BGP speaker stopped")
}
