// Package provider implements cloudprovider.Interface for a bare-metal cloud:
// racks with a top-of-rack router each, a machine inventory, and blocks of
// public addresses announced over BGP.
package provider

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	corelisters "k8s.io/client-go/listers/core/v1"
	cloudprovider "k8s.io/cloud-provider"
	"k8s.io/klog/v2"

	"github.com/baremetal-ccm/baremetal-ccm/ipam"
	"github.com/baremetal-ccm/baremetal-ccm/provider/config"
	"github.com/baremetal-ccm/baremetal-ccm/provider/health"
)

// Name is the name the provider registers under: --cloud-provider=baremetal.
const Name = "baremetal"

// cloud answers the upstream controllers from the cloud config in force.
type cloud struct {
	cfg atomic.Pointer[config.Config]
	// opts are the process's own settings (flags), for reloads.
	opts Options

	// alloc holds the addresses; only the leader allocates, after
	// Initialize has restored it from the Services' status.
	alloc     *ipam.Allocator
	announcer *announcer
	routeSync *routeSyncer
	checker   *health.Checker
	events    *events
	status    *statusWriter
	// synced is set once the announcer has synced everything, and
	// lastSync holds the outcomes it reported last.
	synced atomic.Bool
	// syncedAt is the time of the first full sync, in Unix nanoseconds.
	syncedAt atomic.Int64
	lastSync atomic.Pointer[announcements]
	// statusObservedAll is set once the status writer has been handed
	// outcomes about every Service (onSync).
	statusObservedAll atomic.Bool
	nodes             corelisters.NodeLister
	speakers          speakerSlot
	// sessions stay closed until the first sync (sessions.go).
	sessions sessionGate
	// pools are the address ranges this process has had in force: the
	// only addresses any replica announces.
	pools poolHistory

	// reloadMu serialises changes of the config in force: the first one
	// and each reload. It guards peering.
	reloadMu sync.Mutex
	peering  peeringLog
}

var (
	_ cloudprovider.Interface   = (*cloud)(nil)
	_ cloudprovider.InstancesV2 = (*cloud)(nil)
)

// New builds the provider from the cloud config file and starts what runs
// on every replica, leader or not, until ctx ends: the config reload, the
// BGP speaker, the node health checks and the announcer.
func New(ctx context.Context, opts Options) (cloudprovider.Interface, error) {
	if opts.Client == nil {
		return nil, errors.New("the cloud provider needs a Kubernetes client")
	}
	cfg, err := config.Load(opts.ConfigFile)
	if err != nil {
		return nil, err
	}
	alloc, err := ipam.New(cfg.Pools)
	if err != nil {
		return nil, err
	}
	c := &cloud{opts: opts, alloc: alloc, events: newEvents(ctx, opts.Client)}
	c.cfg.Store(cfg)
	c.pools.commit(c.pools.with(cfg.Pools))
	c.reloadMu.Lock()
	err = c.applySpeaker(ctx, cfg, c.pools.prefixes())
	c.reloadMu.Unlock()
	if err != nil {
		return nil, err
	}

	c.checker = health.NewChecker(cfg.HealthCheck, func() { c.announcer.healthChanged() })
	factory := opts.Informers
	if factory == nil {
		factory = NewInformerFactory(opts.Client, 0)
	}
	svcInf := factory.Core().V1().Services()
	c.status = newStatusWriter(opts.Client, svcInf.Informer(), svcInf.Lister(), c.events, c.config, alloc, c.pools.contains)
	c.announcer = newAnnouncer(factory, announcerDeps{
		config:      c.config,
		speaker:     c.speaker,
		alloc:       alloc,
		health:      c.checker,
		mayAnnounce: c.pools.contains,
		warn:        c.events,
		report:      c.onSync,
	})
	c.routeSync = newRouteSyncer(factory, routeSyncerDeps{
		config:  c.config,
		speaker: c.routeSpeaker,
		vips:    c.pools.prefixes,
		warn:    c.events.withOwnMemory(),
	})
	watchWithoutResync(factory.Core().V1().Services().Informer(), statusSettler{c: c, log: klog.FromContext(ctx)})
	nodeInf := factory.Core().V1().Nodes()
	c.nodes = nodeInf.Lister()
	watchWithoutResync(nodeInf.Informer(), nodeTargets{c})
	// On the leader the upstream controllers start it again once they
	// have asked for their informers; every replica needs it now.
	factory.Start(ctx.Done())
	go c.checker.Run(ctx)
	go c.announcer.run(ctx)
	go c.status.run(ctx)
	go c.watchSessions(ctx)
	go c.routeSync.run(ctx)
	go c.openSessionsWhenSynced(ctx)
	go func() {
		<-ctx.Done()
		c.reloadMu.Lock()
		defer c.reloadMu.Unlock()
		c.stopSpeaker()
	}()
	if opts.ReloadInterval > 0 {
		w := &configWatcher{path: opts.ConfigFile, interval: opts.ReloadInterval, apply: c.applyConfig}
		go w.run(ctx)
	}
	if opts.RegisterCollector != nil {
		opts.RegisterCollector(&collector{c: c}, &alertCollector{c: c})
	}
	return c, nil
}

// config returns the cloud config in force. It is never modified: a reload
// replaces it whole.
func (c *cloud) config() *config.Config { return c.cfg.Load() }

// LoadBalancer offers type LoadBalancer Services.
func (c *cloud) LoadBalancer() (cloudprovider.LoadBalancer, bool) { return c, true }

// Instances is the legacy interface; InstancesV2 replaces it.
func (c *cloud) Instances() (cloudprovider.Instances, bool) { return nil, false }

// InstancesV2 answers from the machine inventory.
func (c *cloud) InstancesV2() (cloudprovider.InstancesV2, bool) { return c, true }

// Zones is deprecated in favour of InstancesV2's metadata.
func (c *cloud) Zones() (cloudprovider.Zones, bool) { return nil, false }

// Clusters is not offered.
func (c *cloud) Clusters() (cloudprovider.Clusters, bool) { return nil, false }

// ProviderName returns [Name].
func (c *cloud) ProviderName() string { return Name }

// HasClusterID is true: one cloud config serves one cluster, so nothing in
// the cloud needs tagging with a cluster ID.
func (c *cloud) HasClusterID() bool { return true }
