package bgp

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Defaults of the bgp: section.
const (
	DefaultHoldTime           = 9 * time.Second
	DefaultKeepaliveTime      = 3 * time.Second
	DefaultRestartTime        = 120 * time.Second
	DefaultMaxPathsPerPrefix  = 16
	DefaultPeerPort           = 179
	maxMaxPathsPerPrefix      = 255 // GoBGP keeps ADD-PATH send-max in a uint8
	maxRestartTime            = 4095 * time.Second
	maxHoldTime               = 65535 * time.Second
	maxMD5KeyLen              = 80 // TCP_MD5SIG_MAXKEYLEN
	asTrans                   = 23456
	reservedASN16             = 65535
	reservedASN32             = 4294967295
	minHoldTime               = 3 * time.Second
	defaultConnectRetrySecond = 5
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
	// HoldTime is the proposed hold time (default 9s, 3s-65535s).
	HoldTime *metav1.Duration `json:"holdTime,omitempty"`
	// KeepaliveTime is the keepalive interval (default 3s, or a third of
	// holdTime when only that is set).
	KeepaliveTime *metav1.Duration `json:"keepaliveTime,omitempty"`
	// GracefulRestart asks the routers to keep our paths while the speaker
	// restarts (RFC 4724). Enabled by default with a restart time of 120s.
	GracefulRestart *GracefulRestartFile `json:"gracefulRestart,omitempty"`
	// MaxPathsPerPrefix is the ADD-PATH send-max and the cap on next hops
	// per VIP per router (default 16, at most 255).
	MaxPathsPerPrefix *int32 `json:"maxPathsPerPrefix,omitempty"`
	// Peers are the routers to peer with.
	Peers []PeerFile `json:"peers,omitempty"`
}

// GracefulRestartFile is the YAML form of bgp.gracefulRestart.
type GracefulRestartFile struct {
	Enabled     *bool            `json:"enabled,omitempty"`
	RestartTime *metav1.Duration `json:"restartTime,omitempty"`
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
}

// Config is the validated bgp: section, with defaults applied.
type Config struct {
	ASN uint32
	// RouterID must be a valid IPv4 address when the speaker starts.
	RouterID netip.Addr
	// ListenPort > 0 opens a listening socket; otherwise GoBGP never
	// listens.
	ListenPort        int32
	HoldTime          time.Duration
	KeepaliveTime     time.Duration
	GracefulRestart   GracefulRestart
	MaxPathsPerPrefix int
	Peers             []Peer
	// APIAddress, when valid, serves the embedded GoBGP's gRPC API there
	// so that operators can use the gobgp CLI. It must be a loopback
	// address; it is set from a command-line flag, not the config file.
	APIAddress netip.AddrPort
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
}

// Parse validates c and applies the defaults. It reports every problem,
// each with its field path under path (for example bgp.peers[1].address),
// the offending value and what would be valid. It checks that password
// files are readable; the speaker reads them again when it starts or is
// reconfigured, so that a rotated secret takes effect on Reconfigure.
// Cross-section checks (peer racks exist in the inventory, asn set when
// pools exist) are the caller's.
func (c *ConfigFile) Parse(path *field.Path) (Config, field.ErrorList) {
	var errs field.ErrorList
	cfg := Config{
		ListenPort:        c.ListenPort,
		HoldTime:          DefaultHoldTime,
		KeepaliveTime:     DefaultKeepaliveTime,
		GracefulRestart:   GracefulRestart{Enabled: true, RestartTime: DefaultRestartTime},
		MaxPathsPerPrefix: DefaultMaxPathsPerPrefix,
	}

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

	holdSet := c.HoldTime != nil
	if holdSet {
		h := c.HoldTime.Duration
		switch {
		case h%time.Second != 0:
			errs = append(errs, field.Invalid(path.Child("holdTime"), h.String(), "must be whole seconds"))
		case h < minHoldTime || h > maxHoldTime:
			errs = append(errs, field.Invalid(path.Child("holdTime"), h.String(), "must be between 3s and 65535s"))
		default:
			cfg.HoldTime = h
			if c.KeepaliveTime == nil {
				cfg.KeepaliveTime = (h / 3).Truncate(time.Second)
			}
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

	if c.MaxPathsPerPrefix != nil {
		m := *c.MaxPathsPerPrefix
		if m < 1 || m > maxMaxPathsPerPrefix {
			errs = append(errs, field.Invalid(path.Child("maxPathsPerPrefix"), m, fmt.Sprintf("must be between 1 and %d", maxMaxPathsPerPrefix)))
		} else {
			cfg.MaxPathsPerPrefix = int(m)
		}
	}

	names := make(map[string]int, len(c.Peers))
	addrs := make(map[netip.Addr]int, len(c.Peers))
	for i := range c.Peers {
		p, perrs := c.Peers[i].parse(path.Child("peers").Index(i), names, addrs, i)
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

func (pf *PeerFile) parse(path *field.Path, names map[string]int, addrs map[netip.Addr]int, index int) (Peer, field.ErrorList) {
	var errs field.ErrorList
	p := Peer{Name: pf.Name, Rack: pf.Rack, PasswordFile: pf.PasswordFile, Port: DefaultPeerPort}

	if pf.Name == "" {
		errs = append(errs, field.Required(path.Child("name"), "every peer needs a unique name"))
	} else if j, dup := names[pf.Name]; dup {
		errs = append(errs, field.Duplicate(path.Child("name"), fmt.Sprintf("%s (also peers[%d])", pf.Name, j)))
	} else {
		names[pf.Name] = index
	}

	if pf.Address == "" {
		errs = append(errs, field.Required(path.Child("address"), "the router's IPv4 or IPv6 address"))
	} else if a, err := netip.ParseAddr(pf.Address); err != nil || a.Zone() != "" {
		errs = append(errs, field.Invalid(path.Child("address"), pf.Address, "must be an IPv4 or IPv6 address without zone"))
	} else if a.IsUnspecified() || a.IsMulticast() {
		errs = append(errs, field.Invalid(path.Child("address"), pf.Address, "must be a unicast address"))
	} else {
		a = a.Unmap()
		if j, dup := addrs[a]; dup {
			errs = append(errs, field.Duplicate(path.Child("address"), fmt.Sprintf("%s (also peers[%d])", pf.Address, j)))
		} else {
			addrs[a] = index
		}
		p.Address = a
	}

	if pf.ASN == 0 {
		errs = append(errs, field.Required(path.Child("asn"), "the router's ASN"))
	} else if msg := validASN(pf.ASN); msg != "" {
		errs = append(errs, field.Invalid(path.Child("asn"), pf.ASN, msg))
	} else {
		p.ASN = uint32(pf.ASN)
	}

	if pf.Port != 0 {
		if pf.Port < 1 || pf.Port > 65535 {
			errs = append(errs, field.Invalid(path.Child("port"), pf.Port, "must be a TCP port 1-65535 (default 179)"))
		} else {
			p.Port = uint16(pf.Port)
		}
	}

	if pf.EBGPMultihop < 0 || pf.EBGPMultihop > 255 {
		errs = append(errs, field.Invalid(path.Child("ebgpMultihop"), pf.EBGPMultihop, "must be a TTL 0-255 (0: directly connected)"))
	} else {
		p.EBGPMultihop = uint8(pf.EBGPMultihop)
	}

	if pf.LocalAddress != "" {
		a, err := netip.ParseAddr(pf.LocalAddress)
		switch {
		case err != nil || a.Zone() != "":
			errs = append(errs, field.Invalid(path.Child("localAddress"), pf.LocalAddress, "must be an IPv4 or IPv6 address without zone"))
		case a.IsUnspecified() || a.IsMulticast():
			errs = append(errs, field.Invalid(path.Child("localAddress"), pf.LocalAddress, "must be a unicast address"))
		case p.Address.IsValid() && a.Unmap().Is4() != p.Address.Is4():
			errs = append(errs, field.Invalid(path.Child("localAddress"), pf.LocalAddress, "must be of the same address family as address"))
		default:
			p.LocalAddress = a.Unmap()
		}
	}

	if pf.PasswordFile != "" {
		if _, err := readPassword(pf.PasswordFile); err != nil {
			errs = append(errs, field.Invalid(path.Child("passwordFile"), pf.PasswordFile, err.Error()))
		}
	}
	return p, errs
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

// readPassword returns the TCP MD5 secret in file. A single trailing
// newline (as written by echo or many editors) is not part of the secret.
func readPassword(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("cannot read the password file: %w", err)
	}
	b = bytes.TrimSuffix(b, []byte("\n"))
	b = bytes.TrimSuffix(b, []byte("\r"))
	switch {
	case len(b) == 0:
		return "", fmt.Errorf("the password file is empty")
	case len(b) > maxMD5KeyLen:
		return "", fmt.Errorf("the password is %d bytes, TCP MD5 allows at most %d", len(b), maxMD5KeyLen)
	}
	return string(b), nil
}
