package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"time"

	"k8s.io/klog/v2"
)

// readiness is what /readyz asks the cloud: nil once the replica
// announces.
type readiness interface {
	Ready() error
}

// readyzHandler answers 200 "ok" when r is ready, else 503 with the
// reason. The reason says no more than the replica's log does: a count of
// sessions, never an address or a peer's name.
func readyzHandler(r readiness) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/readyz" {
			http.NotFound(w, req)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if err := r.Ready(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not ready: %v\n", err)
			return
		}
		fmt.Fprintln(w, "ok")
	})
}

// serveReadyz serves /readyz over plain HTTP on addr until ctx ends. The
// listener is bound before it returns, so that a port in use fails the
// start.
func serveReadyz(ctx context.Context, addr netip.AddrPort, r readiness) error {
	l, err := net.Listen("tcp", addr.String())
	if err != nil {
		return fmt.Errorf("--readiness-bind-address: %w", err)
	}
	srv := &http.Server{
		Handler:           readyzHandler(r),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       5 * time.Second,
		WriteTimeout:      5 * time.Second,
		MaxHeaderBytes:    4 << 10,
	}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			klog.FromContext(ctx).Error(err, "The /readyz server stopped")
		}
	}()
	go func() {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	}()
	return nil
}

// defaultReadinessPort is the port of /readyz the DaemonSet's probe asks.
const defaultReadinessPort = 10263

// readinessAddress reads --readiness-bind-address: an address with a
// port, or an address alone (an IPv6 $(NODE_IP) cannot be followed by
// ":port" in a manifest), which then listens on port.
func readinessAddress(flag string, port int) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(flag); err == nil {
		if ap.Port() == 0 {
			return netip.AddrPort{}, fmt.Errorf("--readiness-bind-address=%q: the port must not be 0", flag)
		}
		return ap, nil
	}
	a, err := netip.ParseAddr(flag)
	if err != nil || a.Zone() != "" {
		return netip.AddrPort{}, fmt.Errorf("--readiness-bind-address=%q: must be an IP address (198.51.100.11, 2001:db8::11) or an address and port (198.51.100.11:10263, [2001:db8::11]:10263)", flag)
	}
	if port <= 0 || port > 65535 {
		return netip.AddrPort{}, fmt.Errorf("--readiness-port=%d: must be a port, 1 to 65535", port)
	}
	return netip.AddrPortFrom(a, uint16(port)), nil
}
