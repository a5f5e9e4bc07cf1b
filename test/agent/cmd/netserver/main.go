// Command netserver is the lab's workload (the netserver image): an HTTP
// server that answers every request with one JSON line saying which pod and
// node answered and whom it saw as the client, the remote address of the
// TCP connection, so that a test sees the spread of requests over pods and
// nodes and whether the client's source address was kept
// (externalTrafficPolicy: Local). /healthz answers "ok" for probes. It
// stops gracefully on SIGTERM: kube-proxy has stopped sending to a
// terminating pod by then, and requests in flight finish.
//
// POD_NAME and NODE_NAME come from the pod's environment (the downward
// API).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Answer is what every request gets, as one JSON line.
type Answer struct {
	Pod    string `json:"pod"`
	Node   string `json:"node"`
	Client string `json:"client"`
}

func main() {
	listen := flag.String("listen", ":8080", "address to listen on")
	grace := flag.Duration("shutdown-grace", 10*time.Second, "how long requests in flight may take after SIGTERM")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	l, err := net.Listen("tcp", *listen)
	if err == nil {
		err = serve(ctx, l, *grace, os.Getenv("POD_NAME"), os.Getenv("NODE_NAME"))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "netserver:", err)
		os.Exit(1)
	}
}

// serve answers on l until ctx ends, then lets requests in flight finish
// for up to grace.
func serve(ctx context.Context, l net.Listener, grace time.Duration, pod, node string) error {
	srv := &http.Server{
		Handler:           handler(pod, node),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
	}
	fmt.Fprintf(os.Stderr, "netserver: pod %q node %q listening on %s\n", pod, node, l.Addr())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err := srv.Shutdown(shutdownCtx)
	if serveErr := <-done; !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	return err
}

func handler(pod, node string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		// r.RemoteAddr is the TCP peer: no header can change it.
		_ = json.NewEncoder(w).Encode(Answer{Pod: pod, Node: node, Client: r.RemoteAddr})
	})
	return mux
}
