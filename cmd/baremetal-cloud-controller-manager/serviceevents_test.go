package main

import (
	"context"
	"maps"
	"reflect"
	"slices"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/cloud-provider/app"
	"k8s.io/cloud-provider/names"
)

// The service controller's success Events, and its Warning that it has no
// Nodes, are left out whichever way the recorder writes them; its other
// Warnings and deletion Events, and every other Event, are written.
func TestQuietServiceEvents(t *testing.T) {
	for _, tc := range []struct {
		typ, reason string
		written     bool
	}{
		{v1.EventTypeNormal, "EnsuringLoadBalancer", false},
		{v1.EventTypeNormal, "EnsuredLoadBalancer", false},
		{v1.EventTypeNormal, "UpdatedLoadBalancer", false},
		{v1.EventTypeWarning, "SyncLoadBalancerFailed", true},
		// It is given no Nodes (withoutNodes) and the provider needs none.
		{v1.EventTypeWarning, "UnAvailableLoadBalancer", false},
		{v1.EventTypeNormal, "DeletedLoadBalancer", true},
		// A Warning of a quiet reason is not a success.
		{v1.EventTypeWarning, "EnsuredLoadBalancer", true},
	} {
		for _, write := range []struct {
			name string
			do   func(quietEvents, *v1.Event) error
		}{
			{"create", func(e quietEvents, ev *v1.Event) error { _, err := e.CreateWithEventNamespace(ev); return err }},
			{"create with context", func(e quietEvents, ev *v1.Event) error {
				_, err := e.CreateWithEventNamespaceWithContext(context.Background(), ev)
				return err
			}},
		} {
			t.Run(tc.typ+" "+tc.reason+" "+write.name, func(t *testing.T) {
				base := fake.NewClientset()
				events := quietClient{base}.CoreV1().Events("default").(quietEvents)
				ev := &v1.Event{ObjectMeta: metav1.ObjectMeta{Name: "web.1", Namespace: "default"}, Type: tc.typ, Reason: tc.reason,
					InvolvedObject: v1.ObjectReference{Kind: "Service", Namespace: "default", Name: "web"}}
				if err := write.do(events, ev); err != nil {
					t.Fatalf("write: %v", err)
				}
				list, err := base.CoreV1().Events("default").List(context.Background(), metav1.ListOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if got := len(list.Items) == 1; got != tc.written {
					t.Errorf("written: %v, want %v", got, tc.written)
				}
			})
		}
	}
}

// Only the service controller's constructor is ours; the others, and the
// client names, are upstream's.
func TestWithQuietServiceEvents(t *testing.T) {
	got := withQuietServiceEvents(app.DefaultInitFuncConstructors)
	if !slices.Equal(slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(app.DefaultInitFuncConstructors))) {
		t.Fatalf("controllers %v, want upstream's %v", slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(app.DefaultInitFuncConstructors)))
	}
	fn := func(c app.ControllerInitFuncConstructor) uintptr { return reflect.ValueOf(c.Constructor).Pointer() }
	for name, c := range got {
		upstream := app.DefaultInitFuncConstructors[name]
		if c.InitContext != upstream.InitContext {
			t.Errorf("%s: init context %+v, want upstream's %+v", name, c.InitContext, upstream.InitContext)
		}
		if ours := name == names.ServiceLBController; (fn(c) == fn(upstream)) == ours {
			t.Errorf("%s: our constructor %v, want %v", name, fn(c) != fn(upstream), ours)
		}
	}
	if fn(app.DefaultInitFuncConstructors[names.ServiceLBController]) == reflect.ValueOf(startQuietServiceController).Pointer() {
		t.Error("upstream's map was changed")
	}
}
