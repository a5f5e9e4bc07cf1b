package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/baremetal-ccm/baremetal-ccm/test/ccm"
)

func TestHelpListsStandardFlags(t *testing.T) {
	code, out, err := ccm.Run(context.Background(), "--help")
	if err != nil || code != 0 {
		t.Fatalf("--help: exit %d, %v\n%s", code, err, out)
	}
	for _, flag := range []string{"--cloud-provider", "--cloud-config", "--kubeconfig", "--leader-elect", "--concurrent-service-syncs int32", "(default 10)",
		"--kube-api-qps float32", "(default 300)", "--logging-format", "--controllers", "--cloud-config-reload-interval"} {
		if !strings.Contains(out, flag) {
			t.Errorf("--help does not mention %q", flag)
		}
	}
}

// TestJSONLogging checks that --logging-format=json is available: the
// process's log lines are JSON objects.
func TestJSONLogging(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cloud.yaml")
	if err := os.WriteFile(path, []byte("region: lab\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, err := ccm.Run(context.Background(), "--logging-format=json", "--cloud-config="+path, "--kubeconfig=/nonexistent", "--secure-port=0")
	if err != nil {
		t.Fatalf("running the binary: %v", err)
	}
	if code == 0 {
		t.Fatalf("exit code 0 without a kubeconfig; output:\n%s", out)
	}
	var sawJSON bool
	for _, line := range strings.Split(out, "\n") {
		var entry map[string]any
		if json.Unmarshal([]byte(line), &entry) == nil && entry["msg"] != nil {
			sawJSON = true
		}
	}
	if !sawJSON {
		t.Errorf("--logging-format=json printed no JSON log line:\n%s", out)
	}
}

// TestBadConfigExits runs the real binary on bad config files: each must exit
// non-zero before any controller starts (there is no apiserver here at all),
// naming the field and the value, without a panic.
func TestBadConfigExits(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"unknown field", "region: lab\nrackz: []\n", []string{`unknown field "rackz"`, "nothing was started"}},
		{"bad CIDR", "region: lab\nracks:\n- name: rack-a\n  subnets: [198.51.100.0/33]\n", []string{"racks[0].subnets[0]", "198.51.100.0/33"}},
		{"overlapping subnets", "region: lab\nracks:\n- name: a\n  subnets: [198.51.100.0/24]\n- name: b\n  subnets: [198.51.100.0/25]\n", []string{"racks[1].subnets[0]", "overlaps"}},
		{"unknown rack", "region: lab\nmachines:\n- name: n1\n  rack: nowhere\n", []string{"machines[0].rack", "nowhere"}},
		{"duplicate names", "region: lab\nmachines:\n- name: n1\n- name: n1\n", []string{"machines[1].name", "n1"}},
		{"bad state", "region: lab\nmachines:\n- name: n1\n  state: asleep\n", []string{"machines[0].state", "asleep"}},
		{"empty region", "racks: []\n", []string{"region: Required value"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "cloud.yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			code, out, err := ccm.Run(context.Background(), "--cloud-config="+path, "--kubeconfig=/nonexistent", "--secure-port=0")
			if err != nil {
				t.Fatalf("running the binary: %v", err)
			}
			if code == 0 {
				t.Fatalf("exit code 0 for a bad config; output:\n%s", out)
			}
			if strings.Contains(out, "panic") || strings.Contains(out, "goroutine ") {
				t.Errorf("the binary panicked:\n%s", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output does not name %q:\n%s", w, out)
				}
			}
			if strings.Contains(out, "nonexistent") {
				t.Errorf("the binary got to the kubeconfig before refusing the cloud config:\n%s", out)
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		code, out, _ := ccm.Run(context.Background(), "--cloud-config=/nonexistent/cloud.yaml", "--secure-port=0")
		if code == 0 || !strings.Contains(out, "/nonexistent/cloud.yaml") {
			t.Errorf("missing file: exit %d, output:\n%s", code, out)
		}
	})
}
