package provider

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	v1 "k8s.io/api/core/v1"
	cloudprovider "k8s.io/cloud-provider"
	"k8s.io/cloud-provider/api"
	"k8s.io/klog/v2"

	"github.com/baremetal-ccm/baremetal-ccm/ipam"
	"github.com/baremetal-ccm/baremetal-ccm/provider/service"
)

var _ cloudprovider.LoadBalancer = (*cloud)(nil)

// retryAfter is when the service controller tries again a Service that
// waits for something another Service or the operator may free: an address
// taken or a pool exhausted. The upstream exponential backoff would reach
// minutes; a fixed short delay gets the address soon after it frees.
const retryAfter = 15 * time.Second

// Event reasons, one per cause, so that `kubectl get events
// --field-selector reason=...` finds them.
var allocationReasons = []struct {
	err    error
	reason string
	retry  bool
}{
	{ipam.ErrInvalidRequest, "InvalidAnnotation", false},
	{ipam.ErrUnknownPool, "UnknownPool", false},
	{ipam.ErrPoolNotAllowed, "PoolNotAllowed", false},
	{ipam.ErrOutsidePools, "AddressOutsidePools", false},
	{ipam.ErrWrongFamily, "WrongAddressFamily", false},
	{ipam.ErrAddressTaken, "AddressTaken", true},
	{ipam.ErrSharingRefused, "SharingRefused", true},
	{ipam.ErrExhausted, "PoolExhausted", true},
	{ipam.ErrDualStackUnavailable, "DualStackUnavailable", false},
}

// GetLoadBalancerName is the upstream default, derived from the UID.
func (c *cloud) GetLoadBalancerName(_ context.Context, _ string, svc *v1.Service) string {
	return cloudprovider.DefaultLoadBalancerName(svc)
}

// GetLoadBalancer reports the addresses the allocator holds for svc.
func (c *cloud) GetLoadBalancer(_ context.Context, _ string, svc *v1.Service) (*v1.LoadBalancerStatus, bool, error) {
	addrs := c.alloc.Assigned(svc.Namespace, svc.Name)
	if addrs == nil {
		return nil, false, nil
	}
	return lbStatus(addrs), true, nil
}

// EnsureLoadBalancer allocates the Service's addresses, hands their paths
// to the speaker, and only then returns the status: an EXTERNAL-IP never
// shows before it is announced.
func (c *cloud) EnsureLoadBalancer(ctx context.Context, _ string, svc *v1.Service, _ []*v1.Node) (*v1.LoadBalancerStatus, error) {
	start := time.Now()
	defer func() { ensureDuration.Observe(time.Since(start).Seconds()) }()
	logger := klog.FromContext(ctx).WithValues("service", klog.KObj(svc))
	ctx = klog.NewContext(ctx, logger)

	if !service.Ours(svc) {
		return nil, cloudprovider.ImplementedElsewhere
	}
	if len(c.config().Pools) == 0 {
		c.ensureFailed(svc, reasonNoPools, "The cloud config has no address pools")
		return nil, errors.New("the cloud config has no address pools (pools:)")
	}
	if err := c.checkBGPAnnotations(svc); err != nil {
		c.ensureFailed(svc, "InvalidAnnotation", err.Error())
		return nil, err
	}
	// A bad opt-out value is told but not refused: the Service gets what
	// it most likely meant, plain ECMP.
	if _, err := service.WantsWeightedECMP(svc); err != nil {
		c.events.event(svc, v1.EventTypeWarning, "InvalidAnnotation", err.Error())
	}
	req, err := service.AllocationRequest(svc)
	if err != nil {
		return nil, c.allocationFailed(svc, err)
	}
	addrs, err := c.alloc.Allocate(req)
	if err != nil {
		return nil, c.allocationFailed(svc, err)
	}
	done, err := c.announcer.syncService(ctx, svc, addrs)
	if err != nil {
		c.ensureFailed(svc, reasonAnnounceError, err.Error())
		return nil, fmt.Errorf("announcing %v: %w", addrs, err)
	}
	// The Events of what is announced, and the conditions, follow from
	// the announcer's syncs (statusWriter): Ensure runs again and again
	// for an unchanged Service, and eligibility changes without it.
	c.status.recordEnsure(svc, nil)
	logger.V(2).Info("Ensured load balancer", "addresses", addrs, "announced", done)
	return lbStatus(addrs), nil
}

// ensureFailed reports a problem EnsureLoadBalancer found: in the
// Service's conditions, and as a Warning Event when it differs from the
// last one (not at every retry of the service controller).
func (c *cloud) ensureFailed(svc *v1.Service, reason, msg string) {
	if reason != reasonAnnounceError {
		allocationFailures.WithLabelValues(reason).Inc()
	}
	if c.status.recordEnsure(svc, &allocationOutcome{reason: reason, message: msg}) {
		c.events.event(svc, v1.EventTypeWarning, reason, msg)
	}
}

// UpdateLoadBalancer is called when the set of nodes changes; the
// announcer follows nodes on its own, so this only syncs the Service now.
func (c *cloud) UpdateLoadBalancer(ctx context.Context, _ string, svc *v1.Service, _ []*v1.Node) error {
	addrs := c.alloc.Assigned(svc.Namespace, svc.Name)
	if addrs == nil {
		return nil
	}
	_, err := c.announcer.syncService(ctx, svc, addrs)
	return err
}

// EnsureLoadBalancerDeleted withdraws the Service's VIPs (where no other
// Service shares them), then releases its addresses.
func (c *cloud) EnsureLoadBalancerDeleted(ctx context.Context, _ string, svc *v1.Service) error {
	addrs := c.alloc.Assigned(svc.Namespace, svc.Name)
	for _, ip := range service.StatusAddrs(svc) {
		if !slices.Contains(addrs, ip) {
			addrs = append(addrs, ip)
		}
	}
	if err := c.announcer.withdrawService(ctx, svc, addrs); err != nil {
		return err
	}
	c.alloc.Release(svc.Namespace, svc.Name)
	c.status.forget(serviceKey(svc.Namespace, svc.Name))
	klog.FromContext(ctx).V(2).Info("Deleted load balancer", "service", klog.KObj(svc), "addresses", addrs)
	return nil
}

// checkBGPAnnotations refuses a Service whose BGP annotations are bad, or
// ask for more than one VIP may carry.
func (c *cloud) checkBGPAnnotations(svc *v1.Service) error {
	attrs, err := service.ParseBGPAttributes(svc)
	if err != nil {
		return err
	}
	if err := checkBGPAttributes(c.config().BGP.ASN, attrs); err != nil {
		return fmt.Errorf("annotations %s, %s: %w", service.AnnotationBGPCommunities, service.AnnotationBGPLargeCommunities, err)
	}
	return nil
}

func (c *cloud) allocationFailed(svc *v1.Service, err error) error {
	for _, r := range allocationReasons {
		if errors.Is(err, r.err) {
			c.ensureFailed(svc, r.reason, err.Error())
			if r.retry {
				return api.NewRetryError(err.Error(), retryAfter)
			}
			return err
		}
	}
	c.ensureFailed(svc, "AllocationFailed", err.Error())
	return err
}

func lbStatus(addrs []netip.Addr) *v1.LoadBalancerStatus {
	vip := v1.LoadBalancerIPModeVIP
	st := &v1.LoadBalancerStatus{}
	for _, a := range addrs {
		st.Ingress = append(st.Ingress, v1.LoadBalancerIngress{IP: a.String(), IPMode: &vip})
	}
	return st
}

func localHint(svc *v1.Service) string {
	if svc.Spec.ExternalTrafficPolicy == v1.ServiceExternalTrafficPolicyLocal {
		return ", holding a ready endpoint: externalTrafficPolicy is Local"
	}
	return ""
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
