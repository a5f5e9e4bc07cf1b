package fabric

import (
	"context"
	"net/netip"
)

// CreateVeth creates a veth pair, end a in na and end b in nb (nil: root),
// both up, for programs without a testing.TB (the labs); deleting either
// namespace deletes the pair.
func CreateVeth(ctx context.Context, a string, na *Namespace, b string, nb *Namespace) error {
	args := []string{"link", "add", a, "type", "veth", "peer", "name", b}
	if !nb.isRoot() {
		args = append(args, "netns", nb.Name)
	}
	if _, err := na.IP(ctx, args...); err != nil {
		return err
	}
	if _, err := na.IP(ctx, "link", "set", a, "up"); err != nil {
		return err
	}
	_, err := nb.IP(ctx, "link", "set", b, "up")
	return err
}

// AddAddress adds a/bits to dev in ns; IPv6 skips duplicate address
// detection so that the address is usable at once.
func AddAddress(ctx context.Context, ns *Namespace, dev string, a netip.Addr, bits int) error {
	args := []string{"addr", "add", netip.PrefixFrom(a, bits).String(), "dev", dev}
	if a.Is6() {
		args = append(args, "nodad")
	}
	_, err := ns.IP(ctx, args...)
	return err
}

// Sysctl sets key=value pairs inside ns (per-namespace keys only: never
// call it for the root namespace).
func Sysctl(ctx context.Context, ns *Namespace, kv ...string) error {
	_, err := ns.Exec(ctx, "sysctl", append([]string{"-qw"}, kv...)...)
	return err
}
