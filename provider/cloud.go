// Package provider implements cloudprovider.Interface for a bare-metal cloud:
// racks with a top-of-rack router each, a machine inventory, and blocks of
// public addresses announced over BGP.
package provider

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
	cloudprovider "k8s.io/cloud-provider"
	"k8s.io/klog/v2"

	"github.com/baremetal-ccm/baremetal-ccm/bgp"
	"github.com/baremetal-ccm/baremetal-ccm/ipam"
	"github.com/baremetal-ccm/baremetal-ccm/provider/config"
	"github.com/baremetal-ccm/baremetal-ccm/provider/health"
	svccontract "github.com/baremetal-ccm/baremetal-ccm/provider/service"
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
	checker   *health.Checker
	client    kubernetes.Interface
	recorder  record.EventRecorder

	// spMu guards sp: the speaker is started, replaced or stopped on a
	// config reload.
	spMu sync.Mutex
	sp   *bgp.Speaker
}

var (
	_ cloudprovider.Interface   = (*cloud)(nil)
	_ cloudprovider.InstancesV2 = (*cloud)(nil)
)

// New builds the provider from the cloud config file and starts what runs
// on every replica, leader or not, until ctx ends: the config reload, the
// BGP speaker, the node health checks and the announcer.
func New(ctx context.Context, opts Options) (cloudprovider.Interface, error) {
	cfg, err := config.Load(opts.ConfigFile)
	if err != nil {
		return nil, err
	}
	c := newCloud(cfg)
	c.opts = opts
	if c.alloc, err = ipam.New(cfg.Pools); err != nil {
		return nil, err
	}
	if opts.Client == nil {
		return c, nil
	}
	c.client = opts.Client
	source.Store(c)
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: opts.Client.CoreV1().Events("")})
	c.recorder = broadcaster.NewRecorder(scheme.Scheme, v1.EventSource{Component: "baremetal-cloud-controller-manager"})

	if err := c.startSpeaker(ctx, cfg); err != nil {
		return nil, err
	}
	c.checker = health.NewChecker(cfg.HealthCheck, func() { c.announcer.Trigger() })
	a, factory := newAnnouncer(opts.Client, c.config, c.speaker, c.alloc, c.checker)
	c.announcer = a
	_, _ = factory.Core().V1().Nodes().Informer().AddEventHandler(nodeTargets{c})
	factory.Start(ctx.Done())
	go c.checker.Run(ctx)
	go a.run(ctx)
	go func() {
		<-ctx.Done()
		broadcaster.Shutdown()
		c.spMu.Lock()
		defer c.spMu.Unlock()
		if c.sp != nil {
			c.sp.Stop()
			c.sp = nil
		}
	}()
	if opts.ReloadInterval > 0 {
		w := &configWatcher{path: opts.ConfigFile, interval: opts.ReloadInterval, apply: c.applyConfig}
		go w.run(ctx)
	}
	return c, nil
}

// Register makes the provider known to k8s.io/cloud-provider under [Name],
// without reloading, announcing or a client: for callers that only have the
// file's contents. The binary uses [New].
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

// speaker returns the running speaker, or nil (as an interface) when the
// config has no bgp section.
func (c *cloud) speaker() speaker {
	c.spMu.Lock()
	defer c.spMu.Unlock()
	if c.sp == nil {
		return nil
	}
	return c.sp
}

// startSpeaker starts, reconfigures or stops the speaker to match cfg.
func (c *cloud) startSpeaker(ctx context.Context, cfg *config.Config) error {
	c.spMu.Lock()
	defer c.spMu.Unlock()
	if cfg.BGP.ASN == 0 {
		if c.sp != nil {
			c.sp.Stop()
			c.sp = nil
		}
		return nil
	}
	bgpCfg := cfg.BGP
	id, err := routerID(bgpCfg.RouterID, c.opts.RouterID)
	if err != nil {
		return err
	}
	bgpCfg.RouterID = id
	bgpCfg.APIAddress = c.opts.BGPAPIAddress
	if c.sp != nil {
		if err := c.sp.Reconfigure(ctx, bgpCfg); err != nil {
			return fmt.Errorf("reconfiguring the BGP speaker: %w", err)
		}
		return nil
	}
	sp, err := bgp.NewSpeaker(ctx, bgpCfg)
	if err != nil {
		return fmt.Errorf("starting the BGP speaker: %w", err)
	}
	c.sp = sp
	return nil
}

// applyConfig puts a changed cloud config in force. Addresses held by live
// Services never change: pools that shrink leave stale assignments, which
// are reported.
func (c *cloud) applyConfig(ctx context.Context, cfg *config.Config) error {
	logger := klog.FromContext(ctx)
	if c.client != nil {
		if err := c.startSpeaker(ctx, cfg); err != nil {
			return err
		}
	}
	stale, err := c.alloc.SetPools(cfg.Pools)
	if err != nil {
		return fmt.Errorf("applying pools: %w", err)
	}
	for _, s := range stale {
		logger.Info("Warning: a Service keeps an address that is in no pool any more", "service", klog.KRef(s.Namespace, s.Name), "address", s.Addr)
	}
	if c.checker != nil {
		c.checker.SetConfig(cfg.HealthCheck)
	}
	c.cfg.Store(cfg)
	if c.announcer != nil {
		c.announcer.Trigger()
		c.updateHealthTargets()
	}
	logger.Info("Applied new cloud config", "racks", len(cfg.Racks), "machines", len(cfg.Machines), "pools", len(cfg.Pools), "peers", len(cfg.BGP.Peers))
	return nil
}

// Initialize runs on the elected leader only, once it has won, before the
// service controller starts: it restores the allocator from the Services'
// status, so that no address changes or is handed out twice.
func (c *cloud) Initialize(_ cloudprovider.ControllerClientBuilder, stop <-chan struct{}) {
	if c.client == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	logger := klog.FromContext(ctx).WithName("restore")
	for {
		err := c.restore(ctx)
		if err == nil {
			return
		}
		logger.Error(err, "Restoring addresses from the Services' status failed; retrying")
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func (c *cloud) restore(ctx context.Context) error {
	list, err := c.client.CoreV1().Services(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("listing services: %w", err)
	}
	var ours []*v1.Service
	var claims []ipam.Claim
	for i := range list.Items {
		s := &list.Items[i]
		if svccontract.Ours(s) {
			ours = append(ours, s)
			claims = append(claims, svccontract.Claim(s))
		}
	}
	report := c.alloc.Restore(claims)
	byKey := map[string]*v1.Service{}
	for _, s := range ours {
		byKey[s.Namespace+"/"+s.Name] = s
	}
	for _, r := range report.Rejected {
		if s := byKey[r.Namespace+"/"+r.Name]; s != nil {
			c.event(s, v1.EventTypeWarning, "AddressConflict", fmt.Sprintf("address %s in status was not kept: %v; a new address will be allocated", r.IP, r.Err))
		}
	}
	for _, st := range report.Stale {
		if s := byKey[st.Namespace+"/"+st.Name]; s != nil {
			c.event(s, v1.EventTypeWarning, "AddressOutsidePools", fmt.Sprintf("address %s is in no configured pool; the Service keeps it until it is deleted", st.Addr))
		}
	}
	klog.FromContext(ctx).Info("Restored addresses from the Services' status", "services", len(ours), "addresses", len(report.Restored), "rejected", len(report.Rejected), "stale", len(report.Stale))
	c.announcer.Trigger()
	return nil
}

func (c *cloud) event(svc *v1.Service, typ, reason, msg string) {
	if c.recorder != nil {
		c.recorder.Event(svc, typ, reason, msg)
	}
}

// nodeTargets keeps the health checker's targets equal to the nodes.
type nodeTargets struct{ c *cloud }

func (t nodeTargets) OnAdd(any, bool)   { t.c.updateHealthTargets() }
func (t nodeTargets) OnUpdate(any, any) { t.c.updateHealthTargets() }
func (t nodeTargets) OnDelete(any)      { t.c.updateHealthTargets() }

// updateHealthTargets probes each node at its first InternalIP (IPv4
// first: kube-proxy's healthz listens on all addresses by default).
func (c *cloud) updateHealthTargets() {
	nodes, err := c.announcer.nodes.List(everything)
	if err != nil {
		return
	}
	port := uint16(c.config().HealthCheck.Port)
	targets := make(map[string]netip.AddrPort, len(nodes))
	for _, n := range nodes {
		cand := newCandidate(n, c.config())
		var best netip.Addr
		for _, a := range cand.addrs {
			if !best.IsValid() || (a.Is4() && !best.Is4()) {
				best = a
			}
		}
		if best.IsValid() {
			targets[n.Name] = netip.AddrPortFrom(best, port)
		}
	}
	c.checker.SetTargets(targets)
}

// LoadBalancer offers type LoadBalancer Services.
func (c *cloud) LoadBalancer() (cloudprovider.LoadBalancer, bool) { return c, c.client != nil }

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
