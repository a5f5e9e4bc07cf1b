package provider

import (
	"context"
	"sync"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
)

// Event reasons the announcer reports on its own, outside Ensure.
const (
	reasonDuplicateNodeAddress = "DuplicateNodeAddress"
	reasonAddressNotAnnounced  = "AddressNotAnnounced"
)

// objectRef names an object to put an Event on.
type objectRef struct {
	obj runtime.Object
	key string // kind/namespace/name
}

func serviceRef(s *v1.Service) objectRef {
	return objectRef{obj: s, key: "Service/" + s.Namespace + "/" + s.Name}
}

func nodeRef(n *v1.Node) objectRef { return objectRef{obj: n, key: "Node/" + n.Name} }

// events records Events. Its warnOnce reports a problem once, not at every
// sync, until clear says it is gone: Events say that something changed.
type events struct {
	recorder record.EventRecorder

	mu sync.Mutex
	// active maps kind/namespace/name/reason to the message reported last.
	active map[string]string
	// touched holds the keys warned or cleared since beginSweep, so that
	// endSweep forgets the problems of objects that are gone.
	touched map[string]bool
}

// newEvents starts an Event broadcaster to the apiserver that ends with ctx.
func newEvents(ctx context.Context, client kubernetes.Interface) *events {
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	go func() {
		<-ctx.Done()
		broadcaster.Shutdown()
	}()
	return &events{
		recorder: broadcaster.NewRecorder(scheme.Scheme, v1.EventSource{Component: "baremetal-cloud-controller-manager"}),
		active:   map[string]string{},
	}
}

// event records one Event.
func (e *events) event(obj runtime.Object, typ, reason, msg string) {
	e.recorder.Event(obj, typ, reason, msg)
}

func (e *events) warnOnce(ref objectRef, reason, msg string) {
	k := ref.key + "/" + reason
	e.mu.Lock()
	last, seen := e.active[k]
	e.active[k] = msg
	e.touch(k)
	e.mu.Unlock()
	if !seen || last != msg {
		e.recorder.Event(ref.obj, v1.EventTypeWarning, reason, msg)
	}
}

func (e *events) clear(ref objectRef, reason string) {
	k := ref.key + "/" + reason
	e.mu.Lock()
	delete(e.active, k)
	e.touch(k)
	e.mu.Unlock()
}

func (e *events) touch(k string) {
	if e.touched != nil {
		e.touched[k] = true
	}
}

// beginSweep starts a pass over every object (a full sync).
func (e *events) beginSweep() {
	e.mu.Lock()
	e.touched = map[string]bool{}
	e.mu.Unlock()
}

// endSweep forgets the problems of the objects the pass did not see. A
// pass cut short by another one (a full sync during the announcer's
// round of slices, see verifyDirty) has been ended by that one: nothing
// is left to do.
func (e *events) endSweep() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.touched == nil {
		return
	}
	for k := range e.active {
		if !e.touched[k] {
			delete(e.active, k)
		}
	}
	e.touched = nil
}
