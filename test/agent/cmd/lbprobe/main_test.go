package main

import "testing"

// TestAnswerOf: the summary groups the lab agent's plain answers by node,
// and netserver's JSON answers by node and pod.
func TestAnswerOf(t *testing.T) {
	for _, tc := range []struct {
		body, node, pod string
	}{
		{"bmlab-a1", "bmlab-a1", ""},
		{`{"pod":"demo-7d9-x2","node":"worker-c1","client":"198.51.100.229:40312"}`, "worker-c1", "demo-7d9-x2"},
		{`{"pod":"p"}`, `{"pod":"p"}`, ""},
		{"{not json", "{not json", ""},
	} {
		node, pod := answerOf(tc.body)
		if node != tc.node || pod != tc.pod {
			t.Errorf("answerOf(%q) = %q, %q; want %q, %q", tc.body, node, pod, tc.node, tc.pod)
		}
	}
}
