package health

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// freshEvery is the number of probes one connection answers at most: the
// probe after them dials. So a node that accepts no new connection while
// an old one still answers gets a probe over a new connection within
// freshEvery probes, and is found unhealthy within freshEvery × Interval +
// Timeout + (UnhealthyThreshold−1) × Timeout/2 (5.75 s with the defaults,
// against 1.75 s for a node that stops answering altogether), while the
// connects, and the sockets left in TIME_WAIT, are a fifth of one per
// probe. A count rather than an age, so that the bound scales with the
// Interval the operator chose for every other detection time.
const freshEvery = 5

// keptConn holds the one idle connection of a node between its probes:
// the idle connections of a Checker are at most one per target, and
// every one is closed when its prober stops.
type keptConn struct {
	mu sync.Mutex
	c  *probeConn // nil when none
}

// take removes the kept connection and returns it if it is fit for a
// probe: idle for at most idleTimeout, and not closed by the node. An
// unfit one is closed. It returns nil when there is none fit.
func (k *keptConn) take(idleTimeout time.Duration) *probeConn {
	k.mu.Lock()
	c := k.c
	k.c = nil
	k.mu.Unlock()
	if c == nil {
		return nil
	}
	if time.Since(c.idleSince) > idleTimeout || c.closedByPeer() {
		c.Close()
		return nil
	}
	return c
}

// put keeps c for the next probe, unless it has answered freshEvery probes
// or another connection is kept already: then it closes c.
func (k *keptConn) put(c *probeConn) {
	if c.uses >= freshEvery {
		c.Close()
		return
	}
	c.idleSince = time.Now()
	k.mu.Lock()
	kept := k.c == nil
	if kept {
		k.c = c
	}
	k.mu.Unlock()
	if !kept {
		c.Close()
	}
}

// drop closes the kept connection, if any.
func (k *keptConn) drop() {
	k.mu.Lock()
	c := k.c
	k.c = nil
	k.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

// probeConn is one HTTP/1.1 connection to a node, used by one probe at a
// time. It needs no goroutine of its own: between probes it is only a
// socket (net/http's Transport keeps two goroutines per idle connection).
type probeConn struct {
	net.Conn
	lr        io.LimitedReader // bounds what one answer may read
	br        *bufio.Reader    // reads lr
	uses      int              // probes sent over it
	idleSince time.Time        // when it was last kept
}

func newProbeConn(nc net.Conn) *probeConn {
	c := &probeConn{Conn: nc}
	c.lr.R = nc
	// kube-proxy's answer is about 250 bytes; longer lines still parse.
	c.br = bufio.NewReaderSize(&c.lr, 1024)
	return c
}

// answer is what a round trip learnt.
type answer struct {
	// started tells that a byte of the answer arrived.
	started bool
	code    int
	status  string // "503 Service Unavailable"
	// reusable tells that the connection may carry another request: the
	// node did not ask to close it, the body was read whole and nothing
	// more came.
	reusable bool
}

// past is a deadline that has passed: a read or write with it fails at
// once.
var past = time.Unix(1, 0)

// roundTrip sends request and reads the answer, within ctx's deadline and
// cut short when ctx ends. An error is returned when no status came (the
// connection broke or timed out, the answer is no HTTP, or its header is
// larger than maxHeaderBytes); the body only decides whether the
// connection can be reused.
func (c *probeConn) roundTrip(ctx context.Context, request []byte) (a answer, err error) {
	deadline, _ := ctx.Deadline()
	if err := c.SetDeadline(deadline); err != nil {
		return a, err
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(past) })
	defer func() {
		if !stop() {
			// ctx ended, and its deadline may still be set on the
			// connection after we return: do not reuse it.
			a.reusable = false
		}
	}()
	c.uses++
	if _, err := c.Write(request); err != nil {
		return a, err
	}
	c.lr.N = maxHeaderBytes
	resp, err := http.ReadResponse(c.br, nil)
	a.started = c.lr.N < maxHeaderBytes || c.br.Buffered() > 0
	if err != nil {
		if c.lr.N == 0 {
			return a, fmt.Errorf("answer header larger than %d bytes", maxHeaderBytes)
		}
		return a, err
	}
	a.code, a.status = resp.StatusCode, resp.Status
	c.lr.N = maxBodyBytes
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	a.reusable = err == nil && !resp.Close && c.br.Buffered() == 0
	return a, nil
}

// closedByPeer tells whether the node has closed c since its last answer
// (or sent something unasked, which makes c unfit too), with a read that
// does not wait.
func (c *probeConn) closedByPeer() bool {
	if err := c.SetReadDeadline(past); err != nil {
		return true
	}
	c.lr.N = 1
	_, err := c.br.Peek(1)
	return !errors.Is(err, os.ErrDeadlineExceeded)
}
