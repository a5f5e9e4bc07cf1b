package fabric

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

// clientIn is an HTTP client whose connections start inside ns, from
// local (invalid: any address).
func clientIn(ns *Namespace, local netip.Addr) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) { return DialIn(ctx, ns, local, addr) },
	}}
}

func get(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

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
	if _, err := get(&http.Client{}, "http://"+addr); err == nil {
		t.Errorf("%s answered in the root namespace: the listener is not in %s", addr, ns)
	}
	c := clientIn(ns, netip.Addr{})
	for range 3 { // one connection after another
		c.CloseIdleConnections()
		if body, err := get(c, "http://"+addr); err != nil || body != "from the root namespace" {
			t.Fatalf("GET http://%s from %s = %q, %v", addr, ns, body, err)
		}
	}
}

// TestListenAndDialIn: a server listening inside one namespace sees the
// client's own address in another, joined by a veth.
func TestListenAndDialIn(t *testing.T) {
	Require(t, false)
	name := UniqueName("fabs")
	a, b := NewNamespace(t, name+"a"), NewNamespace(t, name+"b")
	Veth(t, "v", a, "v", b)
	AddAddr(t, a, "v", netip.MustParsePrefix("198.51.100.233/29"))
	AddAddr(t, b, "v", netip.MustParsePrefix("198.51.100.234/29"))
	l, err := ListenIn(b, "198.51.100.234:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, r.RemoteAddr) })}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	body, err := get(clientIn(a, netip.MustParseAddr("198.51.100.233")), "http://"+l.Addr().String())
	if err != nil || !strings.HasPrefix(body, "198.51.100.233:") {
		t.Errorf("GET from %s = %q, %v; want the server to see 198.51.100.233", a, body, err)
	}
	if _, err := DialIn(context.Background(), a, netip.MustParseAddr("203.0.113.99"), l.Addr().String()); err == nil {
		t.Errorf("DialIn from an address %s does not have succeeded", a)
	}
}
