package service

import v1 "k8s.io/api/core/v1"

// Ours reports whether this provider serves the Service: a LoadBalancer
// Service without spec.loadBalancerClass. A Service with a class belongs
// to the load-balancer implementation of that class, even when it is
// ours by type.
func Ours(svc *v1.Service) bool {
	return svc.Spec.Type == v1.ServiceTypeLoadBalancer && svc.Spec.LoadBalancerClass == nil
}

// Announceable reports whether the Service's addresses are to be announced:
// it is ours and not being deleted (a Service with a deletionTimestamp
// waits for its finalizer, and its addresses are being withdrawn).
func Announceable(svc *v1.Service) bool {
	return Ours(svc) && svc.DeletionTimestamp == nil
}
