package fabric

import (
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// ForwardInto makes target, a TCP address of the test's own namespace
// (for example the kube-apiserver on 127.0.0.1), reachable from inside ns
// at the returned address (127.0.0.1 and a free port there). No address or
// route is added anywhere: the listening socket is opened inside ns, and
// the test process copies each connection to target. t.Cleanup closes
// the listener and every connection.
func ForwardInto(t testing.TB, ns *Namespace, target string) string {
	t.Helper()
	l, err := ListenIn(ns, "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening in %s: %v", ns, err)
	}
	f := &forwarder{l: l, target: target, conns: map[net.Conn]bool{}}
	f.wg.Add(1)
	go f.serve()
	t.Cleanup(f.close)
	return l.Addr().String()
}

// ListenIn opens a TCP listener on addr inside ns, for a server of the
// test process that a namespace's programs reach. The socket belongs to
// the namespace it was created in: one OS thread enters ns, creates it and
// goes back. Were going back to fail, the thread would stay locked to its
// goroutine, and end with it rather than serve others in the wrong
// namespace (the Go runtime starts new threads from a clean one).
func ListenIn(ns *Namespace, addr string) (net.Listener, error) {
	type result struct {
		l   net.Listener
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		own, err := os.Open(fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		defer own.Close()
		target, err := os.Open("/run/netns/" + ns.Name)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		defer target.Close()
		if err := setns(target); err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("entering %s: %w", ns, err)}
			return
		}
		l, lerr := net.Listen("tcp", addr)
		if err := setns(own); err != nil {
			if l != nil {
				l.Close()
			}
			ch <- result{err: fmt.Errorf("leaving %s: %w", ns, err)} // the thread stays locked and ends
			return
		}
		runtime.UnlockOSThread()
		ch <- result{l, lerr}
	}()
	r := <-ch
	return r.l, r.err
}

func setns(f *os.File) error { return unix.Setns(int(f.Fd()), unix.CLONE_NEWNET) }

// forwarder copies every connection accepted on l to target.
type forwarder struct {
	l      net.Listener
	target string
	wg     sync.WaitGroup

	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]bool
}

func (f *forwarder) serve() {
	defer f.wg.Done()
	for {
		c, err := f.l.Accept()
		if err != nil {
			return // closed
		}
		f.wg.Add(1)
		go f.pipe(c)
	}
}

// track registers c to be closed by close; false when closing already.
func (f *forwarder) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.conns[c] = true
	return true
}

func (f *forwarder) pipe(in net.Conn) {
	defer f.wg.Done()
	defer in.Close()
	if !f.track(in) {
		return
	}
	out, err := net.DialTimeout("tcp", f.target, 10*time.Second)
	if err != nil {
		return
	}
	defer out.Close()
	if !f.track(out) {
		return
	}
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		done <- struct{}{}
	}
	go cp(out, in)
	go cp(in, out)
	<-done // either side ending ends both
	in.Close()
	out.Close()
	<-done
}

func (f *forwarder) close() {
	f.mu.Lock()
	f.closed = true
	conns := f.conns
	f.conns = nil
	f.mu.Unlock()
	_ = f.l.Close()
	for c := range conns {
		c.Close()
	}
	f.wg.Wait()
}
