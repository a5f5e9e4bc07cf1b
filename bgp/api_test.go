package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	api "github.com/osrg/gobgp/v3/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// TestAPIAddress: the optional GoBGP gRPC API answers the gobgp CLI's
// requests on a loopback address, and a busy address is a clear error.
func TestAPIAddress(t *testing.T) {
	checkNoLeaks(t)
	ctx := testContext(t)
	addr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(freePort(t, "127.0.0.1")))
	s := startSpeaker(t, Config{APIAddress: addr})
	if err := s.Announce(ctx, Advertisement{Prefix: vip4, NextHops: hops("198.51.100.10", "", 1, 2)}); err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := api.NewGobgpApiClient(conn)
	eventually(t, "the API answers", func() error {
		rsp, err := client.GetBgp(context.Background(), &api.GetBgpRequest{})
		if err != nil {
			return err
		}
		if rsp.Global.Asn != speakerASN {
			return fmt.Errorf("ASN %d", rsp.Global.Asn)
		}
		return nil
	})
	if _, err := NewSpeaker(ctx, Config{ASN: speakerASN, RouterID: netip.MustParseAddr("192.0.2.2"), APIAddress: addr}); err == nil {
		t.Error("NewSpeaker() with a busy API address = nil error")
	}
}
