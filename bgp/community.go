package bgp

import (
	"fmt"
	"strconv"
	"strings"
)

// Community is a BGP community (RFC 1997): the high 16 bits are usually an
// ASN, the low 16 bits a value.
type Community uint32

// Well-known communities.
const (
	CommunityGracefulShutdown  Community = 0xFFFF0000 // RFC 8326
	CommunityAcceptOwn         Community = 0xFFFF0001 // RFC 7611
	CommunityBlackhole         Community = 0xFFFF029A // RFC 7999
	CommunityNoExport          Community = 0xFFFFFF01 // RFC 1997
	CommunityNoAdvertise       Community = 0xFFFFFF02 // RFC 1997
	CommunityNoExportSubconfed Community = 0xFFFFFF03 // RFC 1997, also known as local-as
	CommunityNoPeer            Community = 0xFFFFFF04 // RFC 3765
)

var wellKnownCommunities = map[string]Community{
	"graceful-shutdown":   CommunityGracefulShutdown,
	"accept-own":          CommunityAcceptOwn,
	"blackhole":           CommunityBlackhole,
	"no-export":           CommunityNoExport,
	"no-advertise":        CommunityNoAdvertise,
	"no-export-subconfed": CommunityNoExportSubconfed,
	"local-as":            CommunityNoExportSubconfed,
	"no-peer":             CommunityNoPeer,
}

// ParseCommunity parses "65000:100" (two decimal 16-bit halves) or a
// well-known name: no-export, no-advertise, no-export-subconfed (local-as),
// no-peer, blackhole, graceful-shutdown, accept-own. Names are case
// insensitive and may use '_' for '-'.
func ParseCommunity(s string) (Community, error) {
	name := strings.ReplaceAll(strings.ToLower(strings.TrimSpace(s)), "_", "-")
	if c, ok := wellKnownCommunities[name]; ok {
		return c, nil
	}
	hi, lo, ok := strings.Cut(name, ":")
	if !ok {
		return 0, fmt.Errorf("community %q: want ASN:VALUE with two numbers 0-65535, or a well-known name such as no-export", s)
	}
	h, err1 := strconv.ParseUint(hi, 10, 16)
	l, err2 := strconv.ParseUint(lo, 10, 16)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("community %q: both halves must be decimal numbers 0-65535", s)
	}
	return Community(h<<16 | l), nil
}

// String returns the ASN:VALUE form.
func (c Community) String() string {
	return fmt.Sprintf("%d:%d", uint32(c)>>16, uint32(c)&0xFFFF)
}

// LargeCommunity is a BGP large community (RFC 8092).
type LargeCommunity struct {
	Global, Local1, Local2 uint32
}

// ParseLargeCommunity parses "GLOBAL:LOCAL1:LOCAL2", three decimal 32-bit
// numbers.
func ParseLargeCommunity(s string) (LargeCommunity, error) {
	parts := strings.Split(strings.TrimSpace(s), ":")
	if len(parts) != 3 {
		return LargeCommunity{}, fmt.Errorf("large community %q: want GLOBAL:LOCAL1:LOCAL2, three numbers 0-4294967295", s)
	}
	var v [3]uint32
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 32)
		if err != nil {
			return LargeCommunity{}, fmt.Errorf("large community %q: %q is not a decimal number 0-4294967295", s, p)
		}
		v[i] = uint32(n)
	}
	return LargeCommunity{Global: v[0], Local1: v[1], Local2: v[2]}, nil
}

// String returns the GLOBAL:LOCAL1:LOCAL2 form.
func (c LargeCommunity) String() string {
	return fmt.Sprintf("%d:%d:%d", c.Global, c.Local1, c.Local2)
}

// ParseCommunities parses a list separated by commas and/or spaces, as an
// annotation value would hold it ("65000:100, no-export"). It reports
// every bad element.
func ParseCommunities(s string) ([]Community, error) { return parseList(s, ParseCommunity) }

// ParseLargeCommunities is ParseCommunities for large communities.
func ParseLargeCommunities(s string) ([]LargeCommunity, error) {
	return parseList(s, ParseLargeCommunity)
}

// parseList parses every element of a list with parse, reporting every bad
// one.
func parseList[T any](s string, parse func(string) (T, error)) ([]T, error) {
	var out []T
	var errs []string
	for _, f := range splitList(s) {
		c, err := parse(f)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		out = append(out, c)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return out, nil
}

func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' })
}
