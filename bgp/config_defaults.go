package bgp

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// Defaults of the bgp: section. Parse and NewSpeaker apply the same ones
// (withDefaults).
const (
	DefaultHoldTime = 9 * time.Second
	// DefaultKeepaliveTime is DefaultHoldTime/3: an unset keepalive is a
	// third of the hold time, whole seconds (RFC 4271 4.4 suggests one
	// third), whether the hold time is the default or set.
	DefaultKeepaliveTime     = DefaultHoldTime / 3
	DefaultRestartTime       = 120 * time.Second
	DefaultMaxPathsPerPrefix = 16
	DefaultPeerPort          = 179
	// DefaultMaxPrefixes is a router's default prefix limit per family.
	// The speaker keeps nothing a router sends (the import policy rejects
	// it all), but GoBGP's Adj-RIB-In stores it: about 330 bytes a route,
	// so a router that leaks a full table (1.2 M routes) would cost
	// 400 MB. A ToR that sends a default route and some aggregates stays
	// far below 1000; the limit then costs at most about 330 kB a router.
	DefaultMaxPrefixes = 1000
	// maxMaxPrefixes bounds maxPrefixes itself (about 330 MB).
	maxMaxPrefixes       = 1_000_000
	maxMaxPathsPerPrefix = 255 // GoBGP keeps ADD-PATH send-max in a uint8
	maxRestartTime       = 4095 * time.Second
	maxHoldTime          = 65535 * time.Second
	maxMD5KeyLen         = 80 // TCP_MD5SIG_MAXKEYLEN
	maxTTLSecurityHops   = 254
	asTrans              = 23456
	reservedASN16        = 65535
	reservedASN32        = 4294967295
	minHoldTime          = 3 * time.Second
	// defaultConnectRetrySecond: GoBGP waits 1–2 s before its first
	// connection attempt and this to twice this between the next ones.
	// A replica that starts while its router still refuses it (a router
	// holds a neighbor idle for a while after a session ended: GoBGP 5 s)
	// gets its session a second or two after, not up to 10 s: at one
	// connection attempt per router a second, nothing to spare.
	defaultConnectRetrySecond = 1
)

// defaultKeepalive is the keepalive interval for hold when none is set:
// a third of it, in whole seconds.
func defaultKeepalive(hold time.Duration) time.Duration {
	return (hold / 3).Truncate(time.Second)
}

// withDefaults fills the zero fields of c with the defaults of Parse.
func (c Config) withDefaults() Config {
	if c.HoldTime == 0 {
		c.HoldTime = DefaultHoldTime
	}
	if c.KeepaliveTime == 0 {
		c.KeepaliveTime = defaultKeepalive(c.HoldTime)
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
		if c.Peers[i].MaxPrefixes == 0 {
			c.Peers[i].MaxPrefixes = DefaultMaxPrefixes
		}
	}
	c.ExportPrefixes = slices.Clone(c.ExportPrefixes)
	for i, p := range c.ExportPrefixes {
		c.ExportPrefixes[i] = p.Masked()
	}
	c.RoutePrefixes = slices.Clone(c.RoutePrefixes)
	for i, p := range c.RoutePrefixes {
		c.RoutePrefixes[i] = p.Masked()
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
	for _, a := range c.ListenAddresses {
		if !a.IsValid() || a.IsMulticast() {
			errs = append(errs, fmt.Errorf("listen address %q: want a unicast address or an unspecified one", a))
		}
	}
	for _, p := range c.ExportPrefixes {
		if !p.IsValid() || p.Addr().Zone() != "" {
			errs = append(errs, fmt.Errorf("export prefix %q: want a valid prefix without zone", p))
		}
	}
	errs = append(errs, validateRoutePrefixes(c.RoutePrefixes)...)
	errs = append(errs, validatePeers(c.Peers)...)
	if len(errs) > 0 {
		return fmt.Errorf("invalid BGP configuration: %w", errors.Join(errs...))
	}
	return nil
}

func validatePeers(peers []Peer) []error {
	var errs []error
	names := map[string]bool{}
	addrs := map[netip.Addr]bool{}
	for _, p := range peers {
		switch {
		case p.Name == "" || names[p.Name]:
			errs = append(errs, fmt.Errorf("peer %q: names must be non-empty and unique", p.Name))
		case !p.Address.IsValid() || addrs[p.Address.Unmap()]:
			errs = append(errs, fmt.Errorf("peer %q: address %q must be valid and unique", p.Name, p.Address))
		case validASN(int64(p.ASN)) != "":
			errs = append(errs, fmt.Errorf("peer %q: asn %d: %s", p.Name, p.ASN, validASN(int64(p.ASN))))
		case p.MaxPrefixes > maxMaxPrefixes:
			errs = append(errs, fmt.Errorf("peer %q: maxPrefixes %d: want 1-%d", p.Name, p.MaxPrefixes, maxMaxPrefixes))
		case p.TTLSecurity > maxTTLSecurityHops || (p.TTLSecurity > 0 && p.EBGPMultihop > 0):
			errs = append(errs, fmt.Errorf("peer %q: ttlSecurity %d: want 0-%d hops, and not with ebgpMultihop", p.Name, p.TTLSecurity, maxTTLSecurityHops))
		}
		names[p.Name] = true
		addrs[p.Address.Unmap()] = true
	}
	return errs
}

func validASN(asn int64) string {
	switch {
	case asn < 1 || asn > reservedASN32:
		return "must be between 1 and 4294967294"
	case asn == asTrans:
		return "23456 is AS_TRANS (RFC 6793), not a usable ASN"
	case asn == reservedASN16 || asn == reservedASN32:
		return "is reserved (RFC 7300)"
	}
	return ""
}

// PathsPerPrefix is MaxPathsPerPrefix, or its default when it is unset.
func (c Config) PathsPerPrefix() int {
	if c.MaxPathsPerPrefix == 0 {
		return DefaultMaxPathsPerPrefix
	}
	return c.MaxPathsPerPrefix
}
