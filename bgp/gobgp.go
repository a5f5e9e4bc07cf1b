package bgp

// This file holds everything that speaks GoBGP: the server's life cycle,
// the logger adapter, and the conversion of our domain types to GoBGP API
// messages. No GoBGP type leaves the package.

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	api "github.com/osrg/gobgp/v3/api"
	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/server"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// serveExitTimeout bounds how long Stop waits for GoBGP's server loop to
// end. It ends within milliseconds; the bound only keeps a future GoBGP
// that no longer calls the timing hook from hanging Stop.
const serveExitTimeout = 10 * time.Second

// gobgpServer is one embedded GoBGP instance.
//
// GoBGP v3's (*BgpServer).Serve never returns: Stop closes the sessions but
// leaves the server loop blocked forever. To leave no goroutine behind,
// stop ends the loop from the inside. GoBGP calls two pieces of our code on
// the loop's goroutine: the logger, while it executes a management
// operation, and the timing hook, after each one. stop's very last
// operation deletes a policy with a name of its own; the logger recognizes
// the name in GoBGP's "delete policy" debug message and sets a flag, and
// the timing hook, seeing the flag once that operation has been answered,
// ends the loop with runtime.Goexit. Every other goroutine has ended
// before: the sessions', and the event watcher's, whose own last act is a
// management operation of its own.
type gobgpServer struct {
	bgp  *server.BgpServer
	id   string
	exit atomic.Bool   // set on the server loop by the logger
	done chan struct{} // closed when Serve's goroutine has ended
	// watchCancel ends the event watcher.
	watchCancel context.CancelFunc
	onEvent     func(*api.WatchEventResponse)

	// up tracks which sessions are Established, from the watcher's
	// events, so that stop can wait for their teardown.
	mu      sync.Mutex
	up      map[string]bool
	changed chan struct{}
}

var (
	_         server.FSMTimingHook = (*gobgpServer)(nil)
	serverIDs atomic.Uint64
)

// watcherLabel is the pprof label of GoBGP's watcher goroutine, so that
// stop can see it end.
const watcherLabel = "baremetal-ccm-gobgp-watcher"

// Observe implements server.FSMTimingHook. It runs on the server loop.
func (g *gobgpServer) Observe(op server.FSMOperation, _, _ time.Duration) {
	if op == server.FSMMgmtOp && g.exit.Load() {
		runtime.Goexit()
	}
}

func (g *gobgpServer) stopPolicy() string { return "baremetal-ccm-stop-" + g.id }

// startGoBGP starts a GoBGP server with the given global configuration.
// onEvent, if not nil, is called on GoBGP's watcher goroutine for every
// event watch selects (peer state changes always); it must not block.
func startGoBGP(ctx context.Context, logger logr.Logger, global *api.Global, apiAddress string, watch *api.WatchEventRequest, onEvent func(*api.WatchEventResponse)) (*gobgpServer, error) {
	g := &gobgpServer{
		id:      strconv.FormatUint(serverIDs.Add(1), 10),
		done:    make(chan struct{}),
		onEvent: onEvent,
		up:      map[string]bool{},
		changed: make(chan struct{}, 1),
	}
	opts := []server.ServerOption{
		server.LoggerOption(&logAdapter{l: logger.WithName("gobgp"), stopPolicy: g.stopPolicy(), exit: &g.exit}),
		server.TimingHookOption(g),
	}
	if apiAddress != "" {
		opts = append(opts, server.GrpcListenAddress(apiAddress))
	}
	g.bgp = server.NewBgpServer(opts...)
	go func() {
		defer close(g.done)
		g.bgp.Serve()
	}()
	if watch == nil {
		watch = &api.WatchEventRequest{}
	}
	if watch.Peer == nil {
		watch.Peer = &api.WatchEventRequest_Peer{}
	}
	// The watcher lives until stop cancels it, whatever happens to the
	// caller's context. Its goroutine inherits the pprof label.
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	g.watchCancel = cancel
	var err error
	pprof.Do(context.Background(), pprof.Labels(watcherLabel, g.id), func(context.Context) {
		err = g.bgp.WatchEvent(wctx, watch, g.handle)
	})
	if err == nil {
		err = g.bgp.StartBgp(ctx, &api.StartBgpRequest{Global: global})
	}
	if err != nil {
		g.stop(logger)
		return nil, fmt.Errorf("starting GoBGP: %w", err)
	}
	return g, nil
}

func (g *gobgpServer) handle(ev *api.WatchEventResponse) {
	if p := ev.GetPeer(); p != nil && p.Type == api.WatchEventResponse_PeerEvent_STATE && p.Peer != nil && p.Peer.State != nil {
		g.mu.Lock()
		g.up[p.Peer.State.NeighborAddress] = p.Peer.State.SessionState == api.PeerState_ESTABLISHED
		g.mu.Unlock()
		select {
		case g.changed <- struct{}{}:
		default:
		}
	}
	if g.onEvent != nil {
		g.onEvent(ev)
	}
}

func (g *gobgpServer) anyUp() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, up := range g.up {
		if up {
			return true
		}
	}
	return false
}

// watcherRunning reports whether GoBGP's watcher goroutine still exists.
func (g *gobgpServer) watcherRunning() bool {
	var buf bytes.Buffer
	_ = pprof.Lookup("goroutine").WriteTo(&buf, 1)
	return bytes.Contains(buf.Bytes(), []byte(`"`+watcherLabel+`":"`+g.id+`"`))
}

// stop closes every session, stops GoBGP and waits for its goroutines.
// The caller guarantees that nothing else calls into the server any more:
// its own goroutines have ended and it holds the locks that API calls take.
func (g *gobgpServer) stop(logger logr.Logger) {
	ctx := context.Background()
	deadline := time.Now().Add(serveExitTimeout)
	// Shut the sessions down first (administratively: the peers stay
	// configured) and wait until GoBGP reports every Established one torn
	// down, which it does after the session's goroutines have ended.
	// StopBgp resets the global configuration while those goroutines may
	// still read it (a data race in GoBGP v3); idle peers read nothing.
	var peers []string
	_ = g.bgp.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
		if p.Conf != nil {
			peers = append(peers, p.Conf.NeighborAddress)
		}
	})
	for _, a := range peers {
		if err := g.bgp.DisablePeer(ctx, &api.DisablePeerRequest{Address: a, Communication: "shutting down"}); err != nil {
			logger.Error(err, "Shutting down a BGP session", "address", a)
		}
	}
	timeout := time.After(time.Until(deadline))
wait:
	for g.anyUp() {
		select {
		case <-g.changed:
		case <-timeout:
			logger.Error(nil, "BGP sessions not torn down in time", "waited", serveExitTimeout)
			break wait
		}
	}
	// StopBgp removes the peers, waits for their goroutines and closes
	// the listeners; Stop also stops the gRPC API, so that no operator
	// request can slip in below.
	g.bgp.Stop()
	// The watcher's goroutine unregisters itself with a management
	// operation and ends.
	g.watchCancel()
	for g.watcherRunning() {
		if time.Now().After(deadline) {
			logger.Error(nil, "GoBGP's event watcher did not end", "waited", serveExitTimeout)
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	// The last operation: see gobgpServer.
	p := &api.Policy{Name: g.stopPolicy()}
	if err := g.bgp.AddPolicy(ctx, &api.AddPolicyRequest{Policy: p}); err != nil {
		logger.Error(err, "Stopping GoBGP's server loop")
	}
	if err := g.bgp.DeletePolicy(ctx, &api.DeletePolicyRequest{Policy: p, All: true}); err != nil {
		logger.Error(err, "Stopping GoBGP's server loop")
	}
	select {
	case <-g.done:
	case <-time.After(serveExitTimeout):
		logger.Error(nil, "GoBGP's server loop did not end; one goroutine is left behind", "waited", serveExitTimeout)
	}
}

// logAdapter sends GoBGP's logs to klog/logr. GoBGP's Info is chatty, so it
// goes to V(2); Warn to V(0); Debug to V(4). It also recognizes the
// deletion of stopPolicy, which tells the server loop to end.
type logAdapter struct {
	l          logr.Logger
	stopPolicy string
	exit       *atomic.Bool
}

var _ gobgplog.Logger = (*logAdapter)(nil)

func kv(fields gobgplog.Fields) []any {
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]any, 0, 2*len(keys))
	for _, k := range keys {
		out = append(out, k, fields[k])
	}
	return out
}

// Panic and Fatal: GoBGP expects them not to return.
func (a *logAdapter) Panic(msg string, f gobgplog.Fields) {
	a.l.Error(nil, msg, kv(f)...)
	panic("gobgp: " + msg)
}

func (a *logAdapter) Fatal(msg string, f gobgplog.Fields) {
	a.l.Error(nil, msg, kv(f)...)
	if f["Topic"] == nil && f["Err"] != nil && msg == "failed to listen grpc port" {
		// The optional gRPC API: the speaker works without it, and
		// NewSpeaker has checked the address already.
		return
	}
	panic("gobgp: " + msg)
}

func (a *logAdapter) Error(msg string, f gobgplog.Fields) { a.l.Error(nil, msg, kv(f)...) }
func (a *logAdapter) Warn(msg string, f gobgplog.Fields)  { a.l.Info(msg, kv(f)...) }

func (a *logAdapter) Info(msg string, f gobgplog.Fields) {
	if l := a.l.V(2); l.Enabled() {
		l.Info(msg, kv(f)...)
	}
}

func (a *logAdapter) Debug(msg string, f gobgplog.Fields) {
	if msg == "delete policy" && f["Key"] == a.stopPolicy {
		a.exit.Store(true)
	}
	if l := a.l.V(4); l.Enabled() {
		l.Info(msg, kv(f)...)
	}
}

func (a *logAdapter) SetLevel(gobgplog.LogLevel) {}

func (a *logAdapter) GetLevel() gobgplog.LogLevel {
	if a.l.V(4).Enabled() {
		return gobgplog.DebugLevel
	}
	return gobgplog.InfoLevel
}

// --- conversions ---

var (
	familyIPv4 = &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	familyIPv6 = &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
)

func apiFamily(a netip.Addr) *api.Family {
	if a.Is4() {
		return familyIPv4
	}
	return familyIPv6
}

func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		// Marshalling our own well-formed messages cannot fail.
		panic(fmt.Sprintf("bgp: marshalling %T: %v", m, err))
	}
	return a
}

var originIGP = mustAny(&api.OriginAttribute{Origin: 0})

func nlriAny(p netip.Prefix) *anypb.Any {
	return mustAny(&api.IPAddressPrefix{Prefix: p.Addr().String(), PrefixLen: uint32(p.Bits())})
}

func nextHopAny(nlri *anypb.Any, fam *api.Family, nh netip.Addr) *anypb.Any {
	if nh.Is4() {
		return mustAny(&api.NextHopAttribute{NextHop: nh.String()})
	}
	return mustAny(&api.MpReachNLRIAttribute{Family: fam, NextHops: []string{nh.String()}, Nlris: []*anypb.Any{nlri}})
}

// vipAttrs are the marshalled attributes that all paths of one VIP share.
type vipAttrs struct {
	nlri      *anypb.Any
	family    *api.Family
	comms     *anypb.Any // nil: none
	localPref *anypb.Any // nil: not set
	// large holds the large-communities attribute per rack marker
	// (0: no marker), built on first use.
	large map[uint32]*anypb.Any
	user  []LargeCommunity
}

func newVIPAttrs(adv *Advertisement) *vipAttrs {
	a := &vipAttrs{
		nlri:   nlriAny(adv.Prefix),
		family: apiFamily(adv.Prefix.Addr()),
		user:   adv.LargeCommunities,
	}
	if len(adv.Communities) > 0 {
		cs := make([]uint32, len(adv.Communities))
		for i, c := range adv.Communities {
			cs[i] = uint32(c)
		}
		a.comms = mustAny(&api.CommunitiesAttribute{Communities: cs})
	}
	if adv.LocalPref > 0 {
		a.localPref = mustAny(&api.LocalPrefAttribute{LocalPref: adv.LocalPref})
	}
	return a
}

func (a *vipAttrs) largeFor(marker LargeCommunity, hasMarker bool) *anypb.Any {
	key := uint32(0)
	if hasMarker {
		key = marker.Local2 + 1
	}
	if v, ok := a.large[key]; ok {
		return v
	}
	var list []*api.LargeCommunity
	for _, c := range a.user {
		list = append(list, &api.LargeCommunity{GlobalAdmin: c.Global, LocalData1: c.Local1, LocalData2: c.Local2})
	}
	if hasMarker {
		list = append(list, &api.LargeCommunity{GlobalAdmin: marker.Global, LocalData1: marker.Local1, LocalData2: marker.Local2})
	}
	var v *anypb.Any
	if len(list) > 0 {
		v = mustAny(&api.LargeCommunitiesAttribute{Communities: list})
	}
	if a.large == nil {
		a.large = make(map[uint32]*anypb.Any, 2)
	}
	a.large[key] = v
	return v
}

// apiPath is the GoBGP path for one (VIP, node). med orders the paths for
// GoBGP's best-path choice (lower wins) and is reset to 0 on export.
func (a *vipAttrs) apiPath(id uint32, nh netip.Addr, med uint32, marker LargeCommunity, hasMarker bool) *api.Path {
	pattrs := make([]*anypb.Any, 0, 6)
	pattrs = append(pattrs, originIGP, nextHopAny(a.nlri, a.family, nh), mustAny(&api.MultiExitDiscAttribute{Med: med}))
	if a.comms != nil {
		pattrs = append(pattrs, a.comms)
	}
	if l := a.largeFor(marker, hasMarker); l != nil {
		pattrs = append(pattrs, l)
	}
	if a.localPref != nil {
		pattrs = append(pattrs, a.localPref)
	}
	return &api.Path{Family: a.family, Nlri: a.nlri, Pattrs: pattrs, Identifier: id}
}

// withdrawPath identifies the local path (prefix, identifier) to delete.
// GoBGP finds it by source and identifier; deleting by UUID would walk
// the whole RIB.
func withdrawPath(prefix netip.Prefix, id uint32, nh netip.Addr) *api.Path {
	fam := apiFamily(prefix.Addr())
	nlri := nlriAny(prefix)
	return &api.Path{
		Family:     fam,
		Nlri:       nlri,
		Pattrs:     []*anypb.Any{originIGP, nextHopAny(nlri, fam, nh)},
		Identifier: id,
		IsWithdraw: true,
	}
}

// --- policies ---

const (
	importPolicyName = "baremetal-ccm-import"
	exportPolicyName = "baremetal-ccm-export"
	// markerTag is Local1 of the large community that tags a path with
	// its node's rack ("RACK" in ASCII). Global is our ASN, Local2 the
	// rack's index. The export policy strips every marker.
	markerTag uint32 = 0x5241434B
)

func marker(asn, rackIndex uint32) LargeCommunity {
	return LargeCommunity{Global: asn, Local1: markerTag, Local2: rackIndex}
}

func hostPrefix(a netip.Addr) string {
	return netip.PrefixFrom(a, a.BitLen()).String()
}

// importPolicy accepts only our own (local) paths: routes received from
// routers never enter the RIB. Global policies apply to local paths too,
// hence the explicit accept.
func importPolicy() *api.Policy {
	return &api.Policy{
		Name: importPolicyName,
		Statements: []*api.Statement{{
			Name:       importPolicyName + "-local",
			Conditions: &api.Conditions{RouteType: api.Conditions_ROUTE_TYPE_LOCAL},
			Actions:    &api.Actions{RouteAction: api.RouteAction_ACCEPT},
		}},
	}
}

// policies builds the complete policy configuration for the current peers:
// the import policy, and one global export policy with one statement per
// rack that has routers (neighbor set of those routers AND the rack's
// marker) plus one for the routers without a rack (neighbor set only).
// Every accepting statement strips the markers and resets the MED. The
// default export action is REJECT.
func policies(asn uint32, peers []Peer, rackIndex func(string) uint32) *api.SetPoliciesRequest {
	var rackless []string
	byRack := map[string][]string{}
	for _, p := range peers {
		if p.Rack == "" {
			rackless = append(rackless, hostPrefix(p.Address))
		} else {
			byRack[p.Rack] = append(byRack[p.Rack], hostPrefix(p.Address))
		}
	}
	accept := func() *api.Actions {
		return &api.Actions{
			RouteAction: api.RouteAction_ACCEPT,
			LargeCommunity: &api.CommunityAction{
				Type:        api.CommunityAction_REMOVE,
				Communities: []string{fmt.Sprintf(`^%d:%d:\d+$`, asn, markerTag)},
			},
			Med: &api.MedAction{Type: api.MedAction_REPLACE, Value: 0},
		}
	}
	req := &api.SetPoliciesRequest{}
	export := &api.Policy{Name: exportPolicyName}
	// Empty neighbor sets match every neighbor in GoBGP: only non-empty
	// ones become statements.
	if len(rackless) > 0 {
		req.DefinedSets = append(req.DefinedSets, &api.DefinedSet{DefinedType: api.DefinedType_NEIGHBOR, Name: "peers-all-nodes", List: rackless})
		export.Statements = append(export.Statements, &api.Statement{
			Name:       "all-nodes",
			Conditions: &api.Conditions{NeighborSet: &api.MatchSet{Type: api.MatchSet_ANY, Name: "peers-all-nodes"}},
			Actions:    accept(),
		})
	}
	racks := make([]string, 0, len(byRack))
	for r := range byRack {
		racks = append(racks, r)
	}
	sort.Strings(racks)
	for _, r := range racks {
		idx := strconv.FormatUint(uint64(rackIndex(r)), 10)
		req.DefinedSets = append(req.DefinedSets,
			&api.DefinedSet{DefinedType: api.DefinedType_NEIGHBOR, Name: "peers-rack-" + idx, List: byRack[r]},
			&api.DefinedSet{DefinedType: api.DefinedType_LARGE_COMMUNITY, Name: "marker-rack-" + idx, List: []string{marker(asn, rackIndex(r)).String()}},
		)
		export.Statements = append(export.Statements, &api.Statement{
			Name: "rack-" + idx,
			Conditions: &api.Conditions{
				NeighborSet:       &api.MatchSet{Type: api.MatchSet_ANY, Name: "peers-rack-" + idx},
				LargeCommunitySet: &api.MatchSet{Type: api.MatchSet_ANY, Name: "marker-rack-" + idx},
			},
			Actions: accept(),
		})
	}
	req.Policies = []*api.Policy{importPolicy(), export}
	return req
}

func assignPolicies(ctx context.Context, bgp *server.BgpServer) error {
	for _, a := range []*api.PolicyAssignment{
		{Name: "global", Direction: api.PolicyDirection_IMPORT, Policies: []*api.Policy{{Name: importPolicyName}}, DefaultAction: api.RouteAction_REJECT},
		{Name: "global", Direction: api.PolicyDirection_EXPORT, Policies: []*api.Policy{{Name: exportPolicyName}}, DefaultAction: api.RouteAction_REJECT},
	} {
		if err := bgp.SetPolicyAssignment(ctx, &api.SetPolicyAssignmentRequest{Assignment: a}); err != nil {
			return fmt.Errorf("assigning the %s policy: %w", a.Direction, err)
		}
	}
	return nil
}

// --- peers ---

// apiPeer is the GoBGP neighbor for p. Both unicast families are enabled
// on every session (MP-BGP), each with ADD-PATH send and, with graceful
// restart, its own GR flag (GoBGP may send nothing to a GR router for a
// family that GR does not cover).
func apiPeer(p *Peer, password string, cfg *Config) *api.Peer {
	gr := cfg.GracefulRestart
	peer := &api.Peer{
		Conf: &api.PeerConf{
			NeighborAddress: p.Address.String(),
			PeerAsn:         p.ASN,
			AuthPassword:    password,
			Description:     p.Name,
		},
		Timers: &api.Timers{Config: &api.TimersConfig{
			HoldTime:          uint64(cfg.HoldTime / time.Second),
			KeepaliveInterval: uint64(cfg.KeepaliveTime / time.Second),
			ConnectRetry:      defaultConnectRetrySecond,
		}},
		Transport: &api.Transport{RemotePort: uint32(p.Port)},
	}
	if p.LocalAddress.IsValid() {
		peer.Transport.LocalAddress = p.LocalAddress.String()
	}
	if p.EBGPMultihop > 0 {
		peer.EbgpMultihop = &api.EbgpMultihop{Enabled: true, MultihopTtl: uint32(p.EBGPMultihop)}
	}
	if gr.Enabled {
		peer.GracefulRestart = &api.GracefulRestart{Enabled: true, RestartTime: uint32(gr.RestartTime / time.Second)}
	}
	for _, fam := range []*api.Family{familyIPv4, familyIPv6} {
		as := &api.AfiSafi{
			Config:   &api.AfiSafiConfig{Family: fam, Enabled: true},
			AddPaths: &api.AddPaths{Config: &api.AddPathsConfig{SendMax: uint32(cfg.MaxPathsPerPrefix)}},
		}
		if gr.Enabled {
			as.MpGracefulRestart = &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: true}}
		}
		peer.AfiSafis = append(peer.AfiSafis, as)
	}
	return peer
}
