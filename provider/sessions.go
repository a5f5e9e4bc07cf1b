package provider

import (
	"context"
	"sync/atomic"
	"time"

	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/baremetal-ccm/baremetal-ccm/bgp"
)

// sessionRetryInterval spaces the attempts to open the sessions when
// reconfiguring the speaker fails.
const sessionRetryInterval = 5 * time.Second

// sessionGate keeps the speaker's BGP sessions closed until this replica
// has handed the speaker its whole desired state once: the VIPs and the
// pod routes. A router that kept our paths through a graceful restart
// drops the stale ones when the new session's End-of-RIB arrives, and
// GoBGP sends that as soon as the session is up: opened before the first
// sync, the session would withdraw, for a moment, everything that only
// this process announces (every replica restarted at once, or a single
// replica).
type sessionGate struct{ open atomic.Bool }

// peers returns the peers to configure: none while the gate is closed.
func (g *sessionGate) peers(p []bgp.Peer) []bgp.Peer {
	if g.open.Load() {
		return p
	}
	return nil
}

// openSessionsWhenSynced waits for the informers, syncs the VIPs and the
// routes once, and then opens the sessions, retrying until it can or ctx
// ends.
func (c *cloud) openSessionsWhenSynced(ctx context.Context) {
	log := klog.FromContext(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), append([]cache.InformerSynced{c.routeSync.hasSynced}, c.announcer.hasSynced...)...) {
		return
	}
	// Both apply what is valid and report the rest; the sessions open
	// with what they applied.
	if err := c.announcer.syncAll(ctx); err != nil {
		log.Error(err, "First sync of the VIPs incomplete")
	}
	if err := c.routeSync.sync(ctx); err != nil {
		log.Error(err, "First sync of the pod routes incomplete")
	}
	for {
		err := c.openSessions(ctx)
		if err == nil {
			return
		}
		log.Error(err, "Opening the BGP sessions failed; retrying", "after", sessionRetryInterval)
		select {
		case <-ctx.Done():
			return
		case <-time.After(sessionRetryInterval):
		}
	}
}

// openSessions opens the gate and configures the peers of the config in
// force.
func (c *cloud) openSessions(ctx context.Context) error {
	c.reloadMu.Lock()
	defer c.reloadMu.Unlock()
	if ctx.Err() != nil {
		return nil
	}
	c.sessions.open.Store(true)
	cfg := c.config()
	if err := c.applySpeaker(ctx, cfg, c.pools.prefixes()); err != nil {
		return err
	}
	klog.FromContext(ctx).Info("Desired state handed to the speaker: opening the BGP sessions", "peers", len(cfg.BGP.Peers))
	return nil
}
