package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/go-logr/logr/funcr"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/textlogger"
)

// TestQuietEventLog logs as the event broadcaster does, through the
// logger withQuietEventLog puts in the context: the quiet Events' lines
// are left out, every other line is kept, with the logger's names and
// values.
func TestQuietEventLog(t *testing.T) {
	for _, tc := range []struct {
		name      string
		msg       string
		kv        []any
		wantLines int
	}{
		{"a quiet Normal Event", eventLogMessage, []any{"object", "default/web", "type", "Normal", "reason", "EnsuringLoadBalancer", "message", "Ensuring load balancer"}, 0},
		{"the no-nodes Warning", eventLogMessage, []any{"type", "Warning", "reason", "UnAvailableLoadBalancer", "message", "There are no available nodes for LoadBalancer"}, 0},
		{"another Warning", eventLogMessage, []any{"type", "Warning", "reason", "SyncLoadBalancerFailed", "message", "boom"}, 1},
		{"a deletion Event", eventLogMessage, []any{"type", "Normal", "reason", "DeletedLoadBalancer"}, 1},
		{"a quiet reason in another message", "Ensuring", []any{"type", "Normal", "reason", "EnsuringLoadBalancer"}, 1},
		{"odd values", eventLogMessage, []any{"type", 3, "reason"}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var lines []string
			base := funcr.New(func(prefix, args string) { lines = append(lines, prefix+" "+args) }, funcr.Options{})
			ctx := withQuietEventLog(klog.NewContext(context.Background(), base))
			klog.FromContext(ctx).WithName("events").WithValues("controller", "service").Info(tc.msg, tc.kv...)
			if len(lines) != tc.wantLines {
				t.Fatalf("logged %q, want %d line(s)", lines, tc.wantLines)
			}
			if len(lines) == 1 && (!strings.Contains(lines[0], `"controller"="service"`) || !strings.HasPrefix(lines[0], "events")) {
				t.Errorf("logged %q: the name or values are lost", lines[0])
			}
		})
	}
}

// TestQuietEventLogCaller: a line that passes names the code that logged
// it, not the wrapper or logr (the binary's logger is a textlogger).
func TestQuietEventLogCaller(t *testing.T) {
	var buf bytes.Buffer
	base := textlogger.NewLogger(textlogger.NewConfig(textlogger.Output(&buf)))
	ctx := withQuietEventLog(klog.NewContext(context.Background(), base))
	klog.FromContext(ctx).Info("Ensured load balancer")
	klog.FromContext(ctx).WithName("x").WithValues("k", "v").Info("Ensured load balancer")
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if !strings.Contains(line, "servicelog_test.go:") {
			t.Errorf("logged %q: the caller is not this test", line)
		}
	}
}
