package bgp

import (
	"slices"
	"testing"
)

func TestParseCommunity(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Community
	}{
		{"65000:100", 65000<<16 | 100},
		{"0:0", 0},
		{"65535:65535", 0xFFFFFFFF},
		{"no-export", CommunityNoExport},
		{"NO_EXPORT", CommunityNoExport},
		{"no-advertise", CommunityNoAdvertise},
		{"local-as", CommunityNoExportSubconfed},
		{"no-export-subconfed", CommunityNoExportSubconfed},
		{"blackhole", CommunityBlackhole},
		{"graceful-shutdown", CommunityGracefulShutdown},
		{" no-peer ", CommunityNoPeer},
	} {
		got, err := ParseCommunity(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseCommunity(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "65536:1", "1:65536", "-1:1", "1", "a:b", "1:2:3", "no-such-name"} {
		if got, err := ParseCommunity(bad); err == nil {
			t.Errorf("ParseCommunity(%q) = %v, want an error", bad, got)
		}
	}
	if s := Community(65000<<16 | 100).String(); s != "65000:100" {
		t.Errorf("String() = %q, want 65000:100", s)
	}
}

func TestParseLargeCommunity(t *testing.T) {
	got, err := ParseLargeCommunity("4200000000:1:4294967295")
	if want := (LargeCommunity{4200000000, 1, 4294967295}); err != nil || got != want {
		t.Errorf("ParseLargeCommunity() = %v, %v; want %v", got, err, want)
	}
	if got.String() != "4200000000:1:4294967295" {
		t.Errorf("String() = %q", got.String())
	}
	for _, bad := range []string{"", "1:2", "1:2:3:4", "1:2:4294967296", "a:b:c", "1:-2:3"} {
		if got, err := ParseLargeCommunity(bad); err == nil {
			t.Errorf("ParseLargeCommunity(%q) = %v, want an error", bad, got)
		}
	}
}

func TestParseLists(t *testing.T) {
	cs, err := ParseCommunities("65000:1, no-export 65000:2")
	if want := []Community{65000<<16 | 1, CommunityNoExport, 65000<<16 | 2}; err != nil || !slices.Equal(cs, want) {
		t.Errorf("ParseCommunities() = %v, %v; want %v", cs, err, want)
	}
	if _, err := ParseCommunities("65000:1,bad,1:70000"); err == nil {
		t.Error("ParseCommunities(with bad elements) = nil error")
	}
	ls, err := ParseLargeCommunities("1:2:3,4:5:6")
	if want := []LargeCommunity{{1, 2, 3}, {4, 5, 6}}; err != nil || !slices.Equal(ls, want) {
		t.Errorf("ParseLargeCommunities() = %v, %v; want %v", ls, err, want)
	}
	if cs, err := ParseCommunities(""); err != nil || cs != nil {
		t.Errorf("ParseCommunities(\"\") = %v, %v; want nothing", cs, err)
	}
}
