package bgp

import (
	"context"
	"net/netip"
	"time"
)

// router is the BGP implementation behind the speaker, in the speaker's
// own terms: GoBGP in production (gobgpRouter), a fake in unit tests. The
// speaker decides what to announce to whom; the router only carries it
// out. Its methods are called with the speaker's locks held, except
// listPeers, which Peers calls concurrently with the others.
type router interface {
	// addPeer configures a neighbor and starts connecting to it.
	addPeer(ctx context.Context, n neighbor) error
	// deletePeer removes a neighbor and closes its session.
	deletePeer(ctx context.Context, addr netip.Addr) error
	// listPeers reports every configured neighbor's session.
	listPeers(ctx context.Context) ([]peerState, error)
	// setPolicy replaces the import and export configuration.
	setPolicy(ctx context.Context, p routingPolicy) error
	// addPath announces p, replacing the local path with the same prefix
	// and identifier.
	addPath(ctx context.Context, p routePath) error
	// deletePath withdraws the local path with p's prefix and identifier.
	deletePath(ctx context.Context, p routePath) error
	// stop closes every session and releases the router.
	stop()
}

// newRouterFunc starts a router with global settings; onState is called
// for every session state change and must not block.
type newRouterFunc func(ctx context.Context, g routerGlobal, onState func(peerEvent)) (router, error)

// routerGlobal is what a router is started with; a change of any of it
// needs a new router.
type routerGlobal struct {
	ASN      uint32
	RouterID netip.Addr
	// ListenPort > 0 accepts sessions on ListenAddresses (none: every
	// address); otherwise the router never listens.
	ListenPort      int32
	ListenAddresses []netip.Addr
	// APIAddress, when valid, serves the router's own management API.
	APIAddress netip.AddrPort
}

// neighbor is one router to peer with, with everything its session
// depends on.
type neighbor struct {
	Peer
	Password          string
	HoldTime          time.Duration
	KeepaliveTime     time.Duration
	GracefulRestart   GracefulRestart
	MaxPathsPerPrefix int // ADD-PATH send-max
}

// peerState is a neighbor's session as the router sees it.
type peerState struct {
	Address netip.Addr
	State   SessionState
	// Since: see PeerStatus.Since.
	Since time.Time
	// Families are the unicast families the remote router offered;
	// AddPath those for which it can receive several paths.
	Families map[Family]bool
	AddPath  map[Family]bool
	// PrefixLimitExceeded counts the sessions closed because the router
	// sent more than its prefix limit.
	PrefixLimitExceeded uint64
	// UpdatesSent counts the UPDATE messages sent to the router.
	UpdatesSent uint64
}

// peerEvent is a session state change.
type peerEvent struct {
	addr  netip.Addr
	state SessionState
}

// routingPolicy is the complete import/export configuration. Import:
// nothing received from routers is kept. Export: a path goes to a router
// when its prefix lies within ExportPrefixes and either the router has no
// rack, or the path carries the marker of the router's rack or the marker
// every rack accepts (allRacksMarker). Markers are stripped and the MED
// reset to 0 on export.
type routingPolicy struct {
	ASN            uint32
	Rackless       []netip.Addr // routers without a rack
	Racks          []rackRouters
	ExportPrefixes []netip.Prefix
}

// rackRouters are the routers of one rack and the rack's marker.
type rackRouters struct {
	Marker  LargeCommunity
	Routers []netip.Addr
}

// pathAttributes are the attributes that every path of one VIP shares.
// The speaker builds them once per change of the VIP's desired attributes.
type pathAttributes struct {
	// ASN is the speaker's, for the link-bandwidth community's AS field.
	ASN              uint32
	Prefix           netip.Prefix
	Communities      []Community
	LargeCommunities []LargeCommunity
	LocalPref        uint32 // 0: not set
	// TransitiveLB: the link-bandwidth community of the paths with a
	// share is transitive.
	TransitiveLB bool

	// cache is the router's own encoding of these attributes, built on
	// first use. Only the goroutine that reconciles the VIP touches it.
	cache any
}

// routePath is one path: a VIP via one node.
type routePath struct {
	Attrs   *pathAttributes
	ID      uint32
	NextHop netip.Addr
	// MED orders the paths for the router's best-path choice (lower
	// wins); the export policy resets it.
	MED uint32
	// Marker tags the path with its node's rack; zero: no rack.
	Marker LargeCommunity
	// Share, when not 0, is sent as the link-bandwidth extended
	// community (NextHop.Share).
	Share uint32
}

// hasMarker reports whether the path carries a rack marker.
func (p *routePath) hasMarker() bool { return p.Marker != LargeCommunity{} }
