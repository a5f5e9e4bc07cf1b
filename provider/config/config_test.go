package config

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

const goodConfig = `
region: lab
racks:
- name: rack-a
  zone: zone-a
  subnets: [198.51.100.0/25, 2001:db8:1::/64]
- name: rack-b
  subnets: [198.51.100.128/25]
machines:
- name: node-a1
  rack: rack-a
  type: c3.small
  addresses: [198.51.100.11, 2001:db8:1::11]
- name: node-b1
  addresses: [198.51.100.140]
  state: shutdown
- name: node-x
`

func TestParseGood(t *testing.T) {
	cfg, err := Parse([]byte(goodConfig))
	if err != nil {
		t.Fatalf("Parse(good) = %v", err)
	}
	want := &Config{
		Region: "lab",
		Racks: []Rack{
			{Name: "rack-a", Zone: "zone-a", Subnets: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/25"), netip.MustParsePrefix("2001:db8:1::/64")}},
			{Name: "rack-b", Zone: "rack-b", Subnets: []netip.Prefix{netip.MustParsePrefix("198.51.100.128/25")}},
		},
		Machines: map[string]Machine{
			"node-a1": {Name: "node-a1", Rack: "rack-a", Type: "c3.small", State: StateRunning,
				Addresses: []netip.Addr{netip.MustParseAddr("198.51.100.11"), netip.MustParseAddr("2001:db8:1::11")}},
			"node-b1": {Name: "node-b1", Rack: "rack-b", Type: DefaultInstanceType, State: StateShutdown,
				Addresses: []netip.Addr{netip.MustParseAddr("198.51.100.140")}},
			"node-x": {Name: "node-x", Type: DefaultInstanceType, State: StateRunning},
		},
	}
	// The pools, bgp and healthCheck sections are their packages' to test.
	ignore := cmpopts.IgnoreFields(Config{}, "Pools", "BGP", "HealthCheck")
	if diff := cmp.Diff(want, cfg, ignore, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }), cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("Parse(good) mismatch (-want +got):\n%s", diff)
	}
	if !cfg.HasInventory() {
		t.Errorf("HasInventory() = false with three machines")
	}
}

func TestParseNoInventory(t *testing.T) {
	cfg, err := Parse([]byte("region: lab\n"))
	if err != nil {
		t.Fatalf("Parse = %v", err)
	}
	if cfg.HasInventory() {
		t.Errorf("HasInventory() = true without machines")
	}
	cfg, err = Parse([]byte("region: lab\nmachines: []\n"))
	if err != nil {
		t.Fatalf("Parse = %v", err)
	}
	if cfg.HasInventory() {
		t.Errorf("HasInventory() = true with an empty machines list")
	}
}

// TestParseBad checks that each bad file is refused with a message naming
// the field and the offending value.
func TestParseBad(t *testing.T) {
	for _, tc := range []struct {
		name string
		yaml string
		want []string // substrings of the error, all required
	}{
		{"empty file", "", []string{"empty", "region"}},
		{"empty region", "region: ''\n", []string{"region: Required value"}},
		{"region not a label value", "region: 'lab one'\n", []string{`region: Invalid value: "lab one"`}},
		{"unknown field", "region: lab\nzonee: a\n", []string{`unknown field "zonee"`}},
		{"unknown nested field", "region: lab\nracks:\n- name: a\n  subnet: [198.51.100.0/25]\n", []string{`unknown field "racks[0].subnet"`}},
		{"repeated field", "region: lab\nregion: lab2\n", []string{"region: Duplicate value", "line 1", "line 2"}},
		{"not yaml", "region: [lab\n", []string{"decoding YAML"}},
		{"bad CIDR", "region: lab\nracks:\n- name: rack-a\n  subnets: [198.51.100.0/33]\n",
			[]string{`racks[0].subnets[0]: Invalid value: "198.51.100.0/33"`, "must be a CIDR"}},
		{"host bits set", "region: lab\nracks:\n- name: rack-a\n  subnets: [198.51.100.1/25]\n",
			[]string{`racks[0].subnets[0]: Invalid value: "198.51.100.1/25"`, "198.51.100.0/25"}},
		{"overlapping rack subnets", "region: lab\nracks:\n- name: rack-a\n  subnets: [198.51.100.0/24]\n- name: rack-b\n  subnets: [198.51.100.128/25]\n",
			[]string{`racks[1].subnets[0]: Invalid value: "198.51.100.128/25"`, "overlaps 198.51.100.0/24 at racks[0].subnets[0]"}},
		{"rack name not a DNS label", "region: lab\nracks:\n- name: Rack_A\n", []string{`racks[0].name: Invalid value: "Rack_A"`, "DNS label"}},
		{"rack without name", "region: lab\nracks:\n- zone: z\n", []string{"racks[0].name: Required value"}},
		{"duplicate rack", "region: lab\nracks:\n- name: rack-a\n- name: rack-a\n", []string{`racks[1].name: Invalid value: "rack-a"`, "duplicate: racks[0]"}},
		{"machine in unknown rack", "region: lab\nracks:\n- name: rack-a\nmachines:\n- name: n1\n  rack: rack-z\n",
			[]string{`machines[0].rack: Invalid value: "rack-z"`, "known racks: rack-a"}},
		{"duplicate machine", "region: lab\nmachines:\n- name: n1\n- name: n1\n", []string{`machines[1].name: Invalid value: "n1"`, "duplicate: machines[0]"}},
		{"machine without name", "region: lab\nmachines:\n- type: x\n", []string{"machines[0].name: Required value"}},
		{"bad state", "region: lab\nmachines:\n- name: n1\n  state: halted\n",
			[]string{`machines[0].state: Unsupported value: "halted"`, `"running"`, `"shutdown"`}},
		{"bad address", "region: lab\nmachines:\n- name: n1\n  addresses: [198.51.100.300]\n", []string{`machines[0].addresses[0]: Invalid value: "198.51.100.300"`}},
		{"duplicate address", "region: lab\nmachines:\n- name: n1\n  addresses: [198.51.100.11]\n- name: n2\n  addresses: [198.51.100.11]\n",
			[]string{`machines[1].addresses[0]: Invalid value: "198.51.100.11"`, "machines[0].addresses[0]"}},
		{"address in another rack", "region: lab\nracks:\n- name: rack-a\n  subnets: [198.51.100.0/25]\n- name: rack-b\n  subnets: [198.51.100.128/25]\nmachines:\n- name: n1\n  rack: rack-a\n  addresses: [198.51.100.140]\n",
			[]string{`machines[0].addresses[0]: Invalid value: "198.51.100.140"`, `rack "rack-b"`}},
		{"bad instance type", "region: lab\nmachines:\n- name: n1\n  type: 'c3 small'\n", []string{`machines[0].type: Invalid value: "c3 small"`}},
		{"pools without bgp", "region: lab\npools:\n- name: p\n  addresses: [203.0.113.0/28]\n", []string{"bgp.asn: Required value"}},
		{"peer in unknown rack", "region: lab\nbgp:\n  asn: 64512\n  peers:\n  - name: tor\n    address: 198.51.100.1\n    asn: 64513\n    rack: nowhere\n",
			[]string{`bgp.peers[0].rack: Invalid value: "nowhere"`}},
		{"bad pool", "region: lab\npools:\n- name: p\n  addresses: [203.0.113.0/33]\nbgp:\n  asn: 64512\n", []string{"pools[0].addresses[0]"}},
		{"bad health check", "region: lab\nhealthCheck:\n  port: 0\n  timeout: 2s\n", []string{"healthCheck.timeout"}},
		{"every problem at once", "region: ''\nmachines:\n- name: n1\n  state: halted\n- name: n1\n",
			[]string{"region: Required value", "machines[0].state", "machines[1].name"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tc.yaml))
			if err == nil {
				t.Fatalf("Parse(%q) = %+v, want an error", tc.yaml, cfg)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Parse(%q) error = %q, want it to contain %q", tc.yaml, err, w)
				}
			}
		})
	}
}

// FuzzParse checks that no input makes the parser panic, and that a config
// it accepts is internally consistent.
func FuzzParse(f *testing.F) {
	f.Add([]byte(goodConfig))
	f.Add([]byte("region: lab\n"))
	f.Add([]byte("region: lab\nracks:\n- name: a\n  subnets: [2001:db8::/32, 198.51.100.0/24]\n"))
	f.Add([]byte("region: lab\nmachines:\n- name: n\n  addresses: ['::ffff:198.51.100.1']\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data)
		if err != nil {
			return
		}
		if cfg.Region == "" {
			t.Fatalf("accepted a config without region: %q", data)
		}
		for name, m := range cfg.Machines {
			if m.Name != name || m.Type == "" || (m.State != StateRunning && m.State != StateShutdown) {
				t.Fatalf("accepted an inconsistent machine %+v from %q", m, data)
			}
			if m.Rack != "" {
				if _, ok := cfg.Rack(m.Rack); !ok {
					t.Fatalf("machine %q in unknown rack %q from %q", name, m.Rack, data)
				}
			}
		}
	})
}
