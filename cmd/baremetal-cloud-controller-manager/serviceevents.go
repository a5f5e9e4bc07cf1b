package main

import (
	"context"

	v1 "k8s.io/api/core/v1"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/client-go/kubernetes"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	cloudprovider "k8s.io/cloud-provider"
	"k8s.io/cloud-provider/app"
	cloudcontrollerconfig "k8s.io/cloud-provider/app/config"
	servicecontroller "k8s.io/cloud-provider/controllers/service"
	"k8s.io/cloud-provider/names"
	genericcontrollermanager "k8s.io/controller-manager/app"
	"k8s.io/controller-manager/controller"
	"k8s.io/klog/v2"
)

// quietEvent is an Event of the upstream service controller, by type and
// reason.
type quietEvent struct{ typ, reason string }

// quietKinds are the upstream service controller's Events this CCM does
// not write.
//
// Its Normal EnsuringLoadBalancer, EnsuredLoadBalancer and
// UpdatedLoadBalancer say only that a sync started or ended well, once
// per Service at each creation, at each leader's start (it syncs every
// Service again) and, for UpdatedLoadBalancer, at every change of the
// node set: with 10,000 Services, 20,000 writes at a fail-over and 10,000
// at a node's addition, for nothing the Service's conditions
// (baremetal-ccm.io/AddressAllocated, baremetal-ccm.io/Announced) do not
// say better.
//
// Its Warning UnAvailableLoadBalancer says it has no Nodes to hand the
// provider. It is given none (withoutNodes), and the provider needs none:
// whether a Service's VIPs have nodes to be announced via is its
// Announced condition.
//
// Its other Warnings and the deletion Events stay.
var quietKinds = map[quietEvent]bool{
	{v1.EventTypeNormal, "EnsuringLoadBalancer"}:     true,
	{v1.EventTypeNormal, "EnsuredLoadBalancer"}:      true,
	{v1.EventTypeNormal, "UpdatedLoadBalancer"}:      true,
	{v1.EventTypeWarning, "UnAvailableLoadBalancer"}: true,
}

// quiet tells whether the Event is one of quietKinds.
func quiet(ev *v1.Event) bool { return quietKinds[quietEvent{ev.Type, ev.Reason}] }

// withQuietServiceEvents is the controllers' constructors with the
// service controller's replaced by startQuietServiceController.
func withQuietServiceEvents(constructors map[string]app.ControllerInitFuncConstructor) map[string]app.ControllerInitFuncConstructor {
	out := make(map[string]app.ControllerInitFuncConstructor, len(constructors))
	for name, c := range constructors {
		out[name] = c
	}
	svc := out[names.ServiceLBController]
	svc.Constructor = startQuietServiceController
	out[names.ServiceLBController] = svc
	return out
}

// startQuietServiceController starts the upstream service controller as
// upstream's constructor does, with a client that does not write the
// quiet Events nor log them (withQuietEventLog), and a Node informer that
// lists no Nodes (withoutNodes).
func startQuietServiceController(initContext app.ControllerInitContext, cc *cloudcontrollerconfig.CompletedConfig, cloud cloudprovider.Interface) app.InitFunc {
	return func(ctx context.Context, controllerContext genericcontrollermanager.ControllerContext) (controller.Interface, bool, error) {
		client := quietClient{cc.ClientBuilder.ClientOrDie(initContext.ClientName)}
		sc, err := servicecontroller.New(cloud, client,
			cc.SharedInformers.Core().V1().Services(), withoutNodes{cc.SharedInformers.Core().V1().Nodes()},
			cc.ComponentConfig.KubeCloudShared.ClusterName, utilfeature.DefaultFeatureGate)
		if err != nil {
			// As upstream: not fatal, the other controllers run on.
			klog.FromContext(ctx).Error(err, "Failed to start the service controller")
			return nil, false, nil
		}
		go sc.Run(withQuietEventLog(ctx), int(cc.ComponentConfig.ServiceController.ConcurrentServiceSyncs), controllerContext.ControllerManagerMetrics)
		return nil, true, nil
	}
}

// quietClient is a clientset whose Events leave out the quiet ones.
type quietClient struct{ kubernetes.Interface }

func (c quietClient) CoreV1() corev1client.CoreV1Interface {
	return quietCoreV1{c.Interface.CoreV1()}
}

type quietCoreV1 struct{ corev1client.CoreV1Interface }

func (c quietCoreV1) Events(namespace string) corev1client.EventInterface {
	return quietEvents{c.CoreV1Interface.Events(namespace)}
}

// quietEvents answers a write of a quiet Event as if it had been made:
// the recorder has nothing to retry.
type quietEvents struct{ corev1client.EventInterface }

func (e quietEvents) CreateWithEventNamespaceWithContext(ctx context.Context, ev *v1.Event) (*v1.Event, error) {
	if quiet(ev) {
		return ev, nil
	}
	return e.EventInterface.CreateWithEventNamespaceWithContext(ctx, ev)
}

func (e quietEvents) UpdateWithEventNamespaceWithContext(ctx context.Context, ev *v1.Event) (*v1.Event, error) {
	if quiet(ev) {
		return ev, nil
	}
	return e.EventInterface.UpdateWithEventNamespaceWithContext(ctx, ev)
}

func (e quietEvents) PatchWithEventNamespaceWithContext(ctx context.Context, ev *v1.Event, data []byte) (*v1.Event, error) {
	if quiet(ev) {
		return ev, nil
	}
	return e.EventInterface.PatchWithEventNamespaceWithContext(ctx, ev, data)
}

// The recorder's sink (EventSinkImpl) calls these, without a context.

func (e quietEvents) CreateWithEventNamespace(ev *v1.Event) (*v1.Event, error) {
	return e.CreateWithEventNamespaceWithContext(context.Background(), ev)
}

func (e quietEvents) UpdateWithEventNamespace(ev *v1.Event) (*v1.Event, error) {
	return e.UpdateWithEventNamespaceWithContext(context.Background(), ev)
}

func (e quietEvents) PatchWithEventNamespace(ev *v1.Event, data []byte) (*v1.Event, error) {
	return e.PatchWithEventNamespaceWithContext(context.Background(), ev, data)
}
