package ipam

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go4.org/netipx"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"
)

func TestParsePoolsValid(t *testing.T) {
	const config = `
- name: public
  addresses: [203.0.113.0/26, " 203.0.113.100 - 203.0.113.120 ", 2001:db8:100::/64]
- name: internal
  addresses: [198.51.100.0/24]
  autoAssign: false
  avoidBuggyIPs: true
  namespaces: [team-a, team-b]
  serviceSelector:
    matchLabels: {tier: internal}
- name: empty-selector
  addresses: [192.0.2.7-192.0.2.7]
  serviceSelector: {}
`
	var cfgs []PoolConfig
	if err := yaml.UnmarshalStrict([]byte(config), &cfgs); err != nil {
		t.Fatalf("yaml.UnmarshalStrict() = %v", err)
	}
	got, errs := ParsePools(cfgs, field.NewPath("pools"))
	if len(errs) > 0 {
		t.Fatalf("ParsePools() = %v, want no errors", errs)
	}
	want := []Pool{{
		Name: "public",
		Ranges: []netipx.IPRange{
			netipx.MustParseIPRange("203.0.113.0-203.0.113.63"),
			netipx.MustParseIPRange("203.0.113.100-203.0.113.120"),
			netipx.MustParseIPRange("2001:db8:100::-2001:db8:100::ffff:ffff:ffff:ffff"),
		},
		AutoAssign: true,
	}, {
		Name:          "internal",
		Ranges:        []netipx.IPRange{netipx.MustParseIPRange("198.51.100.0-198.51.100.255")},
		AvoidBuggyIPs: true,
		Namespaces:    []string{"team-a", "team-b"},
		Selector:      labels.SelectorFromSet(labels.Set{"tier": "internal"}),
	}, {
		Name:       "empty-selector",
		Ranges:     []netipx.IPRange{netipx.MustParseIPRange("192.0.2.7-192.0.2.7")},
		AutoAssign: true,
	}}
	compareSelectors := cmp.Comparer(func(x, y labels.Selector) bool {
		if x == nil || y == nil {
			return x == nil && y == nil
		}
		return x.String() == y.String()
	})
	if diff := cmp.Diff(want, got, cmp.Comparer(func(x, y netipx.IPRange) bool { return x == y }), compareSelectors); diff != "" {
		t.Errorf("ParsePools() differs (-want +got):\n%s", diff)
	}
}

func TestParsePoolsErrors(t *testing.T) {
	valid := func(name string, addrs ...string) PoolConfig { return PoolConfig{Name: name, Addresses: addrs} }
	tests := []struct {
		name string
		cfgs []PoolConfig
		// want lists, per expected error, its field path and substrings
		// of its message.
		want [][]string
	}{{
		name: "name missing",
		cfgs: []PoolConfig{valid("", "192.0.2.0/28")},
		want: [][]string{{"pools[0].name", "Required"}},
	}, {
		name: "name not a DNS label",
		cfgs: []PoolConfig{valid("Public_1", "192.0.2.0/28")},
		want: [][]string{{"pools[0].name", `"Public_1"`, "RFC 1123"}},
	}, {
		name: "duplicate name",
		cfgs: []PoolConfig{valid("a", "192.0.2.0/28"), valid("a", "198.51.100.0/28")},
		want: [][]string{{"pools[1].name", "Duplicate", `"a"`}},
	}, {
		name: "no addresses",
		cfgs: []PoolConfig{valid("a")},
		want: [][]string{{"pools[0].addresses", "Required"}},
	}, {
		name: "not a CIDR",
		cfgs: []PoolConfig{valid("a", "192.0.2.0/33", "public")},
		want: [][]string{
			{"pools[0].addresses[0]", `"192.0.2.0/33"`, "not a CIDR"},
			{"pools[0].addresses[1]", `"public"`, "not a CIDR"},
		},
	}, {
		name: "host bits set",
		cfgs: []PoolConfig{valid("a", "192.0.2.5/24")},
		want: [][]string{{"pools[0].addresses[0]", "did you mean 192.0.2.0/24?"}},
	}, {
		name: "single address",
		cfgs: []PoolConfig{valid("a", "192.0.2.5", "2001:db8::5")},
		want: [][]string{
			{"pools[0].addresses[0]", "192.0.2.5/32"},
			{"pools[0].addresses[1]", "2001:db8::5/128"},
		},
	}, {
		name: "bad range ends",
		cfgs: []PoolConfig{valid("a", "192.0.2.1-x", "y-192.0.2.1")},
		want: [][]string{
			{"pools[0].addresses[0]", "range end is not an IP address"},
			{"pools[0].addresses[1]", "range start is not an IP address"},
		},
	}, {
		name: "start after end",
		cfgs: []PoolConfig{valid("a", "192.0.2.20-192.0.2.10")},
		want: [][]string{{"pools[0].addresses[0]", "starts after it ends", "192.0.2.10-192.0.2.20"}},
	}, {
		name: "mixed families",
		cfgs: []PoolConfig{valid("a", "192.0.2.1-2001:db8::1")},
		want: [][]string{{"pools[0].addresses[0]", "mixes IPv4 and IPv6"}},
	}, {
		name: "zone and mapped addresses",
		cfgs: []PoolConfig{valid("a", "fe80::1%eth0-fe80::2%eth0", "::ffff:192.0.2.0/120")},
		want: [][]string{
			{"pools[0].addresses[0]", "zone"},
			{"pools[0].addresses[1]", "IPv4-mapped"},
		},
	}, {
		name: "whole address families",
		cfgs: []PoolConfig{valid("a", "0.0.0.0/0", "::/0", "0.0.0.0-255.255.255.255")},
		want: [][]string{
			{"pools[0].addresses[0]", `"0.0.0.0/0"`, "is every IPv4 address", "global unicast"},
			{"pools[0].addresses[1]", `"::/0"`, "is every IPv6 address", "global unicast"},
			{"pools[0].addresses[2]", `"0.0.0.0-255.255.255.255"`, "is every IPv4 address"},
		},
	}, {
		name: "unusable blocks",
		cfgs: []PoolConfig{valid("a",
			"0.0.0.0/32", "127.0.0.0/24", "169.254.1.0/24", "224.0.0.0/24", "239.255.255.0-239.255.255.255",
			"255.255.255.255/32", "::/128", "::1/128", "fe80::/64", "ff02::/16", "::fffe:ffff:ffff-::1:0:0:0",
			"126.255.255.250-127.0.0.1", "0.0.0.0/1")},
		want: [][]string{
			{"pools[0].addresses[0]", `"0.0.0.0/32"`, "includes 0.0.0.0/8", "this network"},
			{"pools[0].addresses[1]", `"127.0.0.0/24"`, "includes 127.0.0.0/8 (loopback)"},
			{"pools[0].addresses[2]", `"169.254.1.0/24"`, "includes 169.254.0.0/16 (link-local)"},
			{"pools[0].addresses[3]", `"224.0.0.0/24"`, "includes 224.0.0.0/4 (multicast)"},
			{"pools[0].addresses[4]", "multicast"},
			{"pools[0].addresses[5]", "limited broadcast"},
			{"pools[0].addresses[6]", `"::/128"`, "unspecified"},
			{"pools[0].addresses[7]", `"::1/128"`, "includes ::1/128 (loopback)"},
			{"pools[0].addresses[8]", `"fe80::/64"`, "includes fe80::/10 (link-local)"},
			{"pools[0].addresses[9]", `"ff02::/16"`, "includes ff00::/8 (multicast)"},
			{"pools[0].addresses[10]", "includes ::ffff:0.0.0.0/96 (IPv4-mapped)"},
			{"pools[0].addresses[11]", "126.255.255.250-127.0.0.1", "loopback"},
			{"pools[0].addresses[12]", `"0.0.0.0/1"`, "includes 0.0.0.0/8"},
		},
	}, {
		name: "global unicast next to unusable blocks is fine",
		cfgs: []PoolConfig{valid("a", "1.0.0.0/24", "126.255.255.0/24", "128.0.0.0/24", "169.253.255.0/24", "223.255.255.0/24", "240.0.0.0/12", "255.255.255.254/32", "2001:db8::/32", "fe7f::/16")},
	}, {
		name: "overlap within a pool",
		cfgs: []PoolConfig{valid("a", "192.0.2.0/25", "192.0.2.100-192.0.2.200")},
		want: [][]string{{"pools[0].addresses[1]", "192.0.2.100-192.0.2.200", "overlaps 192.0.2.0/25 (192.0.2.0-192.0.2.127)", `pool "a"`, "pools[0].addresses[0]"}},
	}, {
		name: "overlap across pools",
		cfgs: []PoolConfig{valid("public", "2001:db8::/64"), valid("private", "2001:db8::8000:0:0:0/65")},
		want: [][]string{{"pools[1].addresses[0]", `"2001:db8::8000:0:0:0/65"`, "overlaps 2001:db8::/64", `pool "public"`, "pools[0].addresses[0]"}},
	}, {
		name: "one range overlapping two",
		cfgs: []PoolConfig{valid("a", "192.0.2.0/28", "192.0.2.16/28"), valid("b", "192.0.2.8-192.0.2.20")},
		want: [][]string{
			{"pools[1].addresses[0]", "overlaps 192.0.2.0/28", `pool "a"`},
			{"pools[1].addresses[0]", "overlaps 192.0.2.16/28", `pool "a"`},
		},
	}, {
		name: "adjacent ranges are fine, families do not overlap",
		cfgs: []PoolConfig{valid("a", "192.0.2.0/25", "192.0.2.128/25"), valid("b", "2001:db8::/128")},
	}, {
		name: "bad namespaces",
		cfgs: []PoolConfig{{Name: "a", Addresses: []string{"192.0.2.0/28"}, Namespaces: []string{"ok", "Not_OK", "ok"}}},
		want: [][]string{
			{"pools[0].namespaces[1]", "not a namespace name"},
			{"pools[0].namespaces[2]", "Duplicate"},
		},
	}, {
		name: "bad selector",
		cfgs: []PoolConfig{{Name: "a", Addresses: []string{"192.0.2.0/28"}, ServiceSelector: &metav1.LabelSelector{
			MatchLabels:      map[string]string{"bad key!": "x"},
			MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: "Near"}},
		}}},
		want: [][]string{
			{"pools[0].serviceSelector.matchLabels", "bad key!"},
			{"pools[0].serviceSelector.matchExpressions[0].operator", "Near"},
		},
	}, {
		name: "every problem reported",
		cfgs: []PoolConfig{valid("a", "192.0.2.0/24"), valid("a", "192.0.2.0/25", "nonsense")},
		want: [][]string{
			{"pools[1].name", "Duplicate"},
			{"pools[1].addresses[1]", "nonsense"},
			{"pools[1].addresses[0]", `overlaps 192.0.2.0/24 (192.0.2.0-192.0.2.255) of pool "a" (pools[0].addresses[0])`},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pools, errs := ParsePools(tt.cfgs, field.NewPath("pools"))
			if len(errs) > 0 && pools != nil {
				t.Errorf("ParsePools() = %v with errors, want no pools", pools)
			}
			if len(errs) != len(tt.want) {
				t.Fatalf("ParsePools() = %d errors, want %d:\n%s", len(errs), len(tt.want), errs.ToAggregate())
			}
			for _, want := range tt.want {
				found := false
				for _, e := range errs {
					if e.Field == want[0] && containsAll(e.Error(), want[1:]) {
						found = true
					}
				}
				if !found {
					t.Errorf("ParsePools() = %s\nwant an error at %s saying %q", errs.ToAggregate(), want[0], want[1:])
				}
			}
		})
	}
}

func TestParseRange(t *testing.T) {
	for _, tc := range []struct {
		in, want, problem string
	}{
		{"203.0.113.0/30", "203.0.113.0-203.0.113.3", ""},
		{"203.0.113.9-203.0.113.10", "203.0.113.9-203.0.113.10", ""},
		{"203.0.113.0/33", "", "not a CIDR"},
		{"fe80::/64", "", "link-local"},
	} {
		got, err := ParseRange(tc.in)
		switch {
		case tc.problem == "" && (err != nil || got.String() != tc.want):
			t.Errorf("ParseRange(%q) = %v, %v, want %s", tc.in, got, err, tc.want)
		case tc.problem != "" && (err == nil || !strings.Contains(err.Error(), tc.problem)):
			t.Errorf("ParseRange(%q) = %v, %v, want an error saying %q", tc.in, got, err, tc.problem)
		}
	}
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

func TestNewRejectsInvalidPools(t *testing.T) {
	r := netipx.MustParseIPRange
	tests := []struct {
		name  string
		pools []Pool
	}{
		{"no name", []Pool{{Ranges: []netipx.IPRange{r("192.0.2.0-192.0.2.3")}}}},
		{"bad name", []Pool{{Name: "a\x00b", Ranges: []netipx.IPRange{r("192.0.2.0-192.0.2.3")}}}},
		{"duplicate", []Pool{{Name: "a", Ranges: []netipx.IPRange{r("192.0.2.0-192.0.2.3")}}, {Name: "a", Ranges: []netipx.IPRange{r("192.0.2.8-192.0.2.9")}}}},
		{"no ranges", []Pool{{Name: "a"}}},
		{"invalid range", []Pool{{Name: "a", Ranges: []netipx.IPRange{{}}}}},
		{"overlap", []Pool{{Name: "a", Ranges: []netipx.IPRange{r("192.0.2.0-192.0.2.3")}}, {Name: "b", Ranges: []netipx.IPRange{r("192.0.2.3-192.0.2.9")}}}},
		{"loopback", []Pool{{Name: "a", Ranges: []netipx.IPRange{r("127.0.0.1-127.0.0.9")}}}},
		{"every IPv6 address", []Pool{{Name: "a", Ranges: []netipx.IPRange{r("::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.pools); !errors.Is(err, ErrInvalidPool) {
				t.Errorf("New(%v) = %v, want %v", tt.pools, err, ErrInvalidPool)
			}
		})
	}
}
