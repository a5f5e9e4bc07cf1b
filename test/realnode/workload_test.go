package realnode

import (
	"strings"
	"testing"
	"time"
)

// TestFailedSummary: lbprobe's lines parse with each request's start, and
// the summary lists the failed ones, at most n, each with its start in the
// layout of ip monitor's stamps, so that it can be set beside the
// fabric's route changes.
func TestFailedSummary(t *testing.T) {
	out := []byte(`{"seq":1,"node":"{\"pod\":\"web-1\",\"node\":\"worker-a1\"}","ms":1.5,"start":"2026-12-02T00:18:06.5Z"}
{"seq":2,"err":"Client.Timeout exceeded","ms":2000.4,"start":"2026-12-02T00:18:06.917885Z"}
{"seq":3,"err":"connection refused","ms":0.7,"start":"2026-12-02T00:18:08.93Z"}
`)
	rs, err := ParseResults(out)
	if err != nil {
		t.Fatal(err)
	}
	stamp := func(s string) string {
		ts, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return ts.Local().Format(routeTimeLayout)
	}
	for _, tc := range []struct {
		n         int
		want, not []string
	}{
		{n: 5, want: []string{
			"request 2 started " + stamp("2026-12-02T00:18:06.917885Z") + ", after 2000 ms: Client.Timeout exceeded",
			"request 3 started " + stamp("2026-12-02T00:18:08.93Z") + ", after 1 ms: connection refused",
		}, not: []string{"request 1", "..."}},
		{n: 1, want: []string{"request 2 started", "\n  ..."}, not: []string{"request 3"}},
	} {
		got := FailedSummary(rs, tc.n)
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("FailedSummary(n=%d) = %q, want it to contain %q", tc.n, got, w)
			}
		}
		for _, w := range tc.not {
			if strings.Contains(got, w) {
				t.Errorf("FailedSummary(n=%d) = %q, want no %q", tc.n, got, w)
			}
		}
	}
	if Failed(rs) != 2 {
		t.Errorf("Failed = %d, want 2", Failed(rs))
	}
}
