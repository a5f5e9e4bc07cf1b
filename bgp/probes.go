package bgp

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/go-logr/logr"
	"golang.org/x/sys/unix"
)

// checkAPIAddress makes sure that the gRPC API can listen on a: GoBGP
// listens asynchronously and would only log the failure.
func checkAPIAddress(a netip.AddrPort) error {
	if !a.IsValid() {
		return nil
	}
	l, err := net.Listen("tcp", a.String())
	if err != nil {
		return fmt.Errorf("GoBGP API address: %w", err)
	}
	return l.Close()
}

// warnMD5Listener warns when the speaker listens and some peer has a
// password, but TCP MD5 cannot protect the listening socket: Go 1.24+
// listeners use MPTCP, on which Linux refuses TCP_MD5SIG, unless the
// binary is built with //go:debug multipathtcp=0. Sessions then come up
// only from our side, as if the speaker did not listen.
func warnMD5Listener(log logr.Logger, cfg *Config, passwords map[string]string) {
	if cfg.ListenPort <= 0 || len(passwords) == 0 {
		return
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return
	}
	defer l.Close()
	sc, err := l.(*net.TCPListener).SyscallConn()
	if err != nil {
		return
	}
	var serr error
	_ = sc.Control(func(fd uintptr) {
		sig := unix.TCPMD5Sig{Keylen: 1}
		sig.Addr.Family = unix.AF_INET
		sig.Key[0] = 'x'
		serr = unix.SetsockoptTCPMD5Sig(int(fd), unix.IPPROTO_TCP, unix.TCP_MD5SIG, &sig)
	})
	if serr != nil {
		log.Error(serr, "TCP MD5 cannot protect the listening socket: routers with a password cannot connect to the speaker, only the speaker to them; build the binary with //go:debug multipathtcp=0 (Go 1.24+ listeners use MPTCP)",
			"listenPort", cfg.ListenPort)
	}
}
