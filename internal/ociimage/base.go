package ociimage

import (
	"fmt"
	"os"
)

// NonrootUID is the user and group a static image runs as: "nonroot" of
// the distroless images, 65532.
const NonrootUID = 65532

// CACertificates is where the host's CA bundle is (Debian's
// ca-certificates) and where the image gets it: Go's crypto/x509 reads
// it there.
const CACertificates = "/etc/ssl/certs/ca-certificates.crt"

// StaticPath is the PATH of an image made here.
const StaticPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

const passwd = `root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
`

const group = `root:x:0:
nobody:x:65534:
nonroot:x:65532:
`

// AddStaticBase adds the smallest base a static Go program needs, what a
// distroless static image has for it: /etc/passwd and /etc/group with
// root, nobody and nonroot (65532), their home directories, /tmp (1777),
// /etc/nsswitch.conf (hosts from files, then DNS) and the host's CA
// certificates.
func (s *Spec) AddStaticBase() error {
	if _, err := os.Stat(CACertificates); err != nil {
		return fmt.Errorf("the host's CA certificates (install Debian's ca-certificates): %w", err)
	}
	s.Files = append(s.Files,
		File{Path: "/etc/passwd", Data: []byte(passwd), Mode: 0o644},
		File{Path: "/etc/group", Data: []byte(group), Mode: 0o644},
		File{Path: "/etc/nsswitch.conf", Data: []byte("hosts: files dns\n"), Mode: 0o644},
		File{Path: CACertificates, Source: CACertificates, Mode: 0o644},
	)
	s.Dirs = append(s.Dirs,
		Dir{Path: "/root", Mode: 0o700},
		Dir{Path: "/home/nonroot", Mode: 0o700, UID: NonrootUID, GID: NonrootUID},
		Dir{Path: "/tmp", Mode: 0o777 | os.ModeSticky},
	)
	return nil
}
