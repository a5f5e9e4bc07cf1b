// Package realnode builds the real-node lab: a kubeadm cluster of real
// kubelets, containerd and kube-proxy, each node a network namespace plus a
// private mount namespace, in three racks behind FRR top-of-rack routers,
// with the CCM installed as the DaemonSet of manifests/ from an image built
// by this repository. Control-plane nodes sit in two racks only: the third
// rack's ToR peers with the CCM replicas over eBGP multihop, as in a real
// data centre. See docs/real-cluster.md.
//
// It needs root, iproute2, FRR, nsenter/unshare (util-linux), runc and the
// CNI plugins (Debian), iptables, the Kubernetes binaries of
// hack/build-k8s.sh, containerd of hack/build-containerd.sh and etcd of
// hack/build-etcd.sh.
package realnode

import (
	"fmt"
	"net/netip"
)

// Autonomous systems of the lab.
const (
	CCMASN    = 64512
	ClientASN = 65100
)

// Address plan. Documentation ranges only; 192.0.2.0/24 (the pods) lives
// only inside node and pod namespaces, never in the root namespace.
var (
	// CoreNet joins the ToRs, the client and the host (the harness).
	CoreNet = netip.MustParsePrefix("198.51.100.224/28")
	// PodNet is the cluster CIDR; each node gets a /NodeMaskSize of it.
	PodNet = netip.MustParsePrefix("192.0.2.0/24")
	// ServiceNet holds the ClusterIPs.
	ServiceNet = netip.MustParsePrefix("203.0.113.192/26")
	// PoolNet holds the LoadBalancer VIPs.
	PoolNet = netip.MustParsePrefix("203.0.113.0/26")
)

// NodeMaskSize is the size of a node's pod CIDR (kube-controller-manager
// --node-cidr-mask-size-ipv4): 8 nodes of 30 pods fit the /24.
const NodeMaskSize = 27

// ImageRepository is where the lab's kubeadm images are named.
const ImageRepository = "registry.lab.example/k8s"

// CCMImage is the CCM image's name (manifests/kustomization.yaml); the lab
// tags it lab-1, lab-2, ...
const CCMImage = "ghcr.io/baremetal-ccm/baremetal-cloud-controller-manager"

// RackPlan is one rack of the plan.
type RackPlan struct {
	Name  string // rack-a
	ASN   int
	Net   netip.Prefix
	Nodes []NodePlan
}

// NodePlan is one machine of the plan.
type NodePlan struct {
	Name         string // cp-a1
	ControlPlane bool
}

// Plan is the lab's topology: three racks of two nodes; control-plane
// nodes in racks a and b only.
var Plan = []RackPlan{
	{Name: "rack-a", ASN: 65001, Net: netip.MustParsePrefix("198.51.100.0/28"),
		Nodes: []NodePlan{{Name: "cp-a1", ControlPlane: true}, {Name: "worker-a2"}}},
	{Name: "rack-b", ASN: 65002, Net: netip.MustParsePrefix("198.51.100.16/28"),
		Nodes: []NodePlan{{Name: "cp-b1", ControlPlane: true}, {Name: "worker-b2"}}},
	{Name: "rack-c", ASN: 65003, Net: netip.MustParsePrefix("198.51.100.32/28"),
		Nodes: []NodePlan{{Name: "worker-c1"}, {Name: "worker-c2"}}},
}

// nth returns the n-th address after p's first.
func nth(p netip.Prefix, n int) netip.Addr {
	a := p.Addr()
	for range n {
		a = a.Next()
	}
	return a
}

// Core addresses: .1 the host, .2.. the ToRs, then the client.
func coreAddr(i int) netip.Addr { return nth(CoreNet, 1+i) }

// HostAddr is the harness's address on the core LAN (root namespace).
var HostAddr = coreAddr(0)

func torCoreAddr(rack int) netip.Addr { return coreAddr(1 + rack) }

var clientCoreAddr = coreAddr(1 + len(Plan))

// gateway is the ToR's address on its rack LAN.
func gateway(r RackPlan) netip.Addr { return nth(r.Net, 1) }

// nodeAddr is the node's address on its rack LAN.
func nodeAddr(r RackPlan, i int) netip.Addr { return nth(r.Net, 2+i) }

func (r RackPlan) letter() string { return r.Name[len(r.Name)-1:] }

func (r RackPlan) torName() string { return "tor-" + r.letter() }

func (r RackPlan) String() string { return fmt.Sprintf("%s %s", r.Name, r.Net) }
