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

	"github.com/baremetal-ccm/baremetal-ccm/internal/ccmimage"
	"github.com/baremetal-ccm/baremetal-ccm/internal/ociimage"
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

var envAssignment = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)

// buildCommand is the Dockerfile's go build, split into environment and argv.
type buildCommand struct {
	env, argv []string
	output    string // the -o argument
}

// argReference is a use of a build argument in a RUN line: ${NAME}.
var argReference = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// dockerfileBuild is the Dockerfile's one RUN line with go build, its
// ${ARG}s replaced as `docker build --build-arg NAME=value` would replace
// them: from buildArgs, else the ARG's default. An ARG used but not
// declared before the RUN line is an error, as Docker leaves it empty.
func dockerfileBuild(t *testing.T, instrs []instruction, buildArgs map[string]string) buildCommand {
	t.Helper()
	var runs []string
	declared := map[string]string{}
	for _, in := range instrs {
		switch {
		case in.cmd == "FROM":
			clear(declared) // ARGs are per stage
		case in.cmd == "ARG":
			name, def, _ := strings.Cut(in.args, "=")
			declared[name] = def
			if v, ok := buildArgs[name]; ok {
				declared[name] = v
			}
		case in.cmd == "RUN" && strings.Contains(in.args, "go build"):
			var undeclared []string
			runs = append(runs, argReference.ReplaceAllStringFunc(in.args, func(ref string) string {
				name := argReference.FindStringSubmatch(ref)[1]
				v, ok := declared[name]
				if !ok {
					undeclared = append(undeclared, name)
				}
				return v
			}))
			if len(undeclared) > 0 {
				t.Fatalf("Dockerfile RUN %s uses %q, not declared by an ARG of its stage", in.args, undeclared)
			}
		}
	}
	if len(runs) != 1 {
		t.Fatalf("Dockerfile: %d RUN instructions with go build, want 1: %q", len(runs), runs)
	}
	return parseBuildLine(t, "Dockerfile RUN", runs[0])
}

// parseBuildLine splits a go build command line into its environment,
// argv and -o argument.
func parseBuildLine(t *testing.T, what, line string) buildCommand {
	t.Helper()
	words, err := shellWords(line)
	if err != nil {
		t.Fatalf("%s %s: %v", what, line, err)
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

// testVersion is the version the test stamps, as
// `docker build --build-arg VERSION=...` and `make build VERSION=...` do.
const testVersion = "v9.8.7-dockerfile-test"

// TestDockerfileBuild runs the Dockerfile's go build as written (into a
// temporary directory instead of /out) and checks what the image relies on:
// a static, stripped, path-free binary that starts and reports the version
// it was given. It also checks that the Dockerfile and `make image` cannot
// drift apart: `make -n build` prints the Dockerfile's build line, `make
// image` puts that binary in its image, and the image has the Dockerfile's
// entrypoint, user and the manifests' repository.
func TestDockerfileBuild(t *testing.T) {
	data, err := os.ReadFile(repoPath(t, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	instrs := parseDockerfile(string(data))
	b := dockerfileBuild(t, instrs, map[string]string{"VERSION": testVersion})
	mk := makeBuild(t)

	var froms, entrypoints, copies, users []string
	for _, in := range instrs {
		switch in.cmd {
		case "FROM":
			froms = append(froms, in.args)
		case "ENTRYPOINT":
			entrypoints = append(entrypoints, in.args)
		case "USER":
			users = append(users, in.args)
		case "COPY":
			if strings.HasPrefix(in.args, "--from=") {
				copies = append(copies, in.args)
			}
		}
	}
	// The Makefile's line with its -o replaced by the Dockerfile's.
	mkArgv := slices.Clone(mk.argv)
	if i := slices.Index(mkArgv, mk.output); i >= 0 && mk.output != "" {
		mkArgv[i] = b.output
	}

	for _, tc := range []struct {
		what      string
		got, want any
	}{
		{"stages", froms, []string{"golang:1.26 AS build", "gcr.io/distroless/static-debian12:nonroot"}},
		{"build environment", b.env, []string{"CGO_ENABLED=0"}},
		{"build command", strings.Join(b.argv, " "), "go build -trimpath -ldflags=-s -w -X main.version=" + testVersion + " -X k8s.io/component-base/version.gitVersion=" + testVersion + " -o /out/baremetal-cloud-controller-manager ./cmd/baremetal-cloud-controller-manager"},
		{"build environment of `make -n build`", mk.env, b.env},
		{"build command of `make -n build` (its -o aside)", mkArgv, b.argv},
		{"copy into the final stage", copies, []string{"--from=build " + b.output + " " + ccmimage.Binary}},
		{"entrypoint (make image's too)", entrypoints, []string{`["` + ccmimage.Binary + `"]`}},
		{"user (make image's too)", users, []string{ccmimage.User}},
		{"the Dockerfile names the manifests' image", strings.Contains(string(data), image), true},
		{"make image's repository is the manifests'", strings.HasPrefix(image, ccmimage.Repository+":"), true},
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

	version, err := exec.CommandContext(ctx, out, "--version").CombinedOutput()
	if want := "baremetal-cloud-controller-manager " + testVersion + "\n"; err != nil || string(version) != want {
		t.Errorf("%s --version = %q, %v; want %q", out, version, err, want)
	}
	// make image's image of this binary: what the Dockerfile's final
	// stage holds.
	spec, err := ccmimage.Spec(out, testVersion)
	if err != nil {
		t.Fatalf("make image's image of the Dockerfile's binary: %v", err)
	}
	if got, want := spec.Config.Entrypoint, []string{ccmimage.Binary}; !slices.Equal(got, want) {
		t.Errorf("make image's entrypoint %q, want %q", got, want)
	}
	if i := slices.IndexFunc(spec.Files, func(f ociimage.File) bool { return f.Path == ccmimage.Binary }); i < 0 || spec.Files[i].Source != out {
		t.Errorf("make image's image does not hold the binary at %s", ccmimage.Binary)
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

// makeBuild is the go build line `make image` runs (through its build
// prerequisite), as `make -n` prints it with VERSION=testVersion; and it
// checks that `make image` packs that line's output.
func makeBuild(t *testing.T) buildCommand {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "make", "-s", "-n", "-B", "image", "VERSION="+testVersion, "GO=go")
	cmd.Dir = repoPath(t, ".")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("make -n image: %v", err)
	}
	var builds, images []string
	for _, line := range strings.Split(string(out), "\n") {
		switch {
		case strings.Contains(line, "go build") && strings.Contains(line, "./cmd/baremetal-cloud-controller-manager"):
			builds = append(builds, line)
		case strings.Contains(line, "go run ./hack/image"):
			images = append(images, line)
		}
	}
	if len(builds) != 1 || len(images) != 1 {
		t.Fatalf("make -n image: want one go build of the CCM and one go run ./hack/image, got:\n%s", out)
	}
	b := parseBuildLine(t, "make -n image", builds[0])
	img, err := shellWords(images[0])
	if err != nil {
		t.Fatal(err)
	}
	flagValue := func(name string) string {
		if i := slices.Index(img, name); i >= 0 && i+1 < len(img) {
			return img[i+1]
		}
		return ""
	}
	if got := flagValue("-binary"); got != b.output {
		t.Errorf("make image packs %q, want what its build wrote, %q", got, b.output)
	}
	if got, want := flagValue("-ref"), ccmimage.Reference(testVersion); got != want {
		t.Errorf("make image's reference %q, want %q", got, want)
	}
	return b
}
