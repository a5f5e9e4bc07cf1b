package bgp

import (
	"sort"

	"github.com/go-logr/logr"
	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
)

// logAdapter sends GoBGP's logs to klog/logr. GoBGP's Info is chatty, so it
// goes to V(2); Warn to V(0); Debug to V(4).
type logAdapter struct {
	l logr.Logger
}

var _ gobgplog.Logger = (*logAdapter)(nil)

func kv(fields gobgplog.Fields) []any {
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]any, 0, 2*len(keys))
	for _, k := range keys {
		out = append(out, k, fields[k])
	}
	return out
}

// Panic and Fatal: GoBGP expects them not to return.
func (a *logAdapter) Panic(msg string, f gobgplog.Fields) {
	a.l.Error(nil, msg, kv(f)...)
	panic("gobgp: " + msg)
}

func (a *logAdapter) Fatal(msg string, f gobgplog.Fields) {
	a.l.Error(nil, msg, kv(f)...)
	if f["Topic"] == nil && f["Err"] != nil && msg == "failed to listen grpc port" {
		// The optional gRPC API: the speaker works without it, and
		// NewSpeaker has checked the address already.
		return
	}
	panic("gobgp: " + msg)
}

func (a *logAdapter) Error(msg string, f gobgplog.Fields) { a.l.Error(nil, msg, kv(f)...) }
func (a *logAdapter) Warn(msg string, f gobgplog.Fields)  { a.l.Info(msg, kv(f)...) }

func (a *logAdapter) Info(msg string, f gobgplog.Fields) {
	if l := a.l.V(2); l.Enabled() {
		l.Info(msg, kv(f)...)
	}
}

func (a *logAdapter) Debug(msg string, f gobgplog.Fields) {
	if l := a.l.V(4); l.Enabled() {
		l.Info(msg, kv(f)...)
	}
}

func (a *logAdapter) SetLevel(gobgplog.LogLevel) {}

func (a *logAdapter) GetLevel() gobgplog.LogLevel {
	if a.l.V(4).Enabled() {
		return gobgplog.DebugLevel
	}
	return gobgplog.InfoLevel
}
