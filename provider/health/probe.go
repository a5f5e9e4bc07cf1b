package health

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"time"
)

// userAgent names the prober in the nodes' access logs.
const userAgent = "baremetal-ccm-healthcheck"

// Limits on a node's answer. An answer whose header is larger fails; one
// whose body is larger is judged on its status as usual, but its
// connection is not kept.
const (
	maxHeaderBytes = 16 << 10
	maxBodyBytes   = 16 << 10
)

// probeURL is the URL probed at addr: http://192.0.2.10:10256/healthz,
// http://[2001:db8::10]:10256/healthz.
func probeURL(addr netip.AddrPort, path string) (string, error) {
	ref, err := url.ParseRequestURI(path)
	if err != nil {
		return "", fmt.Errorf("health check path %q: %w", path, err)
	}
	u := url.URL{
		Scheme:   "http",
		Host:     netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port()).String(),
		Path:     ref.Path,
		RawPath:  ref.RawPath,
		RawQuery: ref.RawQuery,
	}
	return u.String(), nil
}

// endpoint is what one prober sends to its node and the connection it
// keeps there between probes (see [endpoint.probe]). Its methods are safe
// for concurrent use: a prober's probes may overlap.
type endpoint struct {
	url     string
	dialTo  string // the address dialled: unmapped, with its zone
	request []byte // the GET of every probe, as written on the wire
	err     error  // why nothing can be probed (a bad path), or nil
	// idleTimeout is how long a kept connection may have been idle and
	// still be used: a little more than an Interval.
	idleTimeout time.Duration
	dialer      net.Dialer

	kept keptConn
}

// newEndpoint returns the endpoint probed by a prober of cfg at addr.
func newEndpoint(addr netip.AddrPort, cfg Config) *endpoint {
	e := &endpoint{
		dialTo:      netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port()).String(),
		idleTimeout: cfg.Interval + cfg.Timeout,
		// No TCP keep-alive: the probes themselves show whether a kept
		// connection still works.
		dialer: net.Dialer{KeepAlive: -1},
	}
	e.url, e.err = probeURL(addr, cfg.Path)
	if e.err != nil {
		return e
	}
	req, err := http.NewRequest(http.MethodGet, e.url, nil)
	if err != nil {
		e.err = fmt.Errorf("health probe: %w", err)
		return e
	}
	// HTTP/1.1 without "Connection: close": the node may keep the
	// connection open for the next probe.
	req.Header.Set("User-Agent", userAgent)
	var b bytes.Buffer
	if err := req.Write(&b); err != nil {
		e.err = fmt.Errorf("health probe: %w", err)
		return e
	}
	e.request = b.Bytes()
	return e
}

// close closes the kept connection. No probe may be under way.
func (e *endpoint) close() { e.kept.drop() }

// probe asks the node once. It succeeds on HTTP 200 within timeout, the
// connection included; kube-proxy answers 503 while it is not healthy. No
// redirect is followed, no proxy of the environment is used. The error
// says what happened, for the log line of a flip.
//
// The probe goes over the connection kept from the previous probe, if
// there is one fit for it (see [keptConn.take]), otherwise over a new
// one. This is the difference from a cloud load balancer's probe, which
// opens a connection every time: at 1,000 nodes probed every second, one
// connection per probe is 1,000 connects a second and 60,000 sockets in
// TIME_WAIT (docs/benchmarks.md, "Health probes at 1,000 nodes"). A node
// that stops accepting connections while the old ones still work (a
// kube-proxy whose listener is stuck, a full conntrack table, a firewall
// that lets established flows pass) must not look healthy for long,
// though: a connection answers at most [freshEvery] probes, so such a
// node gets a probe over a new connection within freshEvery probes, and
// any failure closes the connection, so that the next probe dials too.
//
// A kept connection that the node has closed (an idle timeout of its
// server, a restart) is found before it is used; one that breaks before
// the answer has started is replaced by a new one within the same
// timeout, as net/http's client retries a request on a reused connection.
func (e *endpoint) probe(ctx context.Context, timeout time.Duration) error {
	if e.err != nil {
		return e.err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := e.tryKept(ctx)
	if errors.Is(err, errNoKeptConn) {
		err = e.tryNew(ctx)
	}
	if err == nil {
		return nil
	}
	e.kept.drop() // the next probe dials
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("GET %s: %w within %s", e.url, errNoAnswer, timeout)
	}
	return err
}

// errNoAnswer is a probe's timeout: the node did not answer in time, or
// this process did not read the answer in time (see starvation.go).
var errNoAnswer = errors.New("no answer")

// errNoKeptConn tells that the probe needs a new connection: there is none
// kept, or the kept one broke before its answer started.
var errNoKeptConn = errors.New("no kept connection")

// tryKept probes over the kept connection, if there is one fit for use.
func (e *endpoint) tryKept(ctx context.Context) error {
	c := e.kept.take(e.idleTimeout)
	if c == nil {
		return errNoKeptConn
	}
	a, err := c.roundTrip(ctx, e.request)
	if err != nil && !a.started && ctx.Err() == nil {
		c.Close()
		return errNoKeptConn
	}
	return e.judge(c, a, err)
}

// tryNew probes over a new connection.
func (e *endpoint) tryNew(ctx context.Context) error {
	nc, err := e.dialer.DialContext(ctx, "tcp", e.dialTo)
	if err != nil {
		return fmt.Errorf("GET %s: %w", e.url, err)
	}
	c := newProbeConn(nc)
	a, err := c.roundTrip(ctx, e.request)
	return e.judge(c, a, err)
}

// judge turns c's round trip into the probe's result, and keeps c for the
// next probe if the answer was a success that leaves it fit for another.
func (e *endpoint) judge(c *probeConn, a answer, err error) error {
	switch {
	case err != nil:
		c.Close()
		return fmt.Errorf("GET %s: %w", e.url, err)
	case a.code != http.StatusOK:
		c.Close()
		return fmt.Errorf("GET %s: %s", e.url, a.status)
	case a.reusable:
		e.kept.put(c)
	default:
		c.Close()
	}
	return nil
}
