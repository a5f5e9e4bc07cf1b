package provider

import (
	"context"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/baremetal-ccm/baremetal-ccm/provider/config"
	"github.com/baremetal-ccm/baremetal-ccm/provider/service"
)

// recordedEvents records the Events a statusWriter sends.
type recordedEvents struct {
	mu      sync.Mutex
	reasons []string
}

func (r *recordedEvents) event(_ runtime.Object, _, reason, _ string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reasons = append(r.reasons, reason)
}

func (r *recordedEvents) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.reasons
	r.reasons = nil
	return out
}

func startStatusWriter(t *testing.T, objs ...runtime.Object) (*statusWriter, *recordedEvents) {
	t.Helper()
	cfg, err := config.Parse([]byte("region: lab\npools:\n- name: public\n  addresses: [203.0.113.0/28]\nbgp:\n  asn: 64512\n  peers:\n  - {name: tor-a, address: 198.51.100.1, asn: 64513}\n"))
	if err != nil {
		t.Fatal(err)
	}
	client := fake.NewClientset(objs...)
	factory := informers.NewSharedInformerFactory(client, 0)
	svcInf := factory.Core().V1().Services()
	ev := &recordedEvents{}
	w := newStatusWriter(client, svcInf.Informer(), svcInf.Lister(), ev, func() *config.Config { return cfg }, fakeAllocations{}, func(netip.Addr) bool { return true })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	w.leader.Store(true)
	return w, ev
}

// TestStatusWriterEventsOnChangeOnly: the Events follow changes of what is
// announced — more or fewer nodes, losing every node, fail open — and a
// pass that sees nothing new sends none; a new Service's first
// announcement has none (its condition says it), nor has a Service that a
// previous leader already reported on, for what it already says.
func TestStatusWriterEventsOnChangeOnly(t *testing.T) {
	vip := netip.MustParseAddr("203.0.113.1")
	fresh := lbService("web", v1.ServiceExternalTrafficPolicyCluster, "203.0.113.1")
	known := lbService("old", v1.ServiceExternalTrafficPolicyCluster, "203.0.113.2")
	known.Status.Conditions = []metav1.Condition{{Type: service.ConditionAnnounced, Status: "True", Reason: reasonAnnounced}}
	w, ev := startStatusWriter(t, fresh, known)
	old := netip.MustParseAddr("203.0.113.2")

	steps := []struct {
		name string
		vips map[netip.Addr]vipOutcome
		want []string
	}{
		{"first announcement: the condition says it", map[netip.Addr]vipOutcome{vip: {nodes: 3, peered: 1, routers: 1}, old: {nodes: 3, peered: 1, routers: 1}}, nil},
		{"nothing changed", map[netip.Addr]vipOutcome{vip: {nodes: 3, peered: 1, routers: 1}, old: {nodes: 3, peered: 1, routers: 1}}, nil},
		{"a session went down: no Service Event", map[netip.Addr]vipOutcome{vip: {nodes: 3, peered: 1}, old: {nodes: 3, peered: 1}}, nil},
		{"a node went", map[netip.Addr]vipOutcome{vip: {nodes: 2, peered: 1, routers: 1}, old: {nodes: 3, peered: 1, routers: 1}}, []string{reasonAnnounced}},
		{"every node went", map[netip.Addr]vipOutcome{vip: {peered: 1, routers: 1}, old: {nodes: 3, peered: 1, routers: 1}}, []string{reasonNoEligible}},
		{"still none", map[netip.Addr]vipOutcome{vip: {peered: 1, routers: 1}, old: {nodes: 3, peered: 1, routers: 1}}, nil},
		{"fail open", map[netip.Addr]vipOutcome{vip: {nodes: 3, failOpen: true, peered: 1, routers: 1}, old: {nodes: 3, peered: 1, routers: 1}}, []string{reasonFailOpen}},
		{"healthy again", map[netip.Addr]vipOutcome{vip: {nodes: 3, peered: 1, routers: 1}, old: {nodes: 3, peered: 1, routers: 1}}, []string{reasonAnnounced}},
	}
	for _, st := range steps {
		w.announced.Store(&announcements{speaker: true, vips: st.vips})
		w.pass()
		got := ev.take()
		if len(got) != len(st.want) || (len(got) > 0 && got[0] != st.want[0]) {
			t.Errorf("%s: Events %v, want %v", st.name, got, st.want)
		}
	}
}

// TestRecordEnsureReportsNewProblemsOnly: a problem of EnsureLoadBalancer
// is worth an Event when it is new or different, not at every retry.
func TestRecordEnsureReportsNewProblemsOnly(t *testing.T) {
	svc := lbService("web", v1.ServiceExternalTrafficPolicyCluster)
	w, _ := startStatusWriter(t, svc)
	exhausted := &allocationOutcome{"PoolExhausted", "no free address"}
	for i, tc := range []struct {
		problem *allocationOutcome
		isNew   bool
	}{
		{exhausted, true},
		{exhausted, false},
		{&allocationOutcome{"AddressTaken", "held by default/other"}, true},
		{nil, false},
		{exhausted, true},
	} {
		if got := w.recordEnsure(svc, tc.problem); got != tc.isNew {
			t.Errorf("step %d: recordEnsure(%v) = %v, want %v", i, tc.problem, got, tc.isNew)
		}
	}
}

// TestStatusWriterClearsServicesNoLongerOurs: a Service that stops being
// a LoadBalancer loses our conditions and pool annotation (other
// components' stay), and what the writer kept of Services that are gone
// or no longer ours is dropped at the next pass.
func TestStatusWriterClearsServicesNoLongerOurs(t *testing.T) {
	was := lbService("was-lb", v1.ServiceExternalTrafficPolicyCluster)
	was.Spec.Type = v1.ServiceTypeClusterIP
	was.Annotations[service.AnnotationAllocatedFromPool] = "public"
	was.Annotations["example.com/keep"] = "yes"
	was.Status.Conditions = []metav1.Condition{
		{Type: service.ConditionAddressAllocated, Status: "True", Reason: "Allocated"},
		{Type: "example.com/Other", Status: "True", Reason: "Theirs"},
		{Type: service.ConditionAnnounced, Status: "True", Reason: reasonAnnounced},
	}
	web := lbService("web", v1.ServiceExternalTrafficPolicyCluster, "203.0.113.1")
	w, _ := startStatusWriter(t, was, web)
	w.mu.Lock()
	for _, key := range []string{"default/gone", "default/was-lb", "default/web"} {
		w.seen[key] = map[netip.Addr]vipSeen{}
		w.written[key] = writtenStatus{}
		w.ensureProblems[key] = allocationOutcome{"PoolExhausted", "no free address"}
	}
	w.mu.Unlock()

	w.pass()
	if w.queue.Len() == 0 {
		t.Fatal("the pass queued no write for the Service that is no longer ours")
	}
	ctx := context.Background()
	for w.queue.Len() > 0 {
		w.processNext(ctx)
	}
	got, err := w.client.CoreV1().Services("default").Get(ctx, "was-lb", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Status.Conditions) != 1 || got.Status.Conditions[0].Type != "example.com/Other" {
		t.Errorf("conditions %v, want only example.com/Other", got.Status.Conditions)
	}
	if _, ok := got.Annotations[service.AnnotationAllocatedFromPool]; ok || got.Annotations["example.com/keep"] != "yes" {
		t.Errorf("annotations %v, want the pool's gone and the others kept", got.Annotations)
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	for _, key := range []string{"default/gone", "default/was-lb"} {
		if _, ok := w.seen[key]; ok {
			t.Errorf("seen still holds %s", key)
		}
		if _, ok := w.written[key]; ok {
			t.Errorf("written still holds %s", key)
		}
		if _, ok := w.ensureProblems[key]; ok {
			t.Errorf("ensureProblems still holds %s", key)
		}
	}
	if _, ok := w.ensureProblems["default/web"]; !ok {
		t.Error("the sweep dropped what is kept of a Service that is ours")
	}
}

// TestStatusWriterPassesOverWhatChanged: outcomes that name the Services
// they changed for make a pass over those only; outcomes about every
// Service (a full sync, becoming leader) make a pass over all of them.
func TestStatusWriterPassesOverWhatChanged(t *testing.T) {
	w, _ := startStatusWriter(t,
		lbService("web1", v1.ServiceExternalTrafficPolicyCluster, "203.0.113.1"),
		lbService("web2", v1.ServiceExternalTrafficPolicyCluster, "203.0.113.2"),
		lbService("web3", v1.ServiceExternalTrafficPolicyCluster, "203.0.113.3"))
	an := &announcements{speaker: true, vips: map[netip.Addr]vipOutcome{}}
	for i := 1; i <= 3; i++ {
		an.vips[netip.AddrFrom4([4]byte{203, 0, 113, byte(i)})] = vipOutcome{nodes: 1, peered: 1, routers: 1}
	}
	queued := func() []string {
		w.mu.Lock()
		defer w.mu.Unlock()
		return slices.Sorted(maps.Keys(w.pending))
	}
	for _, tc := range []struct {
		name    string
		changed []string
		want    []string
	}{
		{"one Service", []string{"default/web2"}, []string{"default/web2"}},
		{"none", []string{}, nil},
		{"every Service", nil, []string{"default/web1", "default/web2", "default/web3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w.mu.Lock()
			clear(w.pending)
			w.mu.Unlock()
			w.observe(an, tc.changed)
			w.passPending()
			if diff := cmp.Diff(tc.want, queued()); diff != "" {
				t.Errorf("queued after observe(%v) (-want +got):\n%s", tc.changed, diff)
			}
		})
	}
}

// TestStatusWriterStopsWithItsContext: a write cut short because the
// replica is stopping ends the worker without a retry (nor a log line per
// pending Service): the next leader writes what is left.
func TestStatusWriterStopsWithItsContext(t *testing.T) {
	w, _ := startStatusWriter(t, lbService("web1", v1.ServiceExternalTrafficPolicyCluster, "203.0.113.1"))
	w.observe(&announcements{speaker: true, vips: map[netip.Addr]vipOutcome{
		netip.MustParseAddr("203.0.113.1"): {nodes: 1, peered: 1, routers: 1},
	}}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	const key = "default/web1"
	w.queue.Add(key)
	if w.processNext(ctx) {
		t.Error("processNext went on after its context ended")
	}
	if n := w.queue.NumRequeues(key); n != 0 {
		t.Errorf("the write was retried %d times after the context ended, want none", n)
	}
}
