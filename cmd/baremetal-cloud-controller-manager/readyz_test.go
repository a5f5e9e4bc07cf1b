package main

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

type fakeReadiness struct{ err error }

func (f fakeReadiness) Ready() error { return f.err }

func TestReadyzHandler(t *testing.T) {
	for _, tc := range []struct {
		name     string
		err      error
		path     string
		code     int
		wantBody string
	}{
		{"ready", nil, "/readyz", http.StatusOK, "ok\n"},
		{"not ready", errors.New("none of the 2 BGP sessions is Established"), "/readyz", http.StatusServiceUnavailable, "not ready: none of the 2 BGP sessions is Established\n"},
		{"other path", nil, "/metrics", http.StatusNotFound, "404 page not found\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			readyzHandler(fakeReadiness{tc.err}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tc.path, nil))
			body, _ := io.ReadAll(rec.Result().Body)
			if rec.Code != tc.code || string(body) != tc.wantBody {
				t.Errorf("GET %s = %d %q, want %d %q", tc.path, rec.Code, body, tc.code, tc.wantBody)
			}
		})
	}
}

func TestReadinessFlag(t *testing.T) {
	for _, tc := range []struct {
		value string
		port  int
		want  string // the address served; empty: an error naming flag
		flag  string
	}{
		{value: "", port: 10263},
		{value: "198.51.100.11:10263", port: 10263, want: "198.51.100.11:10263"},
		{value: "[2001:db8::1]:10263", port: 10263, want: "[2001:db8::1]:10263"},
		// An address alone, as the DaemonSet passes $(NODE_IP), of either family.
		{value: "198.51.100.11", port: 10263, want: "198.51.100.11:10263"},
		{value: "2001:db8::1", port: 10263, want: "[2001:db8::1]:10263"},
		{value: "2001:db8::1", port: 9999, want: "[2001:db8::1]:9999"},
		{value: "2001:db8::1", port: 0, flag: "--readiness-port"},
		{value: "198.51.100.11", port: 70000, flag: "--readiness-port"},
		{value: "localhost:10263", port: 10263, flag: "--readiness-bind-address"},
		{value: "198.51.100.11:0", port: 10263, flag: "--readiness-bind-address"},
		{value: "fe80::1%eth0", port: 10263, flag: "--readiness-bind-address"},
	} {
		o := ourFlags{readinessFlag: tc.value, readinessPort: tc.port}
		err := o.validate()
		switch {
		case tc.flag != "" && (err == nil || !strings.Contains(err.Error(), tc.flag)):
			t.Errorf("--readiness-bind-address=%q --readiness-port=%d: validate() = %v, want an error naming %s", tc.value, tc.port, err, tc.flag)
		case tc.flag == "" && err != nil:
			t.Errorf("--readiness-bind-address=%q --readiness-port=%d: validate() = %v", tc.value, tc.port, err)
		case tc.flag == "" && tc.want == "" && o.readinessAddress.IsValid():
			t.Errorf("--readiness-bind-address=%q: /readyz on %s, want off", tc.value, o.readinessAddress)
		case tc.want != "" && o.readinessAddress.String() != tc.want:
			t.Errorf("--readiness-bind-address=%q --readiness-port=%d: /readyz on %s, want %s", tc.value, tc.port, o.readinessAddress, tc.want)
		}
	}
}
