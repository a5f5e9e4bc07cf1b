package health

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"time"
)

// userAgent names the prober in the nodes' access logs.
const userAgent = "baremetal-ccm-healthcheck"

// newClient returns the HTTP client every probe of a Checker shares. Like a
// load balancer's probe, each probe opens its own TCP connection (keep-alives
// off: a kube-proxy that accepts no new connection is not healthy because an
// old one still works), goes straight to the node (no proxy from the
// environment), and judges the first answer (no redirect followed). The
// deadline is the request's context.
func newClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                  nil,
			DialContext:            (&net.Dialer{KeepAlive: -1}).DialContext,
			DisableKeepAlives:      true,
			DisableCompression:     true,
			MaxResponseHeaderBytes: 16 << 10,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

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

// probe asks addr once. It succeeds on HTTP 200 within timeout; kube-proxy
// answers 503 while it is not healthy. The error says what happened, for
// the log line of a flip.
func (c *Checker) probe(ctx context.Context, addr netip.AddrPort, path string, timeout time.Duration) error {
	u, err := probeURL(addr, path)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("health probe: %w", err)
	}
	req.Header.Set("User-Agent", userAgent)
	resp, err := c.client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("GET %s: no answer within %s", u, timeout)
		}
		return err // a *url.Error: `Get "http://…": dial tcp …: connection refused`
	}
	// Without keep-alives, closing the body closes the connection: the
	// answer's body says nothing the status does not.
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return nil
}
