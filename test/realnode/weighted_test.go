package realnode

import (
	"fmt"
	"maps"
	"math"
	"net/netip"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/baremetal-ccm/baremetal-ccm/test/fabric"
)

// weightedECMP: weighted ECMP on real pods. Rack c's two workers hold 1 and
// 2 ready endpoints of a Local Service: tor-c's kernel weights are 1:2, new
// connections through tor-c split 1:2 (within ±20 %), and scaling
// worker-c1 to 3 endpoints re-weights 3:2.
func (w *world) weightedECMP(t *testing.T) {
	c := w.c
	rc := c.Racks[2]
	c1, c2 := rc.Nodes[0], rc.Nodes[1]
	pinned := func(name string, n *Node, replicas int32) *appsv1.Deployment {
		d := Netserver(ns, name, replicas)
		tpl := &d.Spec.Template
		tpl.Labels = maps.Clone(tpl.Labels)
		tpl.Labels["lb"] = "weighted"
		tpl.Spec.TopologySpreadConstraints = nil
		tpl.Spec.NodeSelector = map[string]string{v1.LabelHostname: n.Name}
		return d
	}
	for _, d := range []*appsv1.Deployment{pinned("weighted-c1", c1, 1), pinned("weighted-c2", c2, 2)} {
		if err := c.ApplyDeployment(w.ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	svc := LoadBalancer(ns, "weighted", "", v1.ServiceExternalTrafficPolicyLocal)
	svc.Spec.Selector = map[string]string{"lb": "weighted"}
	if _, err := c.Kube.CoreV1().Services(ns).Create(w.ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	vip, err := c.WaitExternalIP(w.ctx, ns, "weighted")
	if err != nil {
		t.Fatal(err)
	}
	host := netip.PrefixFrom(vip, vip.BitLen())
	waitWeights := func(want map[netip.Addr]int) (map[netip.Addr]int, time.Time) {
		t.Helper()
		var got map[netip.Addr]int
		err := fabric.Eventually(w.ctx, 3*time.Minute, 20*time.Millisecond, func() error {
			var err error
			if got, err = fabric.NextHopWeights(w.ctx, rc.NS, host); err != nil {
				return err
			}
			return fabric.CheckWeightRatio(got, want, 0.02)
		})
		if err != nil {
			t.Fatal(err)
		}
		return got, time.Now()
	}
	got, _ := waitWeights(map[netip.Addr]int{c1.Addr: 1, c2.Addr: 2})
	t.Logf("%s: %s kernel weights %s for 1:2 ready endpoints", rc.torName(), vip, fabric.FormatWeights(got))

	// New connections from tor-c follow the weights: with Local, the node
	// a connection enters is the node of the pod that answers.
	const conns = 600
	out, err := c.ProbeCmdIn(w.ctx, rc.NS, URL(vip), conns, 0, 2*time.Second).Output()
	if err != nil {
		t.Fatal(err)
	}
	rs, err := ParseResults(out)
	if err != nil {
		t.Fatal(err)
	}
	per := map[string]int{}
	for _, r := range rs {
		if r.Err == "" {
			per[r.Answer.Node]++
		}
	}
	t.Logf("%d new connections through %s: %v (ideal %d / %d)", conns, rc.torName(), per, conns/3, 2*conns/3)
	for n, want := range map[string]float64{c1.Name: conns / 3.0, c2.Name: 2 * conns / 3.0} {
		if math.Abs(float64(per[n])-want) > 0.2*want {
			t.Errorf("%s answered %d connections, want %.0f ± 20 %%", n, per[n], want)
		}
	}

	// worker-c1 scales to 3 endpoints: the weights follow.
	if err := c.Scale(w.ctx, ns, "weighted-c1", 3); err != nil {
		t.Fatal(err)
	}
	err = fabric.Eventually(w.ctx, 3*time.Minute, 20*time.Millisecond, func() error {
		counts, err := c.ReadyEndpointCounts(w.ctx, ns, "weighted")
		if err != nil {
			return err
		}
		if counts[c1.Name] != 3 {
			return fmt.Errorf("%s has %d ready endpoints, want 3", c1.Name, counts[c1.Name])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	changed := time.Now()
	got, reweighted := waitWeights(map[netip.Addr]int{c1.Addr: 3, c2.Addr: 2})
	t.Logf("%s scaled to 3 endpoints: %s weights %s, %s after the EndpointSlice change",
		c1.Name, rc.torName(), fabric.FormatWeights(got), reweighted.Sub(changed).Round(time.Millisecond))
}
