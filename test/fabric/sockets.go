package fabric

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
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
// test process that a namespace's programs reach.
func ListenIn(ns *Namespace, addr string) (net.Listener, error) {
	var l net.Listener
	err := inNamespace(ns, func() error {
		var err error
		l, err = net.Listen("tcp", addr)
		return err
	})
	if err != nil && l != nil {
		l.Close()
		return nil, err
	}
	return l, err
}

// DialIn connects from inside ns, from local (an address of ns; invalid:
// any) to remote, for a client of the test process that stands in a
// namespace (a pod).
func DialIn(ctx context.Context, ns *Namespace, local netip.Addr, remote string) (net.Conn, error) {
	d := net.Dialer{}
	if local.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: local.AsSlice()}
	}
	var c net.Conn
	err := inNamespace(ns, func() error {
		var err error
		c, err = d.DialContext(ctx, "tcp", remote)
		return err
	})
	if err != nil && c != nil {
		c.Close()
		return nil, err
	}
	return c, err
}

// inNamespace runs f on an OS thread that is in ns, then puts the thread
// back. A socket belongs to the namespace it was created in, whichever
// thread uses it later. Were putting the thread back to fail, it would
// stay locked to its goroutine and end with it rather than serve others
// in the wrong namespace (the Go runtime starts new threads from a clean
// one).
func inNamespace(ns *Namespace, f func() error) error {
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		own, err := os.Open(fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			ch <- err
			return
		}
		defer own.Close()
		target, err := os.Open("/run/netns/" + ns.Name)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- err
			return
		}
		defer target.Close()
		if err := setns(target); err != nil {
			runtime.UnlockOSThread()
			ch <- fmt.Errorf("entering %s: %w", ns, err)
			return
		}
		ferr := f()
		if err := setns(own); err != nil {
			ch <- fmt.Errorf("leaving %s: %w", ns, err) // the thread stays locked and ends
			return
		}
		runtime.UnlockOSThread()
		ch <- ferr
	}()
	return <-ch
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
