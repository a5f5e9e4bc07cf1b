package bgp

import (
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
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
		Peers:             []Peer{{Name: "tor-a", Address: netip.MustParseAddr("198.51.100.1"), ASN: 64513, Port: 179, MaxPrefixes: 1000}},
		WeightedECMP:      WeightedECMP{Enabled: true},
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
listenAddresses: [192.0.2.7, "::"]
holdTime: 30s
keepaliveTime: 10s
gracefulRestart: {enabled: false, restartTime: 60s}
maxPathsPerPrefix: 32
weightedECMP: {enabled: false, transitive: true}
peers:
- name: tor-a
  address: 2001:db8::1
  asn: 4200000002
  port: 1179
  rack: rack-a
  passwordFile: `+secret+`
  ebgpMultihop: 2
  localAddress: 2001:db8::2
  maxPrefixes: 5000
- name: tor-b
  address: fe80::1%eth0
  asn: 4200000001
  ttlSecurity: 1
`)
	if len(errs) > 0 {
		t.Fatalf("Parse() = %v", errs)
	}
	want := Config{
		ASN:               4200000001,
		RouterID:          netip.MustParseAddr("192.0.2.7"),
		ListenPort:        1790,
		ListenAddresses:   []netip.Addr{netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("::")},
		HoldTime:          30 * time.Second,
		KeepaliveTime:     10 * time.Second,
		GracefulRestart:   GracefulRestart{Enabled: false, RestartTime: 60 * time.Second},
		MaxPathsPerPrefix: 32,
		WeightedECMP:      WeightedECMP{Enabled: false, Transitive: true},
		Peers: []Peer{{
			Name: "tor-a", Address: netip.MustParseAddr("2001:db8::1"), ASN: 4200000002, Port: 1179, Rack: "rack-a",
			PasswordFile: secret, EBGPMultihop: 2, LocalAddress: netip.MustParseAddr("2001:db8::2"), MaxPrefixes: 5000,
		}, {
			Name: "tor-b", Address: netip.MustParseAddr("fe80::1%eth0"), ASN: 4200000001, Port: 179, MaxPrefixes: 1000, TTLSecurity: 1,
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
- name: d
  address: fe80::1
  asn: 64513
  maxPrefixes: 0
  ttlSecurity: 255
- name: e
  address: 198.51.100.5%eth0
  asn: 64513
  maxPrefixes: 2000000
- name: f
  address: 2001:db8::5%eth0
  asn: 64513
  ebgpMultihop: 2
  ttlSecurity: 1
listenAddresses: [224.0.0.1, nonsense]
`)
	want := []string{
		"bgp.asn", "bgp.routerID", "bgp.listenPort", "bgp.listenAddresses[0]", "bgp.listenAddresses[1]", "bgp.holdTime", "bgp.keepaliveTime",
		"bgp.gracefulRestart.restartTime", "bgp.maxPathsPerPrefix",
		"bgp.peers[1].name", "bgp.peers[1].address", "bgp.peers[1].asn", "bgp.peers[1].port",
		"bgp.peers[1].ebgpMultihop", "bgp.peers[1].localAddress",
		"bgp.peers[2].name", "bgp.peers[2].address", "bgp.peers[2].asn", "bgp.peers[2].passwordFile",
		"bgp.peers[3].address", "bgp.peers[3].passwordFile",
		"bgp.peers[4].address", "bgp.peers[4].ttlSecurity", "bgp.peers[4].maxPrefixes",
		"bgp.peers[5].address", "bgp.peers[5].maxPrefixes",
		"bgp.peers[6].address", "bgp.peers[6].ttlSecurity",
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

// TestParseIBGPMultihop: ebgpMultihop is refused on an iBGP peer, and
// only there.
func TestParseIBGPMultihop(t *testing.T) {
	_, errs := parseYAML(t, `
asn: 64512
peers:
- {name: ibgp, address: 198.51.100.1, asn: 64512, ebgpMultihop: 2}
- {name: ebgp, address: 198.51.100.2, asn: 64513, ebgpMultihop: 2}
`)
	if len(errs) != 1 || errs[0].Field != "bgp.peers[0].ebgpMultihop" || !strings.Contains(errs[0].Error(), "iBGP") {
		t.Errorf("Parse() = %v, want only bgp.peers[0].ebgpMultihop refused as iBGP", errs)
	}
}

// TestPasswordFiles: only a regular file is read, never more than a
// password can be, and a FIFO does not block.
func TestPasswordFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	huge := filepath.Join(dir, "huge")
	f, err := os.Create(huge)
	if err != nil {
		t.Fatal(err)
	}
	// 400 MiB, sparse: reading it whole would show in the heap.
	if err := f.Truncate(400 << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	for name, tc := range map[string]struct {
		file, want string
	}{
		"directory": {dir, "directory, want a regular file"},
		"FIFO":      {fifo, "named pipe (FIFO), want a regular file"},
		"device":    {"/dev/zero", "device, want a regular file"},
		"huge":      {huge, "longer than 80 bytes"},
		"missing":   {filepath.Join(dir, "missing"), "no such file"},
	} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := readPassword(tc.file)
		runtime.ReadMemStats(&after)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: readPassword() = %v, want an error saying %q", name, err, tc.want)
		}
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
			t.Errorf("%s: readPassword() allocated %d bytes", name, grew)
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
