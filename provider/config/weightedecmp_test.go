package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/baremetal-ccm/baremetal-ccm/bgp"
)

// TestWeightedECMPConfig: bgp.weightedECMP is on and non-transitive by
// default, each can be changed, and a value of the wrong type is a
// problem naming the field.
func TestWeightedECMPConfig(t *testing.T) {
	for _, tc := range []struct {
		name    string
		value   string // bgp.weightedECMP's YAML; empty: not set
		want    bgp.WeightedECMP
		problem string
	}{
		{"default", "", bgp.WeightedECMP{Enabled: true}, ""},
		{"empty", "{}", bgp.WeightedECMP{Enabled: true}, ""},
		{"off", "{enabled: false}", bgp.WeightedECMP{}, ""},
		{"transitive", "{transitive: true}", bgp.WeightedECMP{Enabled: true, Transitive: true}, ""},
		{"not a boolean", "{enabled: maybe}", bgp.WeightedECMP{}, `bgp.weightedECMP.enabled: Invalid value: "maybe": must be true or false`},
		{"a bare boolean", "false", bgp.WeightedECMP{}, `bgp.weightedECMP: Invalid value: false: must be a mapping of the fields enabled, transitive`},
		{"an unknown field", "{weights: 3}", bgp.WeightedECMP{}, `unknown field "bgp.weightedECMP.weights"; bgp.weightedECMP takes enabled, transitive`},
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
				t.Errorf("BGP.WeightedECMP = %+v, want %+v", cfg.BGP.WeightedECMP, tc.want)
			}
		})
	}
}
