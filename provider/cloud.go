// Package provider implements cloudprovider.Interface for a bare-metal cloud:
// racks with a top-of-rack router each, a machine inventory, and blocks of
// public addresses announced over BGP.
package provider

import (
	"context"
	"fmt"
	"io"
	"sync/atomic"

	cloudprovider "k8s.io/cloud-provider"
	"k8s.io/klog/v2"

	"github.com/baremetal-ccm/baremetal-ccm/provider/config"
)

// Name is the name the provider registers under: --cloud-provider=baremetal.
const Name = "baremetal"

// cloud answers the upstream controllers from the cloud config in force.
type cloud struct {
	cfg atomic.Pointer[config.Config]
}

var (
	_ cloudprovider.Interface   = (*cloud)(nil)
	_ cloudprovider.InstancesV2 = (*cloud)(nil)
)

// New builds the provider from the cloud config file at path and keeps it in
// step with the file until ctx ends (see [Options.ReloadInterval]).
func New(ctx context.Context, opts Options) (cloudprovider.Interface, error) {
	cfg, err := config.Load(opts.ConfigFile)
	if err != nil {
		return nil, err
	}
	c := newCloud(cfg)
	if opts.ReloadInterval > 0 {
		w := &configWatcher{path: opts.ConfigFile, interval: opts.ReloadInterval, apply: c.applyConfig}
		go w.run(ctx)
	}
	return c, nil
}

// Register makes the provider known to k8s.io/cloud-provider under [Name],
// without reloading: for callers that only have the file's contents.
func Register() {
	cloudprovider.RegisterCloudProvider(Name, func(r io.Reader) (cloudprovider.Interface, error) {
		if r == nil {
			return nil, fmt.Errorf("--cloud-config is required for the %s provider", Name)
		}
		data, err := io.ReadAll(r)
		if err != nil {
			return nil, fmt.Errorf("reading cloud config: %w", err)
		}
		cfg, err := config.Parse(data)
		if err != nil {
			return nil, fmt.Errorf("cloud config: %w", err)
		}
		return newCloud(cfg), nil
	})
}

func newCloud(cfg *config.Config) *cloud {
	c := &cloud{}
	c.cfg.Store(cfg)
	return c
}

// config returns the cloud config in force. It is never modified: a reload
// replaces it whole.
func (c *cloud) config() *config.Config { return c.cfg.Load() }

func (c *cloud) applyConfig(ctx context.Context, cfg *config.Config) error {
	c.cfg.Store(cfg)
	klog.FromContext(ctx).Info("Applied new cloud config", "racks", len(cfg.Racks), "machines", len(cfg.Machines))
	return nil
}

// Initialize runs on the elected leader only, once it has won.
func (c *cloud) Initialize(cloudprovider.ControllerClientBuilder, <-chan struct{}) {}

// LoadBalancer is not offered yet.
func (c *cloud) LoadBalancer() (cloudprovider.LoadBalancer, bool) { return nil, false }

// Instances is the legacy interface; InstancesV2 replaces it.
func (c *cloud) Instances() (cloudprovider.Instances, bool) { return nil, false }

// InstancesV2 answers from the machine inventory.
func (c *cloud) InstancesV2() (cloudprovider.InstancesV2, bool) { return c, true }

// Zones is deprecated in favour of InstancesV2's metadata.
func (c *cloud) Zones() (cloudprovider.Zones, bool) { return nil, false }

// Clusters is not offered.
func (c *cloud) Clusters() (cloudprovider.Clusters, bool) { return nil, false }

// Routes is not offered: pod networks are the CNI's business here, and
// returning false keeps the route controller (and --cluster-cidr) out.
func (c *cloud) Routes() (cloudprovider.Routes, bool) { return nil, false }

// ProviderName returns [Name].
func (c *cloud) ProviderName() string { return Name }

// HasClusterID is true: one cloud config serves one cluster, so nothing in
// the cloud needs tagging with a cluster ID.
func (c *cloud) HasClusterID() bool { return true }
