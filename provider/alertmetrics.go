package provider

import (
	"k8s.io/component-base/metrics"

	"github.com/baremetal-ccm/baremetal-ccm/bgp"
)

// The metrics users alert on (docs and the PrometheusRule in
// manifests/components/prometheus-rules): a config that is not the one
// on disk, fail-open, allocation failures, BGP update storms and flaps,
// sessions down and nodes outside every rack.
var (
	configStale = metrics.NewGauge(&metrics.GaugeOpts{
		Subsystem:      metricsSubsystem,
		Name:           "config_stale",
		Help:           "1 when the cloud config file differs from the one in force because the last change was rejected (invalid, unreadable or not applicable), else 0.",
		StabilityLevel: metrics.ALPHA,
	})

	allocationFailures = metrics.NewCounterVec(&metrics.CounterOpts{
		Subsystem:      metricsSubsystem,
		Name:           "allocation_failures_total",
		Help:           "EnsureLoadBalancer calls that could not give a Service its addresses, by reason (the Event's reason: PoolExhausted, AddressTaken, UnknownPool, ...). Retries count again.",
		StabilityLevel: metrics.ALPHA,
	}, []string{"reason"})

	failOpenDesc = metrics.NewDesc(metricsSubsystem+"_health_fail_open_vips",
		"VIPs announced via every eligible node although each fails its health check (fail open), by family.",
		[]string{"family"}, nil, metrics.ALPHA, "")
	updatesSentDesc = metrics.NewDesc(metricsSubsystem+"_bgp_updates_sent_total",
		"BGP UPDATE messages sent to the router, as the embedded GoBGP counts them.",
		[]string{"peer"}, nil, metrics.ALPHA, "")
	sessionFlapsDesc = metrics.NewDesc(metricsSubsystem+"_bgp_session_flaps_total",
		"Times the BGP session with the router went down after being Established.",
		[]string{"peer"}, nil, metrics.ALPHA, "")
	peersDownDesc = metrics.NewDesc(metricsSubsystem+"_bgp_peers_not_established",
		"Routers this replica peers with whose session is not Established.",
		nil, nil, metrics.ALPHA, "")
	outsideRacksDesc = metrics.NewDesc(metricsSubsystem+"_nodes_outside_racks",
		"Nodes whose addresses lie in no rack while the cloud config has racks: no zone, and no router with a rack gets paths via them.",
		nil, nil, metrics.ALPHA, "")
)

// alertCollector reads the cloud's state for the metrics above at scrape
// time.
type alertCollector struct {
	metrics.BaseStableCollector
	c *cloud
}

func (*alertCollector) DescribeWithStability(ch chan<- *metrics.Desc) {
	for _, d := range []*metrics.Desc{failOpenDesc, updatesSentDesc, sessionFlapsDesc, peersDownDesc, outsideRacksDesc} {
		ch <- d
	}
}

func (col *alertCollector) CollectWithStability(ch chan<- metrics.Metric) {
	c := col.c
	v4, v6 := c.lastSync.Load().failOpenByFamily()
	ch <- metrics.NewLazyConstMetric(failOpenDesc, metrics.GaugeValue, float64(v4), "ipv4")
	ch <- metrics.NewLazyConstMetric(failOpenDesc, metrics.GaugeValue, float64(v6), "ipv6")
	down := 0
	if sp := c.speaker(); sp != nil {
		for _, p := range sp.Peers() {
			ch <- metrics.NewLazyConstMetric(updatesSentDesc, metrics.CounterValue, float64(p.UpdatesSent), p.Name)
			ch <- metrics.NewLazyConstMetric(sessionFlapsDesc, metrics.CounterValue, float64(p.SessionDrops), p.Name)
			if p.State != bgp.StateEstablished {
				down++
			}
		}
	}
	ch <- metrics.NewLazyConstMetric(peersDownDesc, metrics.GaugeValue, float64(down))
	ch <- metrics.NewLazyConstMetric(outsideRacksDesc, metrics.GaugeValue, float64(c.announcer.outsideRacks.Load()))
}
