package bgp

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"
)

func parseYAML(t *testing.T, doc string) (Config, field.ErrorList) {
	t.Helper()
	var f ConfigFile
	if err := yaml.UnmarshalStrict([]byte(doc), &f); err != nil {
		t.Fatalf("yaml: %v", err)
	}
	return f.Parse(field.NewPath("bgp"))
}

func TestParseDefaults(t *testing.T) {
	cfg, errs := parseYAML(t, `
asn: 64512
peers:
- name: tor-a
  address: 198.51.100.1
  asn: 64513
`)
	if len(errs) > 0 {
		t.Fatalf("Parse() = %v", errs)
	}
	want := Config{
		ASN:               64512,
		HoldTime:          9 * time.Second,
		KeepaliveTime:     3 * time.Second,
		GracefulRestart:   GracefulRestart{Enabled: true, RestartTime: 120 * time.Second},
		MaxPathsPerPrefix: 16,
		Peers:             []Peer{{Name: "tor-a", Address: netip.MustParseAddr("198.51.100.1"), ASN: 64513, Port: 179}},
	}
	if diff := cmp.Diff(want, cfg, equateNetip); diff != "" {
		t.Errorf("Parse() (-want +got):\n%s", diff)
	}
}

func TestParseEverything(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "md5")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, errs := parseYAML(t, `
asn: 4200000001
routerID: 192.0.2.7
listenPort: 1790
holdTime: 30s
keepaliveTime: 10s
gracefulRestart: {enabled: false, restartTime: 60s}
maxPathsPerPrefix: 32
peers:
- name: tor-a
  address: 2001:db8::1
  asn: 4200000002
  port: 1179
  rack: rack-a
  passwordFile: `+secret+`
  ebgpMultihop: 2
  localAddress: 2001:db8::2
`)
	if len(errs) > 0 {
		t.Fatalf("Parse() = %v", errs)
	}
	want := Config{
		ASN:               4200000001,
		RouterID:          netip.MustParseAddr("192.0.2.7"),
		ListenPort:        1790,
		HoldTime:          30 * time.Second,
		KeepaliveTime:     10 * time.Second,
		GracefulRestart:   GracefulRestart{Enabled: false, RestartTime: 60 * time.Second},
		MaxPathsPerPrefix: 32,
		Peers: []Peer{{
			Name: "tor-a", Address: netip.MustParseAddr("2001:db8::1"), ASN: 4200000002, Port: 1179, Rack: "rack-a",
			PasswordFile: secret, EBGPMultihop: 2, LocalAddress: netip.MustParseAddr("2001:db8::2"),
		}},
	}
	if diff := cmp.Diff(want, cfg, equateNetip); diff != "" {
		t.Errorf("Parse() (-want +got):\n%s", diff)
	}
	if pw, err := readPassword(secret); err != nil || pw != "s3cret" {
		t.Errorf("readPassword() = %q, %v; want s3cret without the newline", pw, err)
	}
}

func TestParseHoldTimeOnly(t *testing.T) {
	cfg, errs := parseYAML(t, "holdTime: 90s\n")
	if len(errs) > 0 || cfg.KeepaliveTime != 30*time.Second {
		t.Errorf("Parse(holdTime: 90s) = keepalive %v, %v; want 30s", cfg.KeepaliveTime, errs)
	}
}

// TestParseErrors: every problem is reported, with its field path.
func TestParseErrors(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, errs := parseYAML(t, `
asn: 23456
routerID: 2001:db8::1
listenPort: 70000
holdTime: 2s
keepaliveTime: 1500ms
gracefulRestart: {restartTime: 5000s}
maxPathsPerPrefix: 0
peers:
- name: a
  address: 198.51.100.1
  asn: 64513
- name: a
  address: 198.51.100.1
  asn: 0
  port: 70000
  ebgpMultihop: 300
  localAddress: 2001:db8::2
- address: not-an-ip
  asn: 65535
  passwordFile: /nonexistent/secret
- name: c
  address: 224.0.0.1
  asn: 64513
  passwordFile: `+empty+`
`)
	want := []string{
		"bgp.asn", "bgp.routerID", "bgp.listenPort", "bgp.holdTime", "bgp.keepaliveTime",
		"bgp.gracefulRestart.restartTime", "bgp.maxPathsPerPrefix",
		"bgp.peers[1].name", "bgp.peers[1].address", "bgp.peers[1].asn", "bgp.peers[1].port",
		"bgp.peers[1].ebgpMultihop", "bgp.peers[1].localAddress",
		"bgp.peers[2].name", "bgp.peers[2].address", "bgp.peers[2].asn", "bgp.peers[2].passwordFile",
		"bgp.peers[3].address", "bgp.peers[3].passwordFile",
	}
	var got []string
	for _, e := range errs {
		got = append(got, e.Field)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Parse() error fields (-want +got):\n%s\nerrors:\n%v", diff, errs.ToAggregate())
	}
	for _, e := range errs {
		if e.Field == "bgp.peers[2].passwordFile" && !strings.Contains(e.Error(), "no such file") {
			t.Errorf("missing password file: %v, want the cause", e)
		}
	}
}

func TestParseNeedsASNWithPeers(t *testing.T) {
	_, errs := parseYAML(t, "peers: [{name: a, address: 198.51.100.1, asn: 64513}]\n")
	if len(errs) != 1 || errs[0].Field != "bgp.asn" || errs[0].Type != field.ErrorTypeRequired {
		t.Errorf("Parse() = %v, want bgp.asn required", errs)
	}
	if _, errs := parseYAML(t, "{}\n"); len(errs) != 0 {
		t.Errorf("Parse(empty section) = %v, want no error", errs)
	}
}

func TestStrictYAMLRejectsUnknownFields(t *testing.T) {
	var f ConfigFile
	if err := yaml.UnmarshalStrict([]byte("asn: 1\npeers: [{name: a, address: 198.51.100.1, asn: 2, pasword: x}]\n"), &f); err == nil {
		t.Error("UnmarshalStrict accepted an unknown field")
	}
}

func TestNewSpeakerValidates(t *testing.T) {
	checkNoLeaks(t)
	ctx := testContext(t)
	for name, cfg := range map[string]Config{
		"no router ID":    {ASN: speakerASN},
		"IPv6 router ID":  {ASN: speakerASN, RouterID: netip.MustParseAddr("2001:db8::1")},
		"no ASN":          {RouterID: netip.MustParseAddr("192.0.2.1")},
		"public API":      {ASN: speakerASN, RouterID: netip.MustParseAddr("192.0.2.1"), APIAddress: netip.MustParseAddrPort("192.0.2.1:50051")},
		"duplicate peers": {ASN: speakerASN, RouterID: netip.MustParseAddr("192.0.2.1"), Peers: []Peer{{Name: "a", Address: netip.MustParseAddr("198.51.100.1"), ASN: 1}, {Name: "a", Address: netip.MustParseAddr("198.51.100.2"), ASN: 1}}},
		"password file":   {ASN: speakerASN, RouterID: netip.MustParseAddr("192.0.2.1"), Peers: []Peer{{Name: "a", Address: netip.MustParseAddr("198.51.100.1"), ASN: 1, PasswordFile: "/nonexistent"}}},
	} {
		if s, err := NewSpeaker(ctx, cfg); err == nil {
			s.Stop()
			t.Errorf("%s: NewSpeaker() = nil error", name)
		}
	}
}
