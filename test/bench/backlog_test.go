//go:build bench

package bench

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/baremetal-ccm/baremetal-ccm/test/ccm"
	"github.com/baremetal-ccm/baremetal-ccm/test/lbservice"
	"github.com/baremetal-ccm/baremetal-ccm/test/proc"
)

// backlogServices is issue 18 (g)'s backlog.
const backlogServices = 1000

// notOurs is a loadBalancerClass the CCM leaves alone: the floor's
// Services carry it, so that the CCM never touches them.
const notOurs = "example.com/not-ours"

// TestBenchBacklog is issue 18 (g): 1,000 LoadBalancer Services exist when
// the CCM starts → seconds to the last EXTERNAL-IP, beside the apiserver's
// floor: the same writes the CCM must make (the finalizer, then the
// status), from as many workers as --concurrent-service-syncs, on 1,000
// Services the CCM ignores. It counts the API writes per Service.
func TestBenchBacklog(t *testing.T) {
	cl := v6Cluster(t)
	cl.ccm.Stop()
	ctx := context.Background()
	create := func(ns string, mutate ...func(*v1.Service)) {
		parallel(t, backlogServices, 32, func(ctx context.Context, i int) error {
			s := lbservice.New(fmt.Sprintf("backlog-%04d", i), 80, append([]func(*v1.Service){lbservice.SingleStack(v1.IPv6Protocol)}, mutate...)...)
			s.Namespace = ns
			_, err := cl.c.CoreV1().Services(ns).Create(ctx, s, metav1.CreateOptions{})
			return err
		})
	}
	if _, err := cl.c.CoreV1().Namespaces().Create(ctx, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "floor"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	create("floor", func(s *v1.Service) { s.Spec.LoadBalancerClass = ptr.To(notOurs) })
	create("default")
	t.Logf("load average before: %s", proc.LoadAverage())
	floor := backlogFloor(t, cl.c, "floor")

	writes := countWrites(t, cl.c, "default")
	iw := watchIngress(t, cl.c)
	start := time.Now()
	cl.ccm = ccm.Start(t, cl.ccmOpts)
	for deadline := start.Add(setupTimeout); iw.count() < backlogServices; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("Services with an EXTERNAL-IP: %d, want %d after %s", iw.count(), backlogServices, setupTimeout)
		}
	}
	took := iw.last().Sub(start)
	t.Logf("load average after: %s", proc.LoadAverage())
	t.Logf("(g) %d Services waiting when the CCM starts: first EXTERNAL-IP after %s, the last after %s; the apiserver's floor for their writes %s; ratio %.2f×",
		backlogServices, iw.first().Sub(start).Round(time.Millisecond), took.Round(time.Millisecond), floor.Round(time.Millisecond), took.Seconds()/floor.Seconds())
	// A window, not a wait for a condition: writes that come later than
	// 10 s after the last address are counted as none.
	time.Sleep(10 * time.Second)
	t.Logf("(g) API writes per Service: %s", writes.summary(backlogServices))
	if took.Seconds() > 1.2*floor.Seconds() {
		t.Errorf("(g) %s, want ≤ 1.2× the floor %s", took.Round(time.Millisecond), floor.Round(time.Millisecond))
	}
}

// backlogFloor makes, on the Services of ns, the writes the CCM makes on
// each of its own, from as many workers as the CCM's service workers
// (--concurrent-service-syncs, default 10): the finalizer, then the
// status with its address. It returns how long they took.
func backlogFloor(t *testing.T, c kubernetes.Interface, ns string) time.Duration {
	t.Helper()
	const workers = 10
	finalizer := []byte(`{"metadata":{"finalizers":["service.kubernetes.io/load-balancer-cleanup"]}}`)
	start := time.Now()
	parallel(t, backlogServices, workers, func(ctx context.Context, i int) error {
		name := fmt.Sprintf("backlog-%04d", i)
		if _, err := c.CoreV1().Services(ns).Patch(ctx, name, types.MergePatchType, finalizer, metav1.PatchOptions{}); err != nil {
			return err
		}
		status := fmt.Sprintf(`{"status":{"loadBalancer":{"ingress":[{"ip":"2001:db8:200::%x","ipMode":"VIP"}]}}}`, i+1)
		_, err := c.CoreV1().Services(ns).Patch(ctx, name, types.MergePatchType, []byte(status), metav1.PatchOptions{}, "status")
		return err
	})
	return time.Since(start)
}

// writeCount counts the writes to the Services of a namespace and the
// Events about them, by kind.
type writeCount struct {
	mu       sync.Mutex
	services int            // MODIFIED Services
	events   map[string]int // Events about a Service, by type/reason
}

// countWrites counts from now until the test ends.
func countWrites(t *testing.T, c kubernetes.Interface, ns string) *writeCount {
	t.Helper()
	w := &writeCount{events: map[string]int{}}
	ctx, cancel := context.WithCancel(context.Background())
	svcs, err := c.CoreV1().Services(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	events, err := c.CoreV1().Events(ns).Watch(ctx, metav1.ListOptions{FieldSelector: "involvedObject.kind=Service"})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for ev := range svcs.ResultChan() {
			if ev.Type == watch.Modified {
				w.mu.Lock()
				w.services++
				w.mu.Unlock()
			}
		}
	})
	wg.Go(func() {
		for ev := range events.ResultChan() {
			// A repeated Event is an update of the first (its count).
			if e, ok := ev.Object.(*v1.Event); ok && (ev.Type == watch.Added || ev.Type == watch.Modified) {
				w.mu.Lock()
				w.events[e.Type+"/"+e.Reason]++
				w.mu.Unlock()
			}
		}
	})
	t.Cleanup(func() { cancel(); svcs.Stop(); events.Stop(); wg.Wait() })
	return w
}

// summary is the writes per Service, of n Services.
func (w *writeCount) summary(n int) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	parts := []string{fmt.Sprintf("%.2f updates of the Service", float64(w.services)/float64(n))}
	total := w.services
	for _, k := range slices.Sorted(maps.Keys(w.events)) {
		parts = append(parts, fmt.Sprintf("%.2f Event %s", float64(w.events[k])/float64(n), k))
		total += w.events[k]
	}
	return fmt.Sprintf("%.2f in all: %s", float64(total)/float64(n), strings.Join(parts, ", "))
}
