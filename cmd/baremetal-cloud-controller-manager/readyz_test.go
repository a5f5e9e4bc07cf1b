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
		ok    bool
	}{
		{"", true},
		{"198.51.100.11:10263", true},
		{"[2001:db8::1]:10263", true},
		{"198.51.100.11", false},
		{"localhost:10263", false},
		{"198.51.100.11:0", false},
	} {
		o := ourFlags{readinessFlag: tc.value}
		err := o.validate()
		if (err == nil) != tc.ok {
			t.Errorf("--readiness-bind-address=%q: validate() = %v, want ok=%v", tc.value, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "--readiness-bind-address") {
			t.Errorf("the error %q does not name the flag", err)
		}
	}
}
