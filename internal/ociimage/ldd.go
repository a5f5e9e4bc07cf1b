package ociimage

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// loadAddress is the "(0x7f...)" that ends a line of ldd.
var loadAddress = regexp.MustCompile(`\(0x[0-9a-fA-F]+\)$`)

// sharedLibraries lists the absolute paths of the shared libraries, the
// dynamic loader included, that `ldd` resolves for the ELF file path on
// this host.
func sharedLibraries(ctx context.Context, path string) ([]string, error) {
	cmd := exec.CommandContext(ctx, "ldd", path)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w: %s", path, err, strings.TrimSpace(stderr.String()))
	}
	libs, err := parseLdd(string(out))
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", path, err)
	}
	return libs, nil
}

// parseLdd reads ldd's output:
//
//	linux-vdso.so.1 (0x00007ffd...)                    the kernel's, no file
//	libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)
//	/lib64/ld-linux-x86-64.so.2 (0x...)                the loader
//	libfoo.so.1 => not found                           an error
//	statically linked                                  nothing
func parseLdd(out string) ([]string, error) {
	var libs, missing []string
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line == "statically linked" {
			continue
		}
		name, resolved, hasArrow := strings.Cut(line, "=>")
		if !hasArrow {
			resolved = name
		}
		resolved = strings.TrimSpace(resolved)
		if resolved == "not found" {
			missing = append(missing, strings.TrimSpace(name))
			continue
		}
		resolved = strings.TrimSpace(loadAddress.ReplaceAllString(resolved, ""))
		if !filepath.IsAbs(resolved) {
			if hasArrow && resolved != "" {
				return nil, fmt.Errorf("line %q: %q is not an absolute path", line, resolved)
			}
			continue // the vDSO
		}
		libs = append(libs, filepath.Clean(resolved))
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("libraries not found on this host: %s", strings.Join(missing, ", "))
	}
	return libs, nil
}
