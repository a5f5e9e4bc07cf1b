package bgp

import (
	"context"
	"net/netip"
	"time"
)

// SessionState is the BGP finite state machine's state (RFC 4271 8.2.2).
type SessionState int

// Session states. StateUnknown: GoBGP does not know the peer (yet).
const (
	StateUnknown SessionState = iota
	StateIdle
	StateConnect
	StateActive
	StateOpenSent
	StateOpenConfirm
	StateEstablished
)

func (s SessionState) String() string {
	switch s {
	case StateIdle:
		return "Idle"
	case StateConnect:
		return "Connect"
	case StateActive:
		return "Active"
	case StateOpenSent:
		return "OpenSent"
	case StateOpenConfirm:
		return "OpenConfirm"
	case StateEstablished:
		return "Established"
	}
	return "Unknown"
}

// Family is an address family of the sessions.
type Family string

// The families every session carries.
const (
	IPv4Unicast Family = "ipv4-unicast"
	IPv6Unicast Family = "ipv6-unicast"
)

// PeerStatus is what the speaker knows about one router.
type PeerStatus struct {
	Name    string
	Address netip.Addr
	ASN     uint32
	Rack    string
	State   SessionState
	// Since is when the session last became Established (when State is
	// Established) or last went down (otherwise); zero if never.
	Since time.Time
	// Families has one entry per family the speaker offers, IPv4 first.
	Families []FamilyStatus
	// SinglePath is true when the session is Established and the router
	// did not negotiate ADD-PATH for some negotiated family: it gets one
	// path per VIP of that family (see FamilyStatus.AddPath).
	SinglePath bool
	// MaxPrefixes is the router's prefix limit (Peer.MaxPrefixes).
	MaxPrefixes uint32
	// PrefixLimitExceeded counts the sessions closed because the router
	// sent more prefixes than MaxPrefixes, since the speaker (or its
	// embedded GoBGP, after a restart for new global settings) started.
	// Such a session stays down (State Idle) until the peer's
	// configuration changes.
	PrefixLimitExceeded uint64
	// SessionDrops counts the times the session went down after being
	// Established (flaps), since the speaker started.
	SessionDrops uint64
	// UpdatesSent counts the UPDATE messages sent to the router, as the
	// embedded GoBGP counts them (a restart of it starts again at 0).
	UpdatesSent uint64
}

// FamilyStatus is the state of one address family of one session.
type FamilyStatus struct {
	Family Family
	// Negotiated: both sides enabled the family (Established sessions).
	Negotiated bool
	// AddPath: ADD-PATH send is negotiated, the router gets up to
	// maxPathsPerPrefix paths per VIP. Without it the router gets one:
	// the path via the node of highest rendezvous weight.
	AddPath bool
	// Paths is the number of paths the speaker sends the router in this
	// family (0 unless Negotiated).
	Paths int
	// MissingVIPs counts VIPs with paths via the router's rack that the
	// router does not get: GoBGP chooses one best path per VIP for all
	// routers without ADD-PATH, and when that path is via another rack,
	// a rack's router without ADD-PATH gets nothing for the VIP.
	MissingVIPs int
}

// familyCounters aggregate, per address family, what each kind of router
// receives. They are updated with every VIP change, so that Peers never
// walks the VIPs.
type familyCounters struct {
	capped    int            // Σ over VIPs of min(paths, maxPathsPerPrefix): a router without rack, with ADD-PATH
	vips      int            // VIPs with at least one path: a router without rack, without ADD-PATH
	rackPaths map[string]int // paths via rack r: r's routers with ADD-PATH
	rackVIPs  map[string]int // VIPs with a path via rack r
	rackBest  map[string]int // VIPs whose best path is via rack r: r's routers without ADD-PATH
}

// contribution is one VIP's share of the counters.
type contribution struct {
	fam      int // 0: IPv4, 1: IPv6
	paths    int
	capped   int // min(paths, maxPathsPerPrefix) when it was computed
	byRack   map[string]int
	bestRack string
}

func (c *familyCounters) add(x contribution, sign int) {
	if x.paths == 0 {
		return
	}
	if c.rackPaths == nil {
		c.rackPaths, c.rackVIPs, c.rackBest = map[string]int{}, map[string]int{}, map[string]int{}
	}
	c.capped += sign * x.capped
	c.vips += sign
	for r, n := range x.byRack {
		c.rackPaths[r] += sign * n
		c.rackVIPs[r] += sign
		if c.rackPaths[r] == 0 {
			delete(c.rackPaths, r)
			delete(c.rackVIPs, r)
		}
	}
	if x.bestRack != "" {
		c.rackBest[x.bestRack] += sign
		if c.rackBest[x.bestRack] == 0 {
			delete(c.rackBest, x.bestRack)
		}
	}
}

func familyIndex(a netip.Addr) int {
	if a.Is4() {
		return 0
	}
	return 1
}

// Peers reports every configured router: session state, per family
// whether it was negotiated with ADD-PATH, how many paths the speaker
// sends it, and how often it exceeded its prefix limit. A restart of the
// embedded GoBGP does not block it: meanwhile the routers' states are
// Unknown.
func (s *Speaker) Peers() []PeerStatus {
	live := map[netip.Addr]peerState{}
	s.routerMu.RLock()
	if s.router != nil {
		states, _ := s.router.listPeers(context.Background())
		for _, st := range states {
			live[st.Address] = st
		}
	}
	s.routerMu.RUnlock()

	s.statMu.Lock()
	defer s.statMu.Unlock()
	out := make([]PeerStatus, 0, len(s.applied))
	for _, a := range s.applied {
		st := PeerStatus{Name: a.Name, Address: a.Address, ASN: a.ASN, Rack: a.Rack, State: StateUnknown, MaxPrefixes: a.MaxPrefixes}
		lp, ok := live[a.Address]
		if ok {
			st.State, st.Since, st.PrefixLimitExceeded, st.UpdatesSent = lp.State, lp.Since, lp.PrefixLimitExceeded, lp.UpdatesSent
		}
		st.SessionDrops = s.drops[a.Address]
		for fi, fam := range []Family{IPv4Unicast, IPv6Unicast} {
			fs := FamilyStatus{Family: fam, Negotiated: st.State == StateEstablished && lp.Families[fam]}
			if fs.Negotiated {
				fs.AddPath = lp.AddPath[fam]
				fs.Paths, fs.MissingVIPs = s.counters[fi].pathsFor(a.Rack, fs.AddPath)
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

// pathsFor is how many paths a router of rack (empty: none) gets, and how
// many VIPs via its rack it misses.
func (c *familyCounters) pathsFor(rack string, addPath bool) (paths, missing int) {
	switch {
	case addPath && rack == "":
		return c.capped, 0
	case addPath:
		return c.rackPaths[rack], 0
	case rack == "":
		return c.vips, 0
	default:
		return c.rackBest[rack], c.rackVIPs[rack] - c.rackBest[rack]
	}
}
