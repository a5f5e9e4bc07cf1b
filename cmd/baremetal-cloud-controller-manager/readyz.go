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
