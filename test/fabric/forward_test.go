package fabric

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
)

// TestForwardInto: a server that listens on the root namespace's loopback
// answers a client inside a namespace, which has no route to the root
// namespace at all.
func TestForwardInto(t *testing.T) {
	Require(t, false)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "from the root namespace") })}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })

	ns := NewNamespace(t, UniqueName("fabf"))
	addr := ForwardInto(t, ns, l.Addr().String())
	if !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Fatalf("ForwardInto() = %q, want an address on the namespace's loopback", addr)
	}
	if _, err := (*Namespace)(nil).Exec(context.Background(), "curl", "-sS", "--max-time", "5", "http://"+addr); err == nil {
		t.Errorf("%s answered in the root namespace: the listener is not in %s", addr, ns)
	}
	for range 3 { // one connection after another
		out, err := ns.Exec(context.Background(), "curl", "-sS", "--max-time", "20", "http://"+addr)
		if err != nil || string(out) != "from the root namespace" {
			t.Fatalf("curl http://%s in %s = %q, %v", addr, ns, out, err)
		}
	}
}
