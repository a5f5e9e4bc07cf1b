package main

import (
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	coreinformers "k8s.io/client-go/informers/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
)

// withoutNodes is the Node informer the upstream service controller is
// given: the real informer (its event handlers see every change), with a
// lister that holds no Nodes.
//
// The controller lists the Nodes only to hand them to EnsureLoadBalancer
// and UpdateLoadBalancer, and this provider reads neither list: the
// announcer follows Nodes, their health and the EndpointSlices itself.
// With the real lister, the controller keeps a copy of the node list per
// Service (lastSyncedNodes: 10,000 Services × 1,000 Nodes is 80 MB of
// pointers, which besides keep every Node version they point at), and at
// each change of the node set it lists the Nodes again for every Service
// and calls UpdateLoadBalancer on each: 10,000 calls for one Node added.
// With no Nodes listed, neither happens; its "There are no available
// nodes" Warning is quiet (quiet), the Service's Announced condition
// saying it with the reason.
type withoutNodes struct{ coreinformers.NodeInformer }

func (i withoutNodes) Lister() corelisters.NodeLister { return noNodes{} }

// noNodes is a NodeLister that lists nothing.
type noNodes struct{}

func (noNodes) List(labels.Selector) ([]*v1.Node, error) { return nil, nil }

func (noNodes) Get(name string) (*v1.Node, error) {
	return nil, apierrors.NewNotFound(v1.Resource("nodes"), name)
}

var _ coreinformers.NodeInformer = withoutNodes{}
