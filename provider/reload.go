package provider

import (
	"context"
	"errors"
	"fmt"

	"k8s.io/klog/v2"

	"github.com/baremetal-ccm/baremetal-ccm/provider/config"
)

// applyConfig puts a changed cloud config in force, or changes nothing.
// Addresses held by live Services never change: pools that shrink leave
// stale assignments, which are reported. The pools go first because they
// can be put back exactly; a speaker that cannot take the new settings
// keeps (or has restored) its old ones, and the old pools come back.
func (c *cloud) applyConfig(ctx context.Context, cfg *config.Config) error {
	c.reloadMu.Lock()
	defer c.reloadMu.Unlock()
	logger := klog.FromContext(ctx)
	old := c.config()
	stale, err := c.alloc.SetPools(cfg.Pools)
	if err != nil {
		return fmt.Errorf("applying pools: %w", err)
	}
	pools := c.pools.with(cfg.Pools)
	if err := c.applySpeaker(ctx, cfg, pools.Prefixes()); err != nil {
		if _, rerr := c.alloc.SetPools(old.Pools); rerr != nil {
			return errors.Join(err, fmt.Errorf("restoring the previous pools: %w", rerr))
		}
		return err
	}
	c.pools.commit(pools)
	for _, s := range stale {
		logger.Info("Warning: a Service keeps an address that is in no pool any more", "service", klog.KRef(s.Namespace, s.Name), "address", s.Addr)
	}
	c.checker.SetConfig(cfg.HealthCheck)
	c.cfg.Store(cfg)
	c.announcer.Trigger()
	c.routeSync.Trigger()
	c.updateHealthTargets()
	logger.Info("Applied new cloud config", "racks", len(cfg.Racks), "machines", len(cfg.Machines), "pools", len(cfg.Pools), "peers", len(cfg.BGP.Peers))
	return nil
}
