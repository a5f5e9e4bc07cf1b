package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/baremetal-ccm/baremetal-ccm/test/ccm"
)

// TestValidate runs `validate` on files: a valid file exits 0 saying so
// (with its warnings), an invalid one exits 1 printing every problem with
// its field path, and neither needs a kubeconfig or a network.
func TestValidate(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", "region: lab\nracks:\n- name: rack-a\n  subnets: [198.51.100.0/25]\npools:\n- name: public\n  addresses: [203.0.113.0/28]\nbgp:\n  asn: 64512\n  peers:\n  - name: tor-a\n    address: 198.51.100.1\n    asn: 64513\n")
	routerID := write("router-id.yaml", "region: lab\nbgp:\n  asn: 64512\n  routerID: 192.0.2.1\n")
	bad := write("bad.yaml", "region: lab\nregion: lab\nzonee: a\nracks:\n- name: Rack_A\n  subnets: [198.51.100.0/25]\n  zone: 5\npools:\n- name: public\n  addresses: [198.51.100.0/28, 127.0.0.0/8]\nbgp:\n  asn: 64512\n  holdTime: forever\n")
	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string // substrings of the output, in this order
		not  []string
	}{
		{"valid file", []string{"validate", "--cloud-config=" + good}, 0,
			[]string{good + ": valid\n"}, []string{"warning"}},
		{"valid with a warning", []string{"validate", "--cloud-config", routerID}, 0,
			[]string{routerID + ": valid\n", "warning: bgp.routerID: 192.0.2.1", "--bgp-router-id"}, nil},
		{"every problem", []string{"validate", "--cloud-config=" + bad}, 1,
			[]string{"7 problem(s):",
				"\nregion: Duplicate value",
				"\nbgp.holdTime: Invalid value: \"forever\"",
				"\nracks[0].zone: Invalid value: 5",
				"\nzonee: Forbidden: unknown field",
				"\nracks[0].name: Invalid value: \"Rack_A\"",
				"\npools[0].addresses[1]: Invalid value: \"127.0.0.0/8\"",
				"\npools[0].addresses[0]: Invalid value: \"198.51.100.0/28\": overlaps subnet 198.51.100.0/25 of rack \"Rack_A\""},
			[]string{"valid\n", "panic"}},
		{"missing file", []string{"validate", "--cloud-config=" + filepath.Join(dir, "none.yaml")}, 1,
			[]string{filepath.Join(dir, "none.yaml"), "no such file"}, []string{"valid\n"}},
		{"no file named", []string{"validate"}, 1, []string{"--cloud-config is required"}, nil},
		{"a directory", []string{"validate", "--cloud-config=" + dir}, 1, []string{"not a regular file"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, err := ccm.Run(context.Background(), tc.args...)
			if err != nil {
				t.Fatalf("running the binary: %v", err)
			}
			if code != tc.code {
				t.Errorf("%s: exit %d, want %d\n%s", tc.args, code, tc.code, out)
			}
			rest := out
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Errorf("%s: output lacks %q (in this order):\n%s", tc.args, w, out)
					break
				}
				rest = rest[i+len(w):]
			}
			for _, n := range tc.not {
				if strings.Contains(out, n) {
					t.Errorf("%s: output has %q:\n%s", tc.args, n, out)
				}
			}
		})
	}
}
