package provider

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/baremetal-ccm/baremetal-ccm/bgp"
	"github.com/baremetal-ccm/baremetal-ccm/provider/service"
)

func holder(name string, minute int, annotations map[string]string) *v1.Service {
	s := lbService(name, v1.ServiceExternalTrafficPolicyCluster)
	s.CreationTimestamp = metav1.Unix(int64(minute*60), 0)
	for k, v := range annotations {
		s.Annotations[k] = v
	}
	return s
}

func communities(n int) string {
	var parts []string
	for i := range n {
		parts = append(parts, fmt.Sprintf("65000:%d", i))
	}
	return strings.Join(parts, ",")
}

// TestMergeAttributes: the holders of a shared VIP merge their attributes,
// and one bad holder loses its own attributes, never the other holders'.
func TestMergeAttributes(t *testing.T) {
	const asn = 64512
	c := func(lo uint32) bgp.Community { return bgp.Community(65000<<16 | lo) }
	for _, tc := range []struct {
		name    string
		holders []*v1.Service
		want    service.BGPAttributes
	}{
		{
			name: "merged, oldest holder's local-pref",
			holders: []*v1.Service{
				holder("a", 1, map[string]string{service.AnnotationBGPCommunities: "65000:1", service.AnnotationBGPLocalPref: "150"}),
				holder("b", 2, map[string]string{service.AnnotationBGPCommunities: "65000:1,65000:2", service.AnnotationBGPLocalPref: "200"}),
			},
			want: service.BGPAttributes{Communities: []bgp.Community{c(1), c(2)}, LocalPref: 150},
		},
		{
			name: "a holder with an unparsable annotation adds nothing",
			holders: []*v1.Service{
				holder("a", 1, map[string]string{service.AnnotationBGPCommunities: "65000:1"}),
				holder("b", 2, map[string]string{service.AnnotationBGPCommunities: "65536:1"}),
			},
			want: service.BGPAttributes{Communities: []bgp.Community{c(1)}},
		},
		{
			name: "a holder in the speaker's reserved rack-marker range adds nothing",
			holders: []*v1.Service{
				holder("a", 1, map[string]string{service.AnnotationBGPCommunities: "65000:1"}),
				holder("b", 2, map[string]string{service.AnnotationBGPLargeCommunities: "64512:1380008779:1"}),
			},
			want: service.BGPAttributes{Communities: []bgp.Community{c(1)}},
		},
		{
			name: "a holder that would make the VIP too large for one message adds nothing",
			holders: []*v1.Service{
				holder("a", 1, map[string]string{service.AnnotationBGPCommunities: "65000:1"}),
				holder("b", 2, map[string]string{service.AnnotationBGPCommunities: communities(1100)}),
				holder("c", 3, map[string]string{service.AnnotationBGPCommunities: "65000:2"}),
			},
			want: service.BGPAttributes{Communities: []bgp.Community{c(1), c(2)}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := mergeAttributes(asn, tc.holders)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("mergeAttributes (-want +got):\n%s", diff)
			}
		})
	}
}
