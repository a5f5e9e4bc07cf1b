package provider

import (
	"errors"
	"fmt"
	"os"

	"github.com/baremetal-ccm/baremetal-ccm/bgp"
)

// Ready tells whether this replica announces: its cloud config is loaded
// (it is, once the cloud exists), the announcer has handed the speaker
// the whole desired state at least once, and at least one of its BGP
// sessions is Established. A replica with no router to peer with is ready
// once it has synced, unless that is because its rack is unknown. The DaemonSet's readiness probe asks it (/readyz),
// so that a rolling update takes the next replica down only once the new
// one announces.
func (c *cloud) Ready() error {
	if !c.synced.Load() {
		return errors.New("the announcer has not synced yet")
	}
	cfg := c.config()
	if cfg.BGP.ASN == 0 {
		return nil
	}
	// The routers this replica is to peer with, whether or not their
	// sessions are configured yet (they open after the first sync).
	rack := c.replicaRack(cfg)
	want := replicaPeers(cfg.BGP.Peers, rack)
	if len(want) == 0 && rack == "" && len(cfg.BGP.Peers) > 0 {
		// Every router has dialFrom and this replica's rack is unknown:
		// it announces nothing, which is a misconfiguration, not a
		// replica with nothing to do.
		return fmt.Errorf("the rack of this replica's node is unknown (--node-name %q, NODE_IP %q): it peers with none of the %d routers, which all have dialFrom", c.opts.NodeName, os.Getenv("NODE_IP"), len(cfg.BGP.Peers))
	}
	if len(want) == 0 {
		return nil
	}
	if sp := c.speaker(); sp != nil {
		for _, p := range sp.Peers() {
			if p.State == bgp.StateEstablished {
				return nil
			}
		}
	}
	return fmt.Errorf("none of the %d BGP sessions is Established", len(want))
}

// onSync takes the outcome of each full sync of the announcer. The
// Services' conditions follow it once the sessions are open: before, no
// router could have been reached, and saying so would be a moment's
// noise at every start.
func (c *cloud) onSync(an *announcements) {
	c.synced.Store(true)
	c.lastSync.Store(an)
	if c.sessions.open.Load() {
		c.status.observe(an)
	}
}
