package provider

import (
	"net/netip"
	"time"

	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/component-base/metrics"
)

// Options configure [New].
type Options struct {
	// ConfigFile is the cloud config (--cloud-config).
	ConfigFile string
	// ReloadInterval is how often the file is checked for changes; a
	// ConfigMap update reaches a mounted file within a minute or so, and is
	// applied by the next check. Zero: never reload.
	ReloadInterval time.Duration
	// Client is the replica's own client, for the announcer's informers,
	// Events and the leader's restore. Required.
	Client kubernetes.Interface
	// Informers is the factory of the informers the provider watches
	// through (NewInformerFactory): the binary shares it with the upstream
	// controllers. New starts it. Nil: the provider's own, from Client.
	Informers informers.SharedInformerFactory
	// RouterID is --bgp-router-id; see routerID for the defaults.
	RouterID string
	// NodeName is the Node this replica runs on (--node-name, default
	// $NODE_NAME): with the inventory, its rack chooses the peers with
	// dialFrom (see replicaRack).
	NodeName string
	// BGPAPIAddress serves the embedded GoBGP's gRPC API (--bgp-api-address).
	BGPAPIAddress netip.AddrPort
	// RegisterCollector, when set, registers the cloud's metrics (pools,
	// sessions, node health) with the registry served on /metrics:
	// legacyregistry.CustomMustRegister in the binary.
	RegisterCollector func(...metrics.StableCollector)
}
