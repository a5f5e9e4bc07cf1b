package provider

import (
	"sync"

	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"
)

const metricsSubsystem = "baremetal_ccm"

var (
	configReloads = metrics.NewCounterVec(&metrics.CounterOpts{
		Subsystem:      metricsSubsystem,
		Name:           "config_reloads_total",
		Help:           "Changes of the cloud config file seen, by result: applied, invalid (rejected by validation) or failed.",
		StabilityLevel: metrics.ALPHA,
	}, []string{"result"})

	registerOnce sync.Once
)

// RegisterMetrics adds the provider's metrics to the component-base registry
// served on the CCM's secure /metrics.
func RegisterMetrics() {
	registerOnce.Do(func() {
		legacyregistry.MustRegister(configReloads)
	})
}
