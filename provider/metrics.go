package provider

import (
	"math/big"
	"sync"

	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"

	"github.com/baremetal-ccm/baremetal-ccm/bgp"
)

const metricsSubsystem = "baremetal_ccm"

var (
	configReloads = metrics.NewCounterVec(&metrics.CounterOpts{
		Subsystem:      metricsSubsystem,
		Name:           "config_reloads_total",
		Help:           "Changes of the cloud config file seen, by result: applied, invalid (rejected by validation) or failed.",
		StabilityLevel: metrics.ALPHA,
	}, []string{"result"})

	ensureDuration = metrics.NewHistogram(&metrics.HistogramOpts{
		Subsystem:      metricsSubsystem,
		Name:           "ensure_load_balancer_duration_seconds",
		Help:           "Time EnsureLoadBalancer takes: allocation and handing the paths to the BGP speaker.",
		Buckets:        []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5},
		StabilityLevel: metrics.ALPHA,
	})

	poolAddressesDesc = metrics.NewDesc(metricsSubsystem+"_pool_addresses",
		"Addresses of a pool, by family and state: total (that may be handed out) or in_use.",
		[]string{"pool", "family", "state"}, nil, metrics.ALPHA, "")
	sessionUpDesc = metrics.NewDesc(metricsSubsystem+"_bgp_session_up",
		"1 when the BGP session with the router is Established, else 0.",
		[]string{"peer"}, nil, metrics.ALPHA, "")
	pathsDesc = metrics.NewDesc(metricsSubsystem+"_bgp_paths_announced",
		"Paths this replica sends the router, by family.",
		[]string{"peer", "family"}, nil, metrics.ALPHA, "")
	singlePathDesc = metrics.NewDesc(metricsSubsystem+"_bgp_peer_single_path",
		"1 when the router did not negotiate ADD-PATH and gets one path per VIP only.",
		[]string{"peer"}, nil, metrics.ALPHA, "")
	prefixLimitDesc = metrics.NewDesc(metricsSubsystem+"_bgp_prefix_limit_exceeded_total",
		"Sessions closed because the router sent more prefixes than its maxPrefixes; the session stays down until the peer is configured anew or the replica restarts.",
		[]string{"peer"}, nil, metrics.ALPHA, "")
	nodeHealthyDesc = metrics.NewDesc(metricsSubsystem+"_node_healthy",
		"1 when the node passes the node health check (kube-proxy healthz), else 0.",
		[]string{"node"}, nil, metrics.ALPHA, "")
	starvedProbesDesc = metrics.NewDesc(metricsSubsystem+"_health_probes_starved_total",
		"Health probes that timed out while this replica was starved of CPU, and were not counted against the node: each is repeated with a longer timeout.",
		nil, nil, metrics.ALPHA, "")

	registerOnce sync.Once
)

// RegisterMetrics adds the process-wide metrics to the component-base
// registry served on the CCM's secure /metrics. The metrics of a cloud are
// registered by New, through Options.RegisterCollector.
func RegisterMetrics() {
	registerOnce.Do(func() {
		legacyregistry.MustRegister(configReloads, ensureDuration, configStale, allocationFailures)
	})
}

// collector reads its cloud's pool usage, BGP sessions and node health at
// scrape time.
type collector struct {
	metrics.BaseStableCollector
	c *cloud
}

func (*collector) DescribeWithStability(ch chan<- *metrics.Desc) {
	for _, d := range []*metrics.Desc{poolAddressesDesc, sessionUpDesc, pathsDesc, singlePathDesc, prefixLimitDesc, nodeHealthyDesc, starvedProbesDesc} {
		ch <- d
	}
}

func (col *collector) CollectWithStability(ch chan<- metrics.Metric) {
	c := col.c
	for _, s := range c.alloc.Stats() {
		total, _ := new(big.Float).SetInt(s.Total).Float64()
		ch <- metrics.NewLazyConstMetric(poolAddressesDesc, metrics.GaugeValue, total, s.Pool, string(s.Family), "total")
		ch <- metrics.NewLazyConstMetric(poolAddressesDesc, metrics.GaugeValue, float64(s.InUse), s.Pool, string(s.Family), "in_use")
	}
	if sp := c.speaker(); sp != nil {
		for _, p := range sp.Peers() {
			ch <- metrics.NewLazyConstMetric(sessionUpDesc, metrics.GaugeValue, boolValue(p.State == bgp.StateEstablished), p.Name)
			ch <- metrics.NewLazyConstMetric(singlePathDesc, metrics.GaugeValue, boolValue(p.SinglePath), p.Name)
			ch <- metrics.NewLazyConstMetric(prefixLimitDesc, metrics.CounterValue, float64(p.PrefixLimitExceeded), p.Name)
			for _, f := range p.Families {
				ch <- metrics.NewLazyConstMetric(pathsDesc, metrics.GaugeValue, float64(f.Paths), p.Name, string(f.Family))
			}
		}
	}
	for node, ok := range c.checker.States() {
		ch <- metrics.NewLazyConstMetric(nodeHealthyDesc, metrics.GaugeValue, boolValue(ok), node)
	}
	ch <- metrics.NewLazyConstMetric(starvedProbesDesc, metrics.CounterValue, float64(c.checker.StarvedProbes()))
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
