package main

import (
	"context"

	"github.com/go-logr/logr"
	v1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
)

// eventLogMessage is the message with which an event broadcaster's
// structured logging (record.EventBroadcaster.StartStructuredLogging)
// logs each Event, with its "type" and "reason" among the values.
const eventLogMessage = "Event occurred"

// withQuietEventLog is ctx with a logger that leaves out the lines with
// which the upstream service controller's event broadcaster logs the
// quiet Events. It logs every Event at level 0 before the sink is asked
// to write it: without this, the Events that quietClient does not write
// would still make 20,000 log lines at each new leader's start with
// 10,000 Services, and the "no available nodes" Warning (see
// withoutNodes) one per Service, saying something untrue.
func withQuietEventLog(ctx context.Context) context.Context {
	sink := klog.FromContext(ctx).GetSink()
	if sink == nil {
		return ctx
	}
	// One frame more between the caller and the sink: ours.
	if cd, ok := sink.(logr.CallDepthLogSink); ok {
		sink = cd.WithCallDepth(1)
	}
	return klog.NewContext(ctx, logr.New(quietEventSink{sink}))
}

// quietEventSink passes every log line to its sink but the broadcaster's
// lines of quiet Events.
type quietEventSink struct{ logr.LogSink }

func (s quietEventSink) Info(level int, msg string, keysAndValues ...any) {
	if msg == eventLogMessage && quiet(loggedEvent(keysAndValues)) {
		return
	}
	s.LogSink.Info(level, msg, keysAndValues...)
}

// Init does nothing: the sink was initialised with its own logger, and
// initialising it again would reset the call depth it keeps (textlogger
// sets it, klog's adds to it).
func (quietEventSink) Init(logr.RuntimeInfo) {}

func (s quietEventSink) WithValues(keysAndValues ...any) logr.LogSink {
	return quietEventSink{s.LogSink.WithValues(keysAndValues...)}
}

func (s quietEventSink) WithName(name string) logr.LogSink {
	return quietEventSink{s.LogSink.WithName(name)}
}

func (s quietEventSink) WithCallDepth(depth int) logr.LogSink {
	if cd, ok := s.LogSink.(logr.CallDepthLogSink); ok {
		return quietEventSink{cd.WithCallDepth(depth)}
	}
	return s
}

// loggedEvent is the Event's type and reason from the values of its log
// line.
func loggedEvent(keysAndValues []any) *v1.Event {
	ev := &v1.Event{}
	for i := 0; i+1 < len(keysAndValues); i += 2 {
		v, _ := keysAndValues[i+1].(string)
		switch keysAndValues[i] {
		case "type":
			ev.Type = v
		case "reason":
			ev.Reason = v
		}
	}
	return ev
}
