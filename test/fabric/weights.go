package fabric

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strings"
)

// NextHopWeights returns the weight of every next hop of ns's kernel
// route for prefix (none when there is no route), as ip -j route prints
// it: a multipath route's "nexthop via X weight N", 1 for a route with
// a single gateway. A next hop listed twice gets the sum. It works for
// routes through kernel nexthop objects (nhid) as well, which the kernel
// lists with their weights too.
//
// The kernel keeps weights 1-256 for a route's next hops. FRR turns the
// BGP link-bandwidth extended community into these weights: FRR before
// 10.0 as floor(100 × bandwidth / sum of the multipaths' bandwidths)
// (0 becomes 1 in the kernel), FRR 10.0 and later as
// max(1, floor(255 × bandwidth / largest bandwidth)).
func NextHopWeights(ctx context.Context, ns *Namespace, prefix netip.Prefix) (map[netip.Addr]int, error) {
	routes, err := Routes(ctx, ns, prefix)
	if err != nil {
		return nil, err
	}
	out := map[netip.Addr]int{}
	for _, r := range routes {
		if a, err := netip.ParseAddr(r.Gateway); err == nil {
			out[a]++
		}
		for _, nh := range r.Nexthops {
			a, err := netip.ParseAddr(nh.Gateway)
			if err != nil {
				continue
			}
			out[a] += max(1, nh.Weight)
		}
	}
	return out, nil
}

// CheckWeightRatio returns nil when got has exactly want's next hops and
// each one's share of the total weight is within tolerance (an absolute
// fraction: 0.02 is two percentage points) of its share in want; else an
// error that lists both. FRR before 10.0 truncates weights to whole
// hundredths of the total, so its weights for the ratio 1:2:3 are
// 16:33:50 and a tolerance of 0.02 holds them.
func CheckWeightRatio(got, want map[netip.Addr]int, tolerance float64) error {
	var gotSum, wantSum int
	for _, w := range got {
		gotSum += w
	}
	for _, w := range want {
		wantSum += w
	}
	var errs []error
	for a := range want {
		if _, ok := got[a]; !ok {
			errs = append(errs, fmt.Errorf("next hop %s missing", a))
		}
	}
	for a := range got {
		if _, ok := want[a]; !ok {
			errs = append(errs, fmt.Errorf("next hop %s not wanted", a))
		}
	}
	if len(errs) == 0 && wantSum > 0 && gotSum > 0 {
		for a, w := range want {
			gs, ws := float64(got[a])/float64(gotSum), float64(w)/float64(wantSum)
			if math.Abs(gs-ws) > tolerance {
				errs = append(errs, fmt.Errorf("next hop %s has %.3f of the weight, want %.3f ± %.3f", a, gs, ws, tolerance))
			}
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("weights %s, want the ratio %s: %w", FormatWeights(got), FormatWeights(want), errors.Join(errs...))
}

// FormatWeights prints weights sorted by next hop: "a=1 b=2".
func FormatWeights(w map[netip.Addr]int) string {
	addrs := make([]netip.Addr, 0, len(w))
	for a := range w {
		addrs = append(addrs, a)
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	parts := make([]string, len(addrs))
	for i, a := range addrs {
		parts[i] = fmt.Sprintf("%s=%d", a, w[a])
	}
	return strings.Join(parts, " ")
}
