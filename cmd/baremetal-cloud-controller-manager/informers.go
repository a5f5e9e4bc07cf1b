package main

import (
	"math/rand/v2"
	"time"

	cloudcontrollerconfig "k8s.io/cloud-provider/app/config"

	"github.com/baremetal-ccm/baremetal-ccm/provider"
)

// shareInformers replaces the upstream controllers' informer factory,
// before any controller has asked it for an informer, with the provider's
// (provider.NewInformerFactory): one cache of Services and Nodes serves
// both, without managed fields, instead of two copies of each. At 10,000
// Services and 1,000 Nodes that is tens of MiB of the replica's limit.
// The period of the informers' replay stays the upstream one: between
// --min-resync-period and twice that, drawn once.
func shareInformers(cc *cloudcontrollerconfig.CompletedConfig) {
	cc.SharedInformers = provider.NewInformerFactory(cc.VersionedClient, resyncPeriod(cc.ComponentConfig.Generic.MinResyncPeriod.Duration))
}

// resyncPeriod is upstream's: minimum times a factor drawn from [1, 2), so
// that the controllers of several processes do not replay at once.
func resyncPeriod(minimum time.Duration) time.Duration {
	return time.Duration(float64(minimum) * (rand.Float64() + 1))
}
