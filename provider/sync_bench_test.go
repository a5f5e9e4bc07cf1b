//go:build bench

// The benchmarks are built only with -tags bench (make bench-provider),
// like the repository's others.

package provider

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/baremetal-ccm/baremetal-ccm/bgp"
	"github.com/baremetal-ccm/baremetal-ccm/provider/service"
)

// The cost of one cluster change to the announcer, from the informer's
// event to the embedded GoBGP's RIB, at 1,000 and 10,000 VIPs:
//
//	go test -tags bench -run '^$' -bench BenchmarkAnnouncerChange -benchtime 200x -count 1 ./provider/
//
// The cluster (benchShape): nodes; one Service per VIP, some in ten with
// externalTrafficPolicy Cluster (carried by up to maxPathsPerPrefix
// nodes, the shortlist among all), the others Local with endpoints on two
// nodes. The speaker is a real one (GoBGP, no session).
type benchShape struct {
	vips, nodes int
	// clusterPerTen is how many Services in ten are Cluster ones.
	clusterPerTen int
}

func (s benchShape) String() string {
	return fmt.Sprintf("vips=%d,nodes=%d,cluster=%d0%%", s.vips, s.nodes, s.clusterPerTen)
}

// benchShapes: one in ten Cluster on 50 nodes (a node carries about 14 %
// of the VIPs), and the scale benchmark's shape (TestBenchScale: 1,000
// nodes, seven in ten Cluster).
var benchShapes = []benchShape{{1000, 50, 1}, {10000, 50, 1}, {10000, 1000, 7}}

func benchObjects(shape benchShape) []runtime.Object {
	var objs []runtime.Object
	for i := range shape.nodes {
		objs = append(objs, node(benchNodeName(i), []string{benchNodeAddr(shape, i)}))
	}
	vips := shape.vips
	base := netip.MustParseAddr("198.18.0.0").As4()
	for i := range vips {
		ip := netip.AddrFrom4([4]byte{base[0], base[1] + byte(i>>16), byte(i >> 8), byte(i)})
		name := fmt.Sprintf("s%05d", i)
		if i%10 < shape.clusterPerTen {
			objs = append(objs, lbService(name, v1.ServiceExternalTrafficPolicyCluster, ip.String()))
			continue
		}
		objs = append(objs, lbService(name, v1.ServiceExternalTrafficPolicyLocal, ip.String()),
			endpointSlice(name, map[string]bool{benchNodeName(i % shape.nodes): true, benchNodeName((i + 1) % shape.nodes): true}))
	}
	return objs
}

func benchNodeName(i int) string { return fmt.Sprintf("n%04d", i) }

// benchNodeAddr is node i's address: in rack-a's 198.51.100.0/25 while
// there are few; beyond, in 198.19.0.0/16 (benchmark objects that never
// leave the process), outside every rack, which changes nothing without
// sessions.
func benchNodeAddr(shape benchShape, i int) string {
	if shape.nodes <= 100 {
		return fmt.Sprintf("198.51.100.%d", 10+i)
	}
	return netip.AddrFrom4([4]byte{198, 19, byte(i / 250), byte(1 + i%250)}).String()
}

func BenchmarkAnnouncerChange(b *testing.B) {
	for _, shape := range benchShapes {
		b.Run(shape.String(), func(b *testing.B) {
			ctx := context.Background()
			sp, err := bgp.NewSpeaker(ctx, bgp.Config{
				ASN:            64512,
				RouterID:       netip.MustParseAddr("198.51.100.1"),
				ExportPrefixes: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15")},
			})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(sp.Stop)
			h := startChangeHarness(b, sp, benchObjects(shape)...)
			sync := func(b *testing.B) {
				if err := h.a.sync(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.Run("full-sync", func(b *testing.B) {
				for range b.N {
					h.a.Trigger()
					sync(b)
				}
			})
			b.Run("verify-slice", func(b *testing.B) {
				// One slice of the periodic re-assertion (verifyDirty),
				// where nothing changed.
				for range b.N {
					h.a.dirty.markVerify()
					sync(b)
				}
			})
			b.Run("service-change", func(b *testing.B) {
				for i := range b.N {
					// A Cluster Service's communities: its one VIP, via
					// every node, changes.
					h.updateService(b, "s00010", func(s *v1.Service) {
						s.Annotations[service.AnnotationBGPCommunities] = fmt.Sprintf("65000:%d", i%2)
					})
					sync(b)
				}
			})
			b.Run("ensure", func(b *testing.B) {
				// What EnsureLoadBalancer costs the announcer: one
				// Cluster Service's VIP brought up to date now
				// (syncService), its communities changed each time.
				obj, ok, err := h.stores["service"].GetByKey("default/s00010")
				if err != nil || !ok {
					b.Fatalf("service s00010: %v %v", ok, err)
				}
				svc := obj.(*v1.Service)
				addrs := service.StatusAddrs(svc)
				for i := range b.N {
					s := svc.DeepCopy()
					s.Annotations[service.AnnotationBGPCommunities] = fmt.Sprintf("65000:%d", i%2)
					if _, err := h.a.syncService(ctx, s, addrs); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("endpoint-change", func(b *testing.B) {
				for i := range b.N {
					h.updateSlice(b, "s00011", func(s *discoveryv1.EndpointSlice) {
						ready := i%2 == 0
						s.Endpoints[0].Conditions.Ready = &ready
					})
					sync(b)
				}
			})
			b.Run("node-heartbeat", func(b *testing.B) {
				for range b.N {
					h.updateNode(b, benchNodeName(7), func(n *v1.Node) {
						n.Status.Conditions[0].LastHeartbeatTime = metav1.NewTime(time.Now())
					})
					sync(b)
				}
			})
			b.Run("node-health-flip", func(b *testing.B) {
				carried := 0
				for _, adv := range h.a.index.sent {
					for _, hop := range adv.NextHops {
						if hop.Node == benchNodeName(7) {
							carried++
						}
					}
				}
				for i := range b.N {
					h.setHealth(benchNodeName(7), i%2 == 1)
					sync(b)
				}
				h.setHealth(benchNodeName(7), true)
				sync(b)
				b.ReportMetric(float64(carried), "vips-carried")
			})
		})
	}
}
