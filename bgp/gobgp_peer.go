package bgp

import (
	"net/netip"
	"time"

	api "github.com/osrg/gobgp/v3/api"
)

// apiPeer is the GoBGP neighbor for n. Both unicast families are enabled
// on every session (MP-BGP), each with ADD-PATH send, the prefix limit
// and, with graceful restart, its own GR flag (GoBGP may send nothing to a
// GR router for a family that GR does not cover).
func apiPeer(n *neighbor) *api.Peer {
	gr := n.GracefulRestart
	peer := &api.Peer{
		Conf: &api.PeerConf{
			NeighborAddress: n.Address.String(),
			PeerAsn:         n.ASN,
			AuthPassword:    n.Password,
			Description:     n.Name,
		},
		Timers: &api.Timers{Config: &api.TimersConfig{
			HoldTime:          uint64(n.HoldTime / time.Second),
			KeepaliveInterval: uint64(n.KeepaliveTime / time.Second),
			ConnectRetry:      defaultConnectRetrySecond,
		}},
		Transport: &api.Transport{RemotePort: uint32(n.Port)},
	}
	if n.LocalAddress.IsValid() {
		peer.Transport.LocalAddress = n.LocalAddress.String()
	}
	if n.EBGPMultihop > 0 {
		peer.EbgpMultihop = &api.EbgpMultihop{Enabled: true, MultihopTtl: uint32(n.EBGPMultihop)}
	}
	if n.TTLSecurity > 0 {
		// GTSM (RFC 5082): packets from a router n hops away arrive
		// with TTL 256-n at least.
		peer.TtlSecurity = &api.TtlSecurity{Enabled: true, TtlMin: 256 - uint32(n.TTLSecurity)}
	}
	if gr.Enabled {
		peer.GracefulRestart = &api.GracefulRestart{Enabled: true, RestartTime: uint32(gr.RestartTime / time.Second)}
	}
	for _, fam := range []*api.Family{familyIPv4, familyIPv6} {
		as := &api.AfiSafi{
			Config:   &api.AfiSafiConfig{Family: fam, Enabled: true},
			AddPaths: &api.AddPaths{Config: &api.AddPathsConfig{SendMax: uint32(n.MaxPathsPerPrefix)}},
		}
		if n.MaxPrefixes > 0 {
			as.PrefixLimits = &api.PrefixLimit{Family: fam, MaxPrefixes: n.MaxPrefixes}
		}
		if gr.Enabled {
			as.MpGracefulRestart = &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: true}}
		}
		peer.AfiSafis = append(peer.AfiSafis, as)
	}
	return peer
}

func sessionState(s api.PeerState_SessionState) SessionState {
	switch s {
	case api.PeerState_IDLE:
		return StateIdle
	case api.PeerState_CONNECT:
		return StateConnect
	case api.PeerState_ACTIVE:
		return StateActive
	case api.PeerState_OPENSENT:
		return StateOpenSent
	case api.PeerState_OPENCONFIRM:
		return StateOpenConfirm
	case api.PeerState_ESTABLISHED:
		return StateEstablished
	}
	return StateUnknown
}

// decodePeer turns GoBGP's view of a neighbor into ours.
func decodePeer(p *api.Peer) (peerState, bool) {
	if p.Conf == nil {
		return peerState{}, false
	}
	a, err := netip.ParseAddr(p.Conf.NeighborAddress)
	if err != nil {
		return peerState{}, false
	}
	st := peerState{Address: a, State: StateUnknown}
	if p.State != nil {
		st.State = sessionState(p.State.SessionState)
		if sent := p.State.GetMessages().GetSent(); sent != nil {
			st.UpdatesSent = sent.Update
		}
	}
	if p.Timers != nil && p.Timers.State != nil {
		ts := p.Timers.State.Downtime
		if st.State == StateEstablished {
			ts = p.Timers.State.Uptime
		}
		if ts != nil && ts.GetSeconds() > 0 {
			st.Since = ts.AsTime()
		}
	}
	st.Families, st.AddPath = remoteCapabilities(p)
	return st, true
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
