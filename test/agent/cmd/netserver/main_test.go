package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestServe(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- serve(ctx, l, 5*time.Second, "web-1", "node-a1") }()

	// One connection, so the test knows the client address the server sees.
	conn, err := net.DialTimeout("tcp", l.Addr().String(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(conn)
	get := func(path string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://"+l.Addr().String()+path, nil)
		req.Header.Set("X-Forwarded-For", "203.0.113.99") // must not matter
		if err := req.Write(conn); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		return resp, string(body)
	}

	for _, path := range []string{"/", "/any/path?x=1"} {
		resp, body := get(path)
		if resp.StatusCode != http.StatusOK || !strings.HasSuffix(body, "}\n") || strings.Count(body, "\n") != 1 {
			t.Fatalf("GET %s: %s %q, want 200 and one JSON line", path, resp.Status, body)
		}
		var a Answer
		if err := json.Unmarshal([]byte(body), &a); err != nil {
			t.Fatalf("GET %s: %v in %q", path, err, body)
		}
		want := Answer{Pod: "web-1", Node: "node-a1", Client: conn.LocalAddr().String()}
		if a != want {
			t.Errorf("GET %s = %+v, want %+v", path, a, want)
		}
	}
	if resp, body := get("/healthz"); resp.StatusCode != http.StatusOK || body != "ok\n" {
		t.Errorf("GET /healthz: %s %q, want 200 \"ok\\n\"", resp.Status, body)
	}

	// SIGTERM (the context) stops it cleanly and closes the port.
	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("serve after the context ended: %v, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not return within 30 s of the context's end")
	}
	if c, err := net.DialTimeout("tcp", l.Addr().String(), 5*time.Second); err == nil {
		c.Close()
		t.Error("the port still accepts connections after shutdown")
	}
}
