package main

import (
	"testing"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
)

// TestWithoutNodes checks what the upstream service controller sees: the
// real Node informer, for its event handlers, and a lister with no Nodes
// in it although the cluster has some.
func TestWithoutNodes(t *testing.T) {
	real := informers.NewSharedInformerFactory(fake.NewClientset(), 0).Core().V1().Nodes()
	inf := withoutNodes{real}
	if err := real.Informer().GetStore().Add(&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := inf.Informer().GetStore().GetByKey("n1"); !ok {
		t.Error("the service controller's informer is not the shared one: its handlers would see no Node")
	}
	if nodes, err := inf.Lister().List(labels.Everything()); err != nil || len(nodes) != 0 {
		t.Errorf("List = %v, %v; want no Nodes and no error", nodes, err)
	}
	if _, err := inf.Lister().Get("n1"); !apierrors.IsNotFound(err) {
		t.Errorf("Get(n1) error = %v, want NotFound", err)
	}
}
