package provider

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"k8s.io/klog/v2"

	"github.com/baremetal-ccm/baremetal-ccm/bgp"
	"github.com/baremetal-ccm/baremetal-ccm/provider/config"
)

// speakerSlot holds the running speaker. Its lock guards the pointer only:
// starting, reconfiguring (which may restart GoBGP) and stopping happen
// outside it, so that EnsureLoadBalancer and /metrics never wait for a
// reload.
type speakerSlot struct {
	mu sync.RWMutex
	sp *bgp.Speaker
}

func (s *speakerSlot) get() *bgp.Speaker {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.sp
}

func (s *speakerSlot) swap(sp *bgp.Speaker) (old *bgp.Speaker) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, s.sp = s.sp, sp
	return old
}

// speaker returns the running speaker, or nil (as an interface) when the
// config has no bgp section.
func (c *cloud) speaker() speaker {
	if sp := c.speakers.get(); sp != nil {
		return sp
	}
	return nil
}

// applySpeaker starts, reconfigures or stops the speaker to match cfg,
// exporting only exports. Callers hold reloadMu.
func (c *cloud) applySpeaker(ctx context.Context, cfg *config.Config, exports []netip.Prefix) error {
	if cfg.BGP.ASN == 0 {
		c.stopSpeaker()
		return nil
	}
	bgpCfg := cfg.BGP
	bgpCfg.Peers = c.choosePeers(ctx, cfg)
	id, err := routerID(bgpCfg.RouterID, c.opts.RouterID)
	if err != nil {
		return err
	}
	bgpCfg.RouterID = id
	bgpCfg.APIAddress = c.opts.BGPAPIAddress
	bgpCfg.ExportPrefixes = exports
	bgpCfg.Peers = c.sessions.peers(bgpCfg.Peers) // none before the first sync
	if cfg.Routes.Enabled {
		bgpCfg.RoutePrefixes = cfg.Routes.ClusterCIDRs
	}
	if sp := c.speakers.get(); sp != nil {
		if err := sp.Reconfigure(ctx, bgpCfg); err != nil {
			return fmt.Errorf("reconfiguring the BGP speaker: %w", err)
		}
		return nil
	}
	sp, err := bgp.NewSpeaker(ctx, bgpCfg)
	if err != nil {
		return fmt.Errorf("starting the BGP speaker: %w", err)
	}
	c.speakers.swap(sp)
	return nil
}

// choosePeers returns the peers of this replica (see replicaPeers) and
// logs which they are when that changes.
func (c *cloud) choosePeers(ctx context.Context, cfg *config.Config) []bgp.Peer {
	rack := c.replicaRack(cfg)
	peers := replicaPeers(cfg.BGP.Peers, rack)
	names := peerNames(peers)
	if c.peering.changed(rack, names) {
		logger := klog.FromContext(ctx)
		logger.Info("BGP peers of this replica", "rack", rack, "node", c.opts.NodeName, "peers", names)
		if rack == "" && len(peers) < len(cfg.BGP.Peers) {
			logger.Info("Warning: this replica's rack is unknown (neither the inventory entry of --node-name nor the rack subnets hold it, see $NODE_IP): it peers only with the routers without dialFrom",
				"skipped", len(cfg.BGP.Peers)-len(peers))
		}
	}
	return peers
}

// peeringLog remembers the peers logged last.
type peeringLog struct {
	logged bool
	rack   string
	names  []string
}

func (l *peeringLog) changed(rack string, names []string) bool {
	if l.logged && l.rack == rack && slices.Equal(l.names, names) {
		return false
	}
	l.logged, l.rack, l.names = true, rack, names
	return true
}

// stopSpeaker stops the speaker, if one runs. Callers hold reloadMu.
func (c *cloud) stopSpeaker() {
	if old := c.speakers.swap(nil); old != nil {
		old.Stop()
	}
}
