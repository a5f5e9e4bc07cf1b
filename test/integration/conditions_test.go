package integration

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/baremetal-ccm/baremetal-ccm/test/lbservice"
)

const (
	condAllocated = "baremetal-ccm.io/AddressAllocated"
	condAnnounced = "baremetal-ccm.io/Announced"
	poolAnnot     = "baremetal-ccm.io/ip-allocated-from-pool"
)

// wantCondition is what a condition must say: its status, reason and a
// part of its message.
type wantCondition struct {
	typ, status, reason, message string
}

// waitConditions waits until the Service's conditions say what want
// says, each with the Service's generation as observedGeneration and a
// transition time, and returns the Service.
func waitConditions(t *testing.T, c kubernetes.Interface, name string, want ...wantCondition) *v1.Service {
	t.Helper()
	var got *v1.Service
	var problem string
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, waitTimeout, true, func(ctx context.Context) (bool, error) {
		s, err := c.CoreV1().Services("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			problem = err.Error()
			return false, nil
		}
		got = s
		for _, w := range want {
			cond := findCond(s.Status.Conditions, w.typ)
			switch {
			case cond == nil:
				problem = "no condition " + w.typ
				return false, nil
			case string(cond.Status) != w.status || cond.Reason != w.reason || !strings.Contains(cond.Message, w.message):
				problem = fmt.Sprintf("%s is %s/%s %q, want %s/%s containing %q", w.typ, cond.Status, cond.Reason, cond.Message, w.status, w.reason, w.message)
				return false, nil
			case cond.ObservedGeneration != s.Generation || cond.LastTransitionTime.IsZero():
				problem = fmt.Sprintf("%s has observedGeneration %d (the Service's is %d), lastTransitionTime %v", w.typ, cond.ObservedGeneration, s.Generation, cond.LastTransitionTime)
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("service %s: %s", name, problem)
	}
	return got
}

func findCond(conds []metav1.Condition, typ string) *metav1.Condition {
	for i := range conds {
		if conds[i].Type == typ {
			return &conds[i]
		}
	}
	return nil
}

// ourComponent is the source of the CCM's own Events.
const ourComponent = "baremetal-cloud-controller-manager"

// eventCounts returns, for each Event of the namespace that keep says to
// count, how often it was reported (an Event repeated is counted up, not
// created again).
// waitEventMessage waits for an Event about the Service with this reason
// whose message starts with msg.
func waitEventMessage(t *testing.T, c kubernetes.Interface, svc, reason, msg string) {
	t.Helper()
	var seen []string
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, waitTimeout, true, func(ctx context.Context) (bool, error) {
		evs, err := c.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: fields.Set{"involvedObject.name": svc, "reason": reason}.String()})
		if err != nil {
			return false, nil
		}
		seen = seen[:0]
		for _, e := range evs.Items {
			if strings.HasPrefix(e.Message, msg) {
				return true, nil
			}
			seen = append(seen, e.Message)
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("service %s: no %s event starting %q; seen %q", svc, reason, msg, seen)
	}
}

func eventCounts(t *testing.T, c kubernetes.Interface, keep func(v1.Event) bool) map[string]int32 {
	t.Helper()
	evs, err := c.CoreV1().Events("default").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int32{}
	for _, e := range evs.Items {
		if keep(e) {
			n := max(e.Count, 1)
			if e.Series != nil {
				n += e.Series.Count
			}
			out[e.InvolvedObject.Name+" "+e.Reason+" "+e.Source.Component+" "+e.Name] = n
		}
	}
	return out
}

// TestServiceConditions: the Service's conditions follow its allocation
// and its announcement through the loss of every eligible node, fail-open,
// sessions going down and each recovery, with an Event for each change of
// what is announced and none in a steady minute.
func TestServiceConditions(t *testing.T) {
	c, router, healthy := startHealthChecked(t)
	router.WaitEstablished(t, waitTimeout)

	allocated := wantCondition{condAllocated, "True", "Allocated", "203.0.113.1 from pool public"}
	announced := wantCondition{condAnnounced, "True", "Announced", "203.0.113.1 announced via 3 nodes to 1 router"}

	createService(t, c, lbservice.New("web", 80))
	s := waitConditions(t, c, "web", allocated, announced)
	if got := s.Annotations[poolAnnot]; got != "public" {
		t.Errorf("annotation %s = %q, want public", poolAnnot, got)
	}

	// Not allocated: why, and nothing announced.
	createService(t, c, lbservice.New("nopool", 80, func(s *v1.Service) { s.Annotations["baremetal-ccm.io/pool"] = "nosuchpool" }))
	waitConditions(t, c, "nopool",
		wantCondition{condAllocated, "False", "UnknownPool", "nosuchpool"},
		wantCondition{condAnnounced, "False", "NoAddress", "no address is allocated"})

	// The first announcement had only its condition: no Event (the
	// Announced Events of the changes below say the recorder works).
	if n := eventCounts(t, c, func(e v1.Event) bool { return e.InvolvedObject.Name == "web" && e.Reason == "Announced" }); len(n) != 0 {
		t.Errorf("Announced events of web before any change: %v, want none", n)
	}

	// Every eligible node lost, one after the other, then back.
	for i := 1; i <= 3; i++ {
		setReady(t, c, fmt.Sprintf("node-%d", i), v1.ConditionFalse)
	}
	waitConditions(t, c, "web", allocated, wantCondition{condAnnounced, "False", "NoEligibleNode", "203.0.113.1 is not announced: no eligible node"})
	waitEvent(t, c, "web", "NoEligibleNode")
	waitRoutes(t, router, "every node NotReady", map[string][]string{"203.0.113.1": nil})
	for i := 1; i <= 3; i++ {
		setReady(t, c, fmt.Sprintf("node-%d", i), v1.ConditionTrue)
	}
	waitConditions(t, c, "web", allocated, announced)
	// The nodes come back one by one: the last change has all three.
	waitEventMessage(t, c, "web", "Announced", "203.0.113.1 announced via 3 nodes to 1 router")

	// Every node fails its health check: announced over all (fail open).
	for _, ok := range healthy {
		ok.Store(false)
	}
	waitConditions(t, c, "web", allocated, wantCondition{condAnnounced, "True", "FailOpen", "every eligible node fails its health check"})
	waitEvent(t, c, "web", "FailOpen")
	for _, ok := range healthy {
		ok.Store(true)
	}
	waitConditions(t, c, "web", allocated, announced)

	// The router closes the session: announced nowhere, and back.
	if err := router.DisableNeighbor("127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	waitConditions(t, c, "web", allocated, wantCondition{condAnnounced, "False", "NoEstablishedSession", "none of the leader's sessions with its 1 router is Established"})
	if err := router.EnableNeighbor("127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	router.WaitEstablished(t, waitTimeout)
	waitConditions(t, c, "web", allocated, announced)

	// A steady minute: no Event about web from anyone, and none of ours
	// about nopool, which the service controller retries (and reports
	// itself at each retry).
	keep := func(e v1.Event) bool { return e.InvolvedObject.Name == "web" || e.Source.Component == ourComponent }
	if n := eventCounts(t, c, func(e v1.Event) bool { return e.InvolvedObject.Name == "nopool" && e.Reason == "UnknownPool" }); len(n) != 1 {
		t.Errorf("UnknownPool events of nopool: %v, want one", n)
	}
	// The service controller's failures are written, its successes not:
	// the conditions say them.
	if n := eventCounts(t, c, func(e v1.Event) bool {
		return e.InvolvedObject.Name == "nopool" && e.Reason == "SyncLoadBalancerFailed"
	}); len(n) != 1 {
		t.Errorf("SyncLoadBalancerFailed events of nopool: %v, want one", n)
	}
	if n := eventCounts(t, c, func(e v1.Event) bool {
		return slices.Contains([]string{"EnsuringLoadBalancer", "EnsuredLoadBalancer", "UpdatedLoadBalancer"}, e.Reason)
	}); len(n) != 0 {
		t.Errorf("the service controller's success Events were written: %v", n)
	}
	before := eventCounts(t, c, keep)
	time.Sleep(time.Minute)
	after := eventCounts(t, c, keep)
	for k, n := range after {
		if before[k] != n {
			t.Errorf("in a steady minute: event %s reported %d times, %d before", k, n, before[k])
		}
	}
}
