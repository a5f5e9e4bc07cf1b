package bgp

import (
	"fmt"
	"net/netip"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// ConfigFile is the YAML form of the cloud config's bgp: section. The caller
// decodes it with sigs.k8s.io/yaml in strict mode, so the json tags are the
// field names of the file. Optional fields are pointers or zero values; Parse
// applies the defaults.
type ConfigFile struct {
	// ASN is the speaker's autonomous system number. Required when peers
	// are configured (and, checked by the caller, when pools exist).
	ASN int64 `json:"asn,omitempty"`
	// RouterID is the BGP identifier, an IPv4 address. Empty: the caller
	// derives it (--bgp-router-id, $NODE_IP, the host's first global IPv4).
	RouterID string `json:"routerID,omitempty"`
	// ListenPort is the TCP port to accept BGP sessions on. 0: never
	// listen, connect out only.
	ListenPort int32 `json:"listenPort,omitempty"`
	// ListenAddresses are the addresses to listen on when listenPort > 0
	// (default: all).
	ListenAddresses []string `json:"listenAddresses,omitempty"`
	// HoldTime is the proposed hold time (default 9s, 3s-65535s).
	HoldTime *metav1.Duration `json:"holdTime,omitempty"`
	// KeepaliveTime is the keepalive interval (default: a third of
	// holdTime, whole seconds; 3s with the default holdTime).
	KeepaliveTime *metav1.Duration `json:"keepaliveTime,omitempty"`
	// GracefulRestart asks the routers to keep our paths while the speaker
	// restarts (RFC 4724). Enabled by default with a restart time of 120s.
	GracefulRestart *GracefulRestartFile `json:"gracefulRestart,omitempty"`
	// MaxPathsPerPrefix is the ADD-PATH send-max and the cap on next hops
	// per VIP per router (default 16, at most 255).
	MaxPathsPerPrefix *int32 `json:"maxPathsPerPrefix,omitempty"`
	// WeightedECMP sends, on each path of an externalTrafficPolicy: Local
	// Service, the link-bandwidth extended community in proportion to the
	// node's ready endpoints, so that routers which honour it weight
	// their ECMP (docs/weighted-ecmp.md).
	WeightedECMP *WeightedECMPFile `json:"weightedECMP,omitempty"`
	// Peers are the routers to peer with.
	Peers []PeerFile `json:"peers,omitempty"`
}

// GracefulRestartFile is the YAML form of bgp.gracefulRestart.
type GracefulRestartFile struct {
	Enabled     *bool            `json:"enabled,omitempty"`
	RestartTime *metav1.Duration `json:"restartTime,omitempty"`
}

// WeightedECMPFile is the YAML form of bgp.weightedECMP.
type WeightedECMPFile struct {
	// Enabled: default true (DefaultWeightedECMP).
	Enabled *bool `json:"enabled,omitempty"`
	// Transitive sends the community as transitive (type 0x00) instead
	// of non-transitive (type 0x40, the default): for routers that use
	// only the transitive form (FRR 10.3.x, 10.4.0-10.4.2 and
	// 10.5.0-10.5.1), at the price of routers passing it on to other ASes.
	Transitive *bool `json:"transitive,omitempty"`
}

// PeerFile is the YAML form of one entry of bgp.peers.
type PeerFile struct {
	// Name identifies the peer in logs, status and metrics; unique.
	Name string `json:"name"`
	// Address is the router's IPv4 or IPv6 address; unique.
	Address string `json:"address"`
	// ASN is the router's autonomous system number; equal to bgp.asn for iBGP.
	ASN int64 `json:"asn"`
	// Port is the router's BGP port (default 179).
	Port int32 `json:"port,omitempty"`
	// Rack limits the router to paths via nodes of this rack; empty: via
	// all nodes.
	Rack string `json:"rack,omitempty"`
	// PasswordFile holds the TCP MD5 secret (a mounted Secret). One
	// trailing newline is ignored.
	PasswordFile string `json:"passwordFile,omitempty"`
	// EBGPMultihop is the TTL for an eBGP router that is not directly
	// connected; 0: directly connected.
	EBGPMultihop int32 `json:"ebgpMultihop,omitempty"`
	// LocalAddress is the source address of the session; empty: chosen by
	// the kernel.
	LocalAddress string `json:"localAddress,omitempty"`
	// MaxPrefixes is the most prefixes per family the router may send;
	// one more closes the session, which then stays down until the peer's
	// configuration changes or the speaker restarts (default 1000, at most
	// 1000000).
	MaxPrefixes *int64 `json:"maxPrefixes,omitempty"`
	// TTLSecurity enables GTSM (RFC 5082): accept only packets of a router
	// at most this many hops away (1: directly connected). 0: off. Not
	// with ebgpMultihop.
	TTLSecurity int32 `json:"ttlSecurity,omitempty"`
	// DialFrom says which replicas peer with the router; omitted: every
	// replica. Two peers may share an address when their dialFrom racks do
	// not overlap: one entry for the replicas directly connected to the
	// router, another (with ebgpMultihop) for those further away.
	DialFrom *DialFromFile `json:"dialFrom,omitempty"`
}

// DialFromFile is the YAML form of bgp.peers[].dialFrom.
type DialFromFile struct {
	// Racks: the replicas whose node is in one of these racks (the
	// caller checks that they exist).
	Racks []string `json:"racks"`
}

// Config is the validated bgp: section, with defaults applied.
type Config struct {
	ASN uint32
	// RouterID must be a valid IPv4 address when the speaker starts.
	RouterID netip.Addr
	// ListenPort > 0 opens a listening socket on ListenAddresses (none:
	// every address); otherwise GoBGP never listens.
	ListenPort        int32
	ListenAddresses   []netip.Addr
	HoldTime          time.Duration
	KeepaliveTime     time.Duration
	GracefulRestart   GracefulRestart
	MaxPathsPerPrefix int
	Peers             []Peer
	// WeightedECMP is bgp.weightedECMP, read by the provider: it gives
	// the next hops of Local Services shares (NextHop.Share) and sets
	// Advertisement.TransitiveLinkBandwidth. The speaker itself sends
	// whatever it is given.
	WeightedECMP WeightedECMP
	// APIAddress, when valid, serves the embedded GoBGP's gRPC API there
	// so that operators can use the gobgp CLI. It must be a loopback
	// address; it is set from a command-line flag, not the config file.
	APIAddress netip.AddrPort
	// ExportPrefixes are the only prefixes announced: GoBGP's export
	// policy passes only paths whose prefix lies within one of them, and
	// Announce and SetAll refuse a VIP outside them. None: nothing is
	// announced. The caller fills them from the address pools; they are
	// not part of the file. Changing them never resets a session.
	ExportPrefixes []netip.Prefix
	// RoutePrefixes are the networks that routes (SetRoutes: the nodes'
	// pod CIDRs) may lie within: the cluster CIDRs. The export policy
	// passes them too. They must not overlap ExportPrefixes; a route that
	// would is refused. None: no route is announced. Not part of the file.
	RoutePrefixes []netip.Prefix
}

// WeightedECMP is the validated bgp.weightedECMP.
type WeightedECMP struct {
	Enabled    bool
	Transitive bool
}

// GracefulRestart is the validated bgp.gracefulRestart.
type GracefulRestart struct {
	Enabled     bool
	RestartTime time.Duration
}

// Peer is one validated router.
type Peer struct {
	Name         string
	Address      netip.Addr
	ASN          uint32
	Port         uint16
	Rack         string
	PasswordFile string
	EBGPMultihop uint8
	LocalAddress netip.Addr
	// MaxPrefixes is the router's prefix limit per family (0:
	// DefaultMaxPrefixes).
	MaxPrefixes uint32
	// TTLSecurity is the GTSM hop count (0: off).
	TTLSecurity uint8
	// DialFromRacks are the racks whose replicas peer with the router; nil:
	// every replica. The speaker peers with every Peer it is given: the
	// caller chooses the peers of its replica.
	DialFromRacks []string
}

// Parse validates c and applies the defaults. It reports every problem,
// each with its field path under path (for example bgp.peers[1].address),
// the offending value and what would be valid. It checks that password
// files are readable; the speaker reads them again when it starts or is
// reconfigured, so that a rotated secret takes effect on Reconfigure.
// Cross-section checks (peer racks exist in the inventory, asn set when
// pools exist) are the caller's.
func (c *ConfigFile) Parse(path *field.Path) (Config, field.ErrorList) {
	cfg := Config{
		ListenPort:        c.ListenPort,
		HoldTime:          DefaultHoldTime,
		KeepaliveTime:     DefaultKeepaliveTime,
		GracefulRestart:   GracefulRestart{Enabled: true, RestartTime: DefaultRestartTime},
		MaxPathsPerPrefix: DefaultMaxPathsPerPrefix,
		WeightedECMP:      WeightedECMP{Enabled: DefaultWeightedECMP},
	}
	if w := c.WeightedECMP; w != nil {
		if w.Enabled != nil {
			cfg.WeightedECMP.Enabled = *w.Enabled
		}
		if w.Transitive != nil {
			cfg.WeightedECMP.Transitive = *w.Transitive
		}
	}
	errs := c.parseGlobal(path, &cfg)
	errs = append(errs, c.parseTimers(path, &cfg)...)
	if c.MaxPathsPerPrefix != nil {
		m := *c.MaxPathsPerPrefix
		if m < 1 || m > maxMaxPathsPerPrefix {
			errs = append(errs, field.Invalid(path.Child("maxPathsPerPrefix"), m, fmt.Sprintf("must be between 1 and %d", maxMaxPathsPerPrefix)))
		} else {
			cfg.MaxPathsPerPrefix = int(m)
		}
	}
	names := make(map[string]int, len(c.Peers))
	addrs := make(map[netip.Addr][]int, len(c.Peers))
	for i := range c.Peers {
		p, perrs := c.Peers[i].parse(path.Child("peers").Index(i), names, addrs, i, c.Peers, cfg.ASN)
		errs = append(errs, perrs...)
		if len(perrs) == 0 {
			cfg.Peers = append(cfg.Peers, p)
		}
	}
	if len(errs) > 0 {
		return Config{}, errs
	}
	return cfg, nil
}

// parseGlobal parses the speaker's identity and listening socket.
func (c *ConfigFile) parseGlobal(path *field.Path, cfg *Config) field.ErrorList {
	var errs field.ErrorList
	if c.ASN != 0 {
		if msg := validASN(c.ASN); msg != "" {
			errs = append(errs, field.Invalid(path.Child("asn"), c.ASN, msg))
		} else {
			cfg.ASN = uint32(c.ASN)
		}
	} else if len(c.Peers) > 0 {
		errs = append(errs, field.Required(path.Child("asn"), "the speaker's ASN is required when peers are configured"))
	}
	if c.RouterID != "" {
		a, err := netip.ParseAddr(c.RouterID)
		switch {
		case err != nil || a.Zone() != "":
			errs = append(errs, field.Invalid(path.Child("routerID"), c.RouterID, "must be an IPv4 address"))
		case !a.Is4() || a.IsUnspecified():
			errs = append(errs, field.Invalid(path.Child("routerID"), c.RouterID, "must be a non-zero IPv4 address (the BGP identifier is 32 bits)"))
		default:
			cfg.RouterID = a
		}
	}
	if c.ListenPort < 0 || c.ListenPort > 65535 {
		errs = append(errs, field.Invalid(path.Child("listenPort"), c.ListenPort, "must be 0 (never listen) or a TCP port 1-65535"))
	}
	for i, s := range c.ListenAddresses {
		a, err := netip.ParseAddr(s)
		if err != nil || a.IsMulticast() {
			errs = append(errs, field.Invalid(path.Child("listenAddresses").Index(i), s, "must be an IPv4 or IPv6 unicast address (0.0.0.0 or :: for all of a family)"))
			continue
		}
		cfg.ListenAddresses = append(cfg.ListenAddresses, a.Unmap())
	}
	return errs
}

// parseTimers parses the hold and keepalive times and graceful restart.
func (c *ConfigFile) parseTimers(path *field.Path, cfg *Config) field.ErrorList {
	var errs field.ErrorList
	if c.HoldTime != nil {
		h := c.HoldTime.Duration
		switch {
		case h%time.Second != 0:
			errs = append(errs, field.Invalid(path.Child("holdTime"), h.String(), "must be whole seconds"))
		case h < minHoldTime || h > maxHoldTime:
			errs = append(errs, field.Invalid(path.Child("holdTime"), h.String(), "must be between 3s and 65535s"))
		default:
			cfg.HoldTime = h
			cfg.KeepaliveTime = defaultKeepalive(h)
		}
	}
	if c.KeepaliveTime != nil {
		k := c.KeepaliveTime.Duration
		switch {
		case k%time.Second != 0:
			errs = append(errs, field.Invalid(path.Child("keepaliveTime"), k.String(), "must be whole seconds"))
		case k < time.Second || k >= cfg.HoldTime:
			errs = append(errs, field.Invalid(path.Child("keepaliveTime"), k.String(), fmt.Sprintf("must be at least 1s and less than holdTime (%s)", cfg.HoldTime)))
		default:
			cfg.KeepaliveTime = k
		}
	}
	if gr := c.GracefulRestart; gr != nil {
		if gr.Enabled != nil {
			cfg.GracefulRestart.Enabled = *gr.Enabled
		}
		if gr.RestartTime != nil {
			rt := gr.RestartTime.Duration
			switch {
			case rt%time.Second != 0:
				errs = append(errs, field.Invalid(path.Child("gracefulRestart", "restartTime"), rt.String(), "must be whole seconds"))
			case rt < time.Second || rt > maxRestartTime:
				errs = append(errs, field.Invalid(path.Child("gracefulRestart", "restartTime"), rt.String(), "must be between 1s and 4095s (a 12-bit field of the capability)"))
			default:
				cfg.GracefulRestart.RestartTime = rt
			}
		}
	}
	return errs
}
