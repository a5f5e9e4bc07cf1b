package deploy

import (
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, COPY, ...
	args string
}

// parseDockerfile splits a Dockerfile into instructions. It knows what this
// repository's Dockerfile uses: comments, backslash continuations, no
// parser directives that change the escape character.
func parseDockerfile(data string) []instruction {
	var out []instruction
	var cur strings.Builder
	for _, line := range strings.Split(data, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() == 0) {
			continue
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur.WriteString(strings.TrimSuffix(trimmed, "\\") + " ")
			continue
		}
		cur.WriteString(trimmed)
		cmd, args, _ := strings.Cut(strings.TrimSpace(cur.String()), " ")
		out = append(out, instruction{strings.ToUpper(cmd), strings.TrimSpace(args)})
		cur.Reset()
	}
	return out
}

// shellWords splits a command line the way sh does for what a RUN line of
// ours holds: words, single and double quotes, backslash escapes. It refuses
// what it cannot run as a plain command (expansions, pipes, lists).
func shellWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unterminated ' in %q", s)
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte(`"\$`+"`", s[i+1]) >= 0 {
					i++
				} else if s[i] == '$' || s[i] == '`' {
					return nil, fmt.Errorf("expansion in %q: not a plain command", s)
				}
				cur.WriteByte(s[i])
			}
			if i == len(s) {
				return nil, fmt.Errorf("unterminated \" in %q", s)
			}
			inWord = true
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inWord = true
		case strings.IndexByte("$`|&;<>()*?[", c) >= 0:
			return nil, fmt.Errorf("%q in %q: not a plain command", c, s)
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// makeDryRun returns the commands `make -n` prints for a target.
func makeDryRun(t *testing.T, args ...string) string {
	t.Helper()
	mk := exec.Command("make", append([]string{"-n", "--no-print-directory"}, args...)...)
	mk.Dir = repoPath(t, ".")
	out, err := mk.Output()
	if err != nil {
		t.Fatalf("make -n %s: %v", strings.Join(args, " "), err)
	}
	return string(out)
}

// imageName is the manifests' image without its tag.
var imageName, _, _ = strings.Cut(image, ":v")

var envAssignment = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)

// buildCommand is the Dockerfile's go build, split into environment and argv.
type buildCommand struct {
	env, argv []string
	output    string // the -o argument
}

// dockerfileBuild returns the Dockerfile's go build with the build
// arguments args (ARG NAME=default, overridden as --build-arg does)
// substituted, as the RUN's shell would.
func dockerfileBuild(t *testing.T, instrs []instruction, args map[string]string) buildCommand {
	t.Helper()
	var runs []string
	vars := map[string]string{}
	for _, in := range instrs {
		switch {
		case in.cmd == "ARG":
			name, def, _ := strings.Cut(in.args, "=")
			vars[name] = def
			if v, ok := args[name]; ok {
				vars[name] = v
			}
		case in.cmd == "RUN" && strings.Contains(in.args, "go build"):
			run := in.args
			for name, v := range vars {
				run = strings.NewReplacer("${"+name+"}", v, "$"+name, v).Replace(run)
			}
			runs = append(runs, run)
		}
	}
	if len(runs) != 1 {
		t.Fatalf("Dockerfile: %d RUN instructions with go build, want 1: %q", len(runs), runs)
	}
	words, err := shellWords(runs[0])
	if err != nil {
		t.Fatalf("Dockerfile RUN %s: %v", runs[0], err)
	}
	var b buildCommand
	for len(words) > 0 && envAssignment.MatchString(words[0]) {
		b.env = append(b.env, words[0])
		words = words[1:]
	}
	b.argv = words
	for i, w := range words {
		if w == "-o" && i+1 < len(words) {
			b.output = words[i+1]
		}
	}
	return b
}

// TestDockerfileBuild runs the Dockerfile's go build as written, with a
// VERSION build argument (into a temporary directory instead of /out), and
// checks what the image relies on: a static, stripped, path-free binary
// that starts and prints that version. It also checks the Dockerfile
// against `make build`'s command and the manifests' image.
func TestDockerfileBuild(t *testing.T) {
	data, err := os.ReadFile(repoPath(t, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	instrs := parseDockerfile(string(data))
	const version = "v9.8.7-image.1"
	b := dockerfileBuild(t, instrs, map[string]string{"VERSION": version})

	var froms, entrypoints, copies []string
	for _, in := range instrs {
		switch in.cmd {
		case "FROM":
			froms = append(froms, in.args)
		case "ENTRYPOINT":
			entrypoints = append(entrypoints, in.args)
		case "COPY":
			if strings.HasPrefix(in.args, "--from=") {
				copies = append(copies, in.args)
			}
		}
	}
	// What `make build` runs with the same VERSION and output.
	makeOut := makeDryRun(t, "build", "VERSION="+version, "BIN="+b.output, "GO=go")
	makeWords, err := shellWords(strings.TrimSpace(makeOut))
	if err != nil {
		t.Fatalf("make -n build printed %q: %v", makeOut, err)
	}

	for _, tc := range []struct {
		what      string
		got, want any
	}{
		{"stages", froms, []string{"golang:1.26 AS build", "gcr.io/distroless/static-debian12:nonroot"}},
		{"build environment", b.env, []string{"CGO_ENABLED=0"}},
		{"build command", strings.Join(b.argv, " "), "go build -trimpath -ldflags=-s -w -X main.version=" + version + " -X k8s.io/component-base/version.gitVersion=" + version + " -o /out/baremetal-cloud-controller-manager ./cmd/baremetal-cloud-controller-manager"},
		{"copy into the final stage", copies, []string{"--from=build " + b.output + " /baremetal-cloud-controller-manager"}},
		{"entrypoint", entrypoints, []string{`["/baremetal-cloud-controller-manager"]`}},
		{"the RUN is `make build`'s command", makeWords, append(slices.Clone(b.env), b.argv...)},
		{"the Dockerfile names the manifests' image", strings.Contains(string(data), imageName+":"), true},
		{"make image builds the manifests' image, tagged VERSION", strings.TrimSpace(makeDryRun(t, "image", "VERSION="+version)),
			"docker build --build-arg VERSION=" + version + " -t " + imageName + ":" + version + " ."},
	} {
		if fmt.Sprint(tc.got) != fmt.Sprint(tc.want) {
			t.Errorf("Dockerfile %s:\n got %q\nwant %q", tc.what, tc.got, tc.want)
		}
	}
	if t.Failed() || b.output == "" || len(b.argv) == 0 || b.argv[0] != "go" {
		t.FailNow()
	}

	// Run it: the Dockerfile's WORKDIR holds the repository (COPY . .), the
	// output goes to a temporary directory instead of /out.
	out := filepath.Join(t.TempDir(), path.Base(b.output))
	argv := slices.Clone(b.argv)
	argv[slices.Index(argv, b.output)] = out
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = repoPath(t, ".")
	cmd.Env = append(os.Environ(), b.env...)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", strings.Join(b.env, " "), strings.Join(argv, " "), err, msg)
	}

	f, err := elf.Open(out)
	if err != nil {
		t.Fatalf("the binary is not ELF: %v", err)
	}
	defer f.Close()
	var progs []string
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			progs = append(progs, p.Type.String())
		}
	}
	libs, _ := f.ImportedLibraries()
	for _, tc := range []struct {
		what      string
		got, want any
	}{
		{"interpreter and dynamic program headers (a distroless static image has no libc)", progs, []string(nil)},
		{".dynamic section", f.Section(".dynamic") != nil, false},
		{"imported libraries", libs, []string(nil)},
		{".symtab section (-s strips it)", f.Section(".symtab") != nil, false},
		{"DWARF (-w leaves it out)", f.Section(".debug_info") != nil || f.Section(".zdebug_info") != nil, false},
	} {
		if fmt.Sprint(tc.got) != fmt.Sprint(tc.want) {
			t.Errorf("binary %s: got %v, want %v", tc.what, tc.got, tc.want)
		}
	}
	bin, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if root := repoPath(t, "."); bytes.Contains(bin, []byte(root)) {
		t.Errorf("binary holds the build directory %s: -trimpath did not apply", root)
	}

	if v, err := exec.CommandContext(ctx, out, "--version").CombinedOutput(); err != nil || string(v) != "baremetal-cloud-controller-manager "+version+"\n" {
		t.Errorf("%s --version = %q, %v; want the build argument VERSION, %s", out, v, err, version)
	}
	help, err := exec.CommandContext(ctx, out, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("%s --help: %v\n%s", out, err, help)
	}
	for _, flag := range []string{"--cloud-config-reload-interval", "--cloud-provider", "--leader-elect", "--bind-address", "--secure-port"} {
		if !bytes.Contains(help, []byte(flag)) {
			t.Errorf("--help does not list %s", flag)
		}
	}
}
