package config

import (
	"errors"
	"strings"
	"testing"
)

// TestWeightedECMPConfig: bgp.weightedECMP is on by default, can be
// turned off, and anything but a boolean is a problem naming the field.
func TestWeightedECMPConfig(t *testing.T) {
	for _, tc := range []struct {
		name    string
		value   string // empty: not set
		want    bool
		problem string
	}{
		{"default", "", true, ""},
		{"on", "true", true, ""},
		{"off", "false", false, ""},
		{"not a boolean", "maybe", false, `bgp.weightedECMP: Invalid value: "maybe": must be true or false`},
		{"a number", "1", false, `bgp.weightedECMP: Invalid value: 1: must be true or false`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			yaml := "region: r\nbgp:\n  asn: 64512\n"
			if tc.value != "" {
				yaml += "  weightedECMP: " + tc.value + "\n"
			}
			cfg, err := Parse([]byte(yaml))
			if tc.problem != "" {
				var inv *InvalidError
				if !errors.As(err, &inv) || !strings.Contains(err.Error(), tc.problem) {
					t.Fatalf("Parse() error = %v, want a problem %q", err, tc.problem)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.BGP.WeightedECMP != tc.want {
				t.Errorf("BGP.WeightedECMP = %v, want %v", cfg.BGP.WeightedECMP, tc.want)
			}
		})
	}
}
