package main

import (
	"context"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
	cloudcontrollerconfig "k8s.io/cloud-provider/app/config"
)

// TestShareInformers checks that the upstream controllers' factory is
// replaced by one whose cache holds no managed fields, from the same
// client.
func TestShareInformers(t *testing.T) {
	svc := &v1.Service{ObjectMeta: metav1.ObjectMeta{
		Namespace: "default", Name: "web",
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply}},
	}}
	client := fake.NewClientset(svc)
	upstream := informers.NewSharedInformerFactory(client, 0)
	cc := (&cloudcontrollerconfig.Config{VersionedClient: client, SharedInformers: upstream}).Complete()
	cc.ComponentConfig.Generic.MinResyncPeriod = metav1.Duration{Duration: 12 * time.Hour}

	shareInformers(cc)
	if cc.SharedInformers == upstream {
		t.Fatal("the upstream factory was kept")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	inf := cc.SharedInformers.Core().V1().Services()
	lister := inf.Lister()
	cc.SharedInformers.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.Informer().HasSynced) {
		t.Fatal("the Service informer did not sync within a minute")
	}
	got, err := lister.Services("default").Get("web")
	if err != nil {
		t.Fatalf("the shared cache lacks the client's Service: %v", err)
	}
	if got.ManagedFields != nil {
		t.Errorf("the shared cache keeps managed fields: %v", got.ManagedFields)
	}
	cancel()
	cc.SharedInformers.Shutdown()
}

func TestResyncPeriod(t *testing.T) {
	for _, minimum := range []time.Duration{time.Second, 12 * time.Hour} {
		for range 100 {
			if got := resyncPeriod(minimum); got < minimum || got >= 2*minimum {
				t.Fatalf("resyncPeriod(%s) = %s, want in [%s, %s)", minimum, got, minimum, 2*minimum)
			}
		}
	}
}
