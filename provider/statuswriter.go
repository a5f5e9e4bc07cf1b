package provider

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/flowcontrol"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"github.com/baremetal-ccm/baremetal-ccm/provider/config"
	"github.com/baremetal-ccm/baremetal-ccm/provider/service"
)

const (
	// minPatchInterval is the least time between two writes of one
	// Service's conditions: the changes in between are coalesced.
	minPatchInterval = time.Second
	// Every write of conditions, all Services together, draws from a
	// token bucket of patchQPS, patchBurst: a node flap that changes
	// 10,000 Services' messages is written at this pace, not at once.
	patchQPS   = 50
	patchBurst = 100
	// ensureSettle is how long a write waits after EnsureLoadBalancer: by
	// then the service controller has written the addresses and the
	// announcer has synced them, and one write says both.
	ensureSettle = 500 * time.Millisecond
	// writtenTrust is how long a write is taken as what the Service
	// says, while the informer may not have seen it yet.
	writtenTrust = 30 * time.Second
	// fieldManager names the provider in the Services' managedFields.
	fieldManager = "baremetal-ccm"
)

// eventSink records an Event on an object.
type eventSink interface {
	event(obj runtime.Object, typ, reason, msg string)
}

// statusWriter keeps the Services' conditions (service.Condition*) and
// the pool annotation current, and reports changes of what is announced
// as Events. It works on the leader only: the other replicas announce
// the same Services and would write the same things.
//
// It learns from two sides: EnsureLoadBalancer tells what the allocation
// of a Service came to (recordEnsure), and the announcer hands it the
// outcomes of its syncs (observe), which follow every change of
// nodes, endpoints, health and Services. Writes are coalesced per Service
// (minPatchInterval) and rate-limited all together (patchQPS).
type statusWriter struct {
	client   kubernetes.Interface
	services corelisters.ServiceLister
	events   eventSink
	config   func() *config.Config
	alloc    allocations
	// mayAnnounce tells whether an address may reach the routers.
	mayAnnounce func(netip.Addr) bool

	leader    atomic.Bool
	announced atomic.Pointer[announcements]
	// passes asks the pass goroutine for a pass over the Services
	// pending (see observe).
	passes chan struct{}

	mu sync.Mutex
	// ensureProblems maps namespace/name to the last problem Ensure
	// reported, so that its Event is sent once per change.
	ensureProblems map[string]allocationOutcome
	// seen maps namespace/name to what its VIPs were announced with at
	// the last pass, for the Events of changes.
	seen map[string]map[netip.Addr]vipSeen
	// pending holds the keys queued and not yet taken by the worker.
	pending map[string]bool
	// written maps namespace/name to the last write.
	written map[string]writtenStatus
	// passAll asks the next pass to look at every Service, passKeys at
	// these (namespace/name) only.
	passAll  bool
	passKeys map[string]struct{}

	queue   workqueue.TypedRateLimitingInterface[string]
	limiter flowcontrol.RateLimiter
}

// vipSeen is what a pass saw of one VIP.
type vipSeen struct {
	nodes    int
	failOpen bool
}

type writtenStatus struct {
	at     time.Time
	status desiredStatus
}

func newStatusWriter(client kubernetes.Interface, svcInf cache.SharedIndexInformer, services corelisters.ServiceLister, events eventSink, cfg func() *config.Config, alloc allocations, mayAnnounce func(netip.Addr) bool) *statusWriter {
	w := &statusWriter{
		client:         client,
		services:       services,
		events:         events,
		config:         cfg,
		alloc:          alloc,
		mayAnnounce:    mayAnnounce,
		passes:         make(chan struct{}, 1),
		ensureProblems: map[string]allocationOutcome{},
		seen:           map[string]map[netip.Addr]vipSeen{},
		pending:        map[string]bool{},
		written:        map[string]writtenStatus{},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](minPatchInterval, maxRetryDelay),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "service-status"}),
		limiter: flowcontrol.NewTokenBucketRateLimiter(patchQPS, patchBurst),
	}
	watchWithoutResync(svcInf, cache.ResourceEventHandlerFuncs{DeleteFunc: w.onDelete})
	return w
}

func serviceKey(namespace, name string) string { return namespace + "/" + name }

// run passes over the Services when asked and writes what changed, until
// ctx ends.
func (w *statusWriter) run(ctx context.Context) {
	logger := klog.FromContext(ctx).WithName("service-status")
	ctx = klog.NewContext(ctx, logger)
	go func() {
		<-ctx.Done()
		w.queue.ShutDown()
	}()
	go func() {
		for w.processNext(ctx) {
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.passes:
			w.passPending()
		}
	}
}

// becomeLeader starts the writing: Initialize calls it once this replica
// leads and the allocator is restored.
func (w *statusWriter) becomeLeader() {
	w.leader.Store(true)
	w.mu.Lock()
	w.passAll = true
	w.mu.Unlock()
	w.askPass()
}

// observe takes the outcomes the announcer reports after a sync, and
// changed, the namespace/name of the Services whose outcomes or
// conditions may have changed (nil: any). It never blocks.
func (w *statusWriter) observe(an *announcements, changed []string) {
	w.announced.Store(an)
	if !w.leader.Load() {
		return // becomeLeader asks for a pass over every Service
	}
	w.mu.Lock()
	if changed == nil {
		w.passAll, w.passKeys = true, nil
	} else if !w.passAll {
		if w.passKeys == nil {
			w.passKeys = map[string]struct{}{}
		}
		for _, key := range changed {
			w.passKeys[key] = struct{}{}
		}
	}
	w.mu.Unlock()
	w.askPass()
}

func (w *statusWriter) askPass() {
	select {
	case w.passes <- struct{}{}:
	default:
	}
}

// recordEnsure notes what EnsureLoadBalancer found for svc: a problem
// (nil: none) and whether it is new, that is, worth an Event. The
// Service's conditions are queued for writing.
func (w *statusWriter) recordEnsure(svc *v1.Service, problem *allocationOutcome) (isNew bool) {
	key := serviceKey(svc.Namespace, svc.Name)
	w.mu.Lock()
	last, had := w.ensureProblems[key]
	if problem == nil {
		delete(w.ensureProblems, key)
	} else {
		w.ensureProblems[key] = *problem
	}
	w.mu.Unlock()
	w.enqueue(key, ensureSettle)
	return problem != nil && (!had || last != *problem)
}

func (w *statusWriter) onDelete(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	s, ok := obj.(*v1.Service)
	if !ok {
		return
	}
	w.forget(serviceKey(s.Namespace, s.Name))
}

// forget drops what is kept about a Service that is gone.
func (w *statusWriter) forget(key string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.ensureProblems, key)
	delete(w.seen, key)
	delete(w.written, key)
}

// passPending passes over what observe asked for: every Service, or the
// ones it named (a change costs the Services it touches).
func (w *statusWriter) passPending() {
	w.mu.Lock()
	all, keys := w.passAll, w.passKeys
	w.passAll, w.passKeys = false, nil
	w.mu.Unlock()
	if all {
		w.pass()
		return
	}
	if !w.leader.Load() {
		return
	}
	for key := range keys {
		ns, name, _ := strings.Cut(key, "/")
		if s, err := w.services.Services(ns).Get(name); err == nil {
			w.check(s)
		}
	}
}

// pass looks at every Service (see check) and forgets what it kept of
// the Services that are gone.
func (w *statusWriter) pass() {
	if !w.leader.Load() {
		return
	}
	svcs, err := w.services.List(everything)
	if err != nil {
		return
	}
	ours := make(map[string]bool, len(svcs))
	for _, s := range svcs {
		if w.check(s) {
			ours[serviceKey(s.Namespace, s.Name)] = true
		}
	}
	w.sweep(ours)
}

// check reports the changes of what is announced for s as Events and
// queues s if its conditions are not current. It tells whether s is
// ours.
func (w *statusWriter) check(s *v1.Service) bool {
	key := serviceKey(s.Namespace, s.Name)
	if !service.Announceable(s) {
		if s.DeletionTimestamp == nil && carriesOurStatus(s) {
			w.enqueue(key, 0) // no longer ours: write clears it
		}
		return false
	}
	w.reportChanges(s)
	if !conditionsCurrent(s, w.desired(s)) {
		w.enqueue(key, 0)
	}
	return true
}

// sweep drops what is kept about Services that are gone or no longer
// ours: a delete can race with a pass or a write that re-adds a key,
// and no second delete event would remove it.
func (w *statusWriter) sweep(ours map[string]bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	maps.DeleteFunc(w.seen, func(key string, _ map[netip.Addr]vipSeen) bool { return !ours[key] })
	maps.DeleteFunc(w.written, func(key string, _ writtenStatus) bool { return !ours[key] })
	maps.DeleteFunc(w.ensureProblems, func(key string, _ allocationOutcome) bool { return !ours[key] })
}

// inputs gathers what svc's conditions are computed from.
func (w *statusWriter) inputs(svc *v1.Service) conditionInputs {
	cfg := w.config()
	in := conditionInputs{
		assigned:    w.alloc.Assigned(svc.Namespace, svc.Name),
		pools:       cfg.Pools,
		announced:   w.announced.Load(),
		peers:       len(cfg.BGP.Peers),
		mayAnnounce: w.mayAnnounce,
	}
	if in.assigned == nil {
		w.mu.Lock()
		if p, ok := w.ensureProblems[serviceKey(svc.Namespace, svc.Name)]; ok {
			in.failed = &p
		}
		w.mu.Unlock()
	}
	return in
}

func (w *statusWriter) desired(svc *v1.Service) desiredStatus {
	return desiredFor(svc, w.inputs(svc))
}

// reportChanges sends the Events of what changed for svc's VIPs since
// the last pass: a VIP announced via more or fewer nodes than before, or
// again after losing them (Announced), one that lost every node
// (NoEligibleNode) or turned fail-open (FailOpen). A VIP's first
// announcement has no Event: the Announced condition says it, and an
// Event per new Service would be one more API write of each, for what
// the condition already tells.
// A new leader takes what it first sees of a Service that already has
// the Announced condition as known: the previous leader reported it.
// Sessions going down or up are no Service's Event: they are the same
// for every Service, and the condition, the metrics and the log say it.
func (w *statusWriter) reportChanges(svc *v1.Service) {
	an := w.announced.Load()
	if an == nil || !an.speaker {
		return
	}
	key := serviceKey(svc.Namespace, svc.Name)
	vips := w.alloc.Assigned(svc.Namespace, svc.Name)
	if vips == nil {
		vips = service.StatusAddrs(svc)
	}
	cur := make(map[netip.Addr]vipSeen, len(vips))
	for _, vip := range vips {
		if o, ok := an.outcome(vip); ok && w.mayAnnounce(vip) {
			cur[vip] = vipSeen{nodes: o.nodes, failOpen: o.failOpen}
		}
	}
	w.mu.Lock()
	prev, known := w.seen[key]
	w.seen[key] = cur
	w.mu.Unlock()
	if !known && findCondition(svc.Status.Conditions, service.ConditionAnnounced) != nil {
		return
	}
	in := w.inputs(svc)
	var announced, lost, failOpen []string
	for _, vip := range vips {
		c, ok := cur[vip]
		if !ok {
			continue
		}
		p, had := prev[vip]
		reason, msg := vipReport(svc, vip, in)
		switch {
		case c.nodes == 0:
			if !had || p.nodes > 0 {
				lost = append(lost, msg)
			}
		case c.failOpen:
			if !had || !p.failOpen {
				failOpen = append(failOpen, msg)
			}
		case had && (p.nodes != c.nodes || p.failOpen):
			if reason == reasonAnnounced && had && p.nodes > 0 && p.nodes != c.nodes {
				msg += fmt.Sprintf(" (was %d)", p.nodes)
			}
			announced = append(announced, msg)
		}
	}
	if len(lost) > 0 {
		w.events.event(svc, v1.EventTypeWarning, reasonNoEligible, strings.Join(lost, "; "))
	}
	if len(failOpen) > 0 {
		w.events.event(svc, v1.EventTypeWarning, reasonFailOpen, strings.Join(failOpen, "; "))
	}
	if len(announced) > 0 {
		w.events.event(svc, v1.EventTypeNormal, reasonAnnounced, strings.Join(announced, "; "))
	}
}

// enqueue queues a Service for a write in delay or later: at most one
// per minPatchInterval.
func (w *statusWriter) enqueue(key string, delay time.Duration) {
	w.mu.Lock()
	if w.pending[key] {
		w.mu.Unlock()
		return
	}
	w.pending[key] = true
	delay = max(delay, time.Until(w.written[key].at.Add(minPatchInterval)))
	w.mu.Unlock()
	if delay > 0 {
		w.queue.AddAfter(key, delay)
	} else {
		w.queue.Add(key)
	}
}

func (w *statusWriter) processNext(ctx context.Context) bool {
	key, shutdown := w.queue.Get()
	if shutdown {
		return false
	}
	defer w.queue.Done(key)
	w.mu.Lock()
	delete(w.pending, key)
	w.mu.Unlock()
	if err := w.write(ctx, key); err != nil {
		if ctx.Err() != nil {
			// The replica is stopping: no retry, and no line per
			// pending Service; the next leader writes what is left.
			return false
		}
		logger := klog.FromContext(ctx)
		if w.queue.NumRequeues(key) >= 3 {
			logger.Error(err, "Writing the Service's conditions keeps failing; retrying", "service", key, "attempts", w.queue.NumRequeues(key)+1)
		} else {
			logger.V(2).Info("Writing the Service's conditions failed; retrying", "service", key, "err", err)
		}
		w.queue.AddRateLimited(key)
		return true
	}
	w.queue.Forget(key)
	return true
}

// write brings one Service's conditions and pool annotation up to date.
func (w *statusWriter) write(ctx context.Context, key string) error {
	if !w.leader.Load() {
		return nil
	}
	ns, name, _ := strings.Cut(key, "/")
	svc, err := w.services.Services(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if !service.Announceable(svc) {
		return w.clear(ctx, svc)
	}
	d := w.desired(svc)
	if (len(d.conditions) == 0 && d.pools == "") || conditionsCurrent(svc, d) {
		return nil
	}
	w.mu.Lock()
	last, wrote := w.written[key]
	w.mu.Unlock()
	if wrote && time.Since(last.at) < writtenTrust && sameStatus(last.status, d) {
		return nil // written; the informer has not seen it yet
	}
	patch, err := statusPatch(svc, d, metav1.Now())
	if err != nil {
		return err
	}
	if err := w.patchStatus(ctx, ns, name, patch); err != nil {
		return fmt.Errorf("patching the status of %s: %w", key, err)
	}
	w.mu.Lock()
	w.written[key] = writtenStatus{at: time.Now(), status: d}
	w.mu.Unlock()
	return nil
}

// clear removes the conditions and the pool annotation from a Service
// that is no longer ours (its type or class changed): they would say
// forever that it is announced.
func (w *statusWriter) clear(ctx context.Context, svc *v1.Service) error {
	if svc.DeletionTimestamp != nil || !carriesOurStatus(svc) {
		return nil
	}
	patch, err := clearPatch(svc)
	if err != nil {
		return err
	}
	if err := w.patchStatus(ctx, svc.Namespace, svc.Name, patch); err != nil {
		return fmt.Errorf("clearing the status of %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	return nil
}

// patchStatus sends a strategic merge patch of the status subresource,
// within the writes' rate limit; a Service gone meanwhile is no error.
func (w *statusWriter) patchStatus(ctx context.Context, namespace, name string, patch []byte) error {
	if err := w.limiter.Wait(ctx); err != nil {
		return err
	}
	_, err := w.client.CoreV1().Services(namespace).Patch(ctx, name, types.StrategicMergePatchType, patch, metav1.PatchOptions{FieldManager: fieldManager}, "status")
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// carriesOurStatus tells whether svc has a condition or annotation this
// provider writes.
func carriesOurStatus(svc *v1.Service) bool {
	_, annotated := svc.Annotations[service.AnnotationAllocatedFromPool]
	return annotated || findCondition(svc.Status.Conditions, service.ConditionAddressAllocated) != nil ||
		findCondition(svc.Status.Conditions, service.ConditionAnnounced) != nil
}

// clearPatch is the strategic merge patch of the status subresource that
// deletes our conditions (by type, other components' stay) and the pool
// annotation.
func clearPatch(svc *v1.Service) ([]byte, error) {
	patch := map[string]any{}
	var conds []map[string]any
	for _, typ := range []string{service.ConditionAddressAllocated, service.ConditionAnnounced} {
		if findCondition(svc.Status.Conditions, typ) != nil {
			conds = append(conds, map[string]any{"type": typ, "$patch": "delete"})
		}
	}
	if len(conds) > 0 {
		patch["status"] = map[string]any{"conditions": conds}
	}
	if _, ok := svc.Annotations[service.AnnotationAllocatedFromPool]; ok {
		patch["metadata"] = map[string]any{"annotations": map[string]any{service.AnnotationAllocatedFromPool: nil}}
	}
	return json.Marshal(patch)
}

// statusPatch is the strategic merge patch of the status subresource
// that sets d on svc: the conditions merge by type, so that other
// components' conditions stay, and the annotation is set when it
// differs (the status subresource takes metadata changes).
func statusPatch(svc *v1.Service, d desiredStatus, now metav1.Time) ([]byte, error) {
	patch := map[string]any{
		"status": map[string]any{"conditions": withTransitionTimes(d.conditions, svc.Status.Conditions, now)},
	}
	if d.pools != "" && svc.Annotations[service.AnnotationAllocatedFromPool] != d.pools {
		patch["metadata"] = map[string]any{"annotations": map[string]string{service.AnnotationAllocatedFromPool: d.pools}}
	}
	return json.Marshal(patch)
}

func sameStatus(a, b desiredStatus) bool {
	return a.pools == b.pools && slices.EqualFunc(a.conditions, b.conditions, func(x, y metav1.Condition) bool {
		return x.Type == y.Type && x.Status == y.Status && x.Reason == y.Reason && x.Message == y.Message && x.ObservedGeneration == y.ObservedGeneration
	})
}
