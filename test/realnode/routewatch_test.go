package realnode

import (
	"fmt"
	"strings"
	"testing"
)

// TestFormatChanges: a report lists each router's changes in order, leaves
// out the IPv6 link-local noise, and is bounded.
func TestFormatChanges(t *testing.T) {
	many := make([]string, maxReportedChanges+3)
	for i := range many {
		many[i] = fmt.Sprintf("[t] 203.0.113.%d nhid 9 proto bgp", i)
	}
	for _, tc := range []struct {
		name  string
		names []string
		lines map[string][]string
		want  string
	}{
		{"nothing", []string{"tor-a", "client"}, map[string][]string{}, " (none)"},
		{"only noise", []string{"tor-a"}, map[string][]string{"tor-a": {
			"[t] local fe80::1 dev n2 table local proto kernel", "[t] multicast ff00::/8 dev n2 table local"}}, " (none)"},
		{"in the routers' order", []string{"tor-b", "client"}, map[string][]string{
			"client": {"[t2] id 17 group 6/9 proto zebra"},
			"tor-b":  {"[t1] Deleted 203.0.113.1 nhid 20 via 198.51.100.19 dev rack", "[t1] fe80::/64 dev n1"},
		}, "\n  tor-b: [t1] Deleted 203.0.113.1 nhid 20 via 198.51.100.19 dev rack\n  client: [t2] id 17 group 6/9 proto zebra"},
		{"bounded", []string{"client"}, map[string][]string{"client": many},
			"\n  client: " + many[maxReportedChanges-1] + "\n  … and 3 more"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := formatChanges(tc.names, tc.lines)
			if tc.name == "bounded" {
				if !strings.HasSuffix(got, tc.want) || strings.Count(got, "\n  client:") != maxReportedChanges {
					t.Errorf("formatChanges = …%q, want %d lines ending %q", got[max(0, len(got)-200):], maxReportedChanges, tc.want)
				}
				return
			}
			if got != tc.want {
				t.Errorf("formatChanges = %q, want %q", got, tc.want)
			}
		})
	}
}
