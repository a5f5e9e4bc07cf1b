package provider

import (
	"errors"
	"fmt"

	"github.com/baremetal-ccm/baremetal-ccm/bgp"
)

// Ready tells whether this replica announces: its cloud config is loaded
// (it is, once the cloud exists), the announcer has handed the speaker
// the whole desired state at least once, and at least one of its BGP
// sessions is Established. A replica with no router to peer with is ready
// once it has synced. The DaemonSet's readiness probe asks it (/readyz),
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
	want := replicaPeers(cfg.BGP.Peers, c.replicaRack(cfg))
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
