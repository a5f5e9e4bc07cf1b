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
	sp := c.speaker()
	if sp == nil {
		return nil
	}
	peers := sp.Peers()
	if len(peers) == 0 {
		return nil
	}
	for _, p := range peers {
		if p.State == bgp.StateEstablished {
			return nil
		}
	}
	return fmt.Errorf("none of the %d BGP sessions is Established", len(peers))
}

// onSync takes the outcome of each full sync of the announcer.
func (c *cloud) onSync(an *announcements) {
	c.synced.Store(true)
	c.lastSync.Store(an)
	c.status.observe(an)
}
