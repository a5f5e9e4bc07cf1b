package provider

import (
	"context"
	"fmt"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	cloudprovider "k8s.io/cloud-provider"
	"k8s.io/klog/v2"

	"github.com/baremetal-ccm/baremetal-ccm/ipam"
	"github.com/baremetal-ccm/baremetal-ccm/provider/service"
)

// Initialize runs on the elected leader only, once it has won, before the
// service controller starts: it restores the allocator from the Services'
// status, so that no address changes or is handed out twice.
func (c *cloud) Initialize(_ cloudprovider.ControllerClientBuilder, stop <-chan struct{}) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	logger := klog.FromContext(ctx).WithName("restore")
	for {
		err := c.restore(ctx)
		if err == nil {
			return
		}
		logger.Error(err, "Restoring addresses from the Services' status failed; retrying")
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func (c *cloud) restore(ctx context.Context) error {
	list, err := c.opts.Client.CoreV1().Services(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("listing services: %w", err)
	}
	var ours []*v1.Service
	var claims []ipam.Claim
	for i := range list.Items {
		s := &list.Items[i]
		if service.Ours(s) {
			ours = append(ours, s)
			claims = append(claims, service.Claim(s))
		}
	}
	report := c.alloc.Restore(claims)
	byKey := map[string]*v1.Service{}
	for _, s := range ours {
		byKey[s.Namespace+"/"+s.Name] = s
	}
	for _, r := range report.Rejected {
		if s := byKey[r.Namespace+"/"+r.Name]; s != nil {
			c.events.event(s, v1.EventTypeWarning, "AddressConflict", fmt.Sprintf("address %s in status was not kept: %v; a new address will be allocated", r.IP, r.Err))
		}
	}
	for _, st := range report.Stale {
		if s := byKey[st.Namespace+"/"+st.Name]; s != nil {
			c.events.event(s, v1.EventTypeWarning, reasonStaleAddress, fmt.Sprintf("address %s is in no configured pool; the Service keeps it until it is deleted", st.Addr))
		}
	}
	klog.FromContext(ctx).Info("Restored addresses from the Services' status", "services", len(ours), "addresses", len(report.Restored), "rejected", len(report.Rejected), "stale", len(report.Stale))
	c.announcer.Trigger()
	c.status.becomeLeader()
	return nil
}
