// Package docs checks the documentation against the repository: every
// relative link resolves (file and heading), and every router or config
// snippet marked as generated is the very text the tests run.
package docs

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"

	"github.com/baremetal-ccm/baremetal-ccm/test/controlplane"
	"github.com/baremetal-ccm/baremetal-ccm/test/lab"
	"github.com/baremetal-ccm/baremetal-ccm/test/rackpeering"
)

// snippets are the texts the docs show and the tests run, by the name a
// doc's marker gives them:
//
//	<!-- snippet: NAME -->
//	```
//	...the text, exactly...
//	```
var snippets = map[string]func() string{
	// The lab's ToR (make demo, test/e2e).
	"frr-lab-tor-a": func() string { return lab.ExampleToRBGPD().String() },
	// Rack-aware peering (test/rackpeering).
	"frr-rack-aware-tor-a":    func() string { return rackpeering.ToRBGPD(rackpeering.Racks[0]).String() },
	"frr-rack-aware-tor-c":    func() string { return rackpeering.ToRBGPD(rackpeering.Racks[2]).String() },
	"bird-rack-aware-tor-b":   func() string { return rackpeering.ToRBIRD(rackpeering.Racks[1]).String() },
	"cloud-config-rack-aware": rackpeering.CloudConfig,
}

// markdownFiles returns the repository's documentation: docs/ and the
// top-level markdown files.
func markdownFiles(t *testing.T) (root string, files []string) {
	t.Helper()
	root, err := controlplane.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	err = filepath.WalkDir(filepath.Join(root, "docs"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".md") {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	top, _ := filepath.Glob(filepath.Join(root, "*.md"))
	return root, append(files, top...)
}

// doc is a markdown file split into its prose lines (outside fenced code)
// and its fenced blocks.
type doc struct {
	path   string
	prose  []string // line i of the file, or "" inside a fence
	blocks []block
}

type block struct {
	marker string // the snippet name of a marker just before it; "" if none
	text   string
	line   int
}

var markerRE = regexp.MustCompile(`^<!--\s*snippet:\s*([a-z0-9-]+)\s*-->$`)

func readDoc(t *testing.T, path string) doc {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d := doc{path: path}
	var fence, marker string
	var cur strings.Builder
	start := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case fence != "":
			d.prose = append(d.prose, "")
			if strings.HasPrefix(trimmed, fence) && strings.Trim(trimmed, "`~") == "" {
				d.blocks = append(d.blocks, block{marker: marker, text: cur.String(), line: start})
				fence, marker = "", ""
				cur.Reset()
				continue
			}
			cur.WriteString(line + "\n")
		case strings.HasPrefix(trimmed, "```") || strings.HasPrefix(trimmed, "~~~"):
			fence = trimmed[:3]
			start = n
			d.prose = append(d.prose, "")
		default:
			d.prose = append(d.prose, line)
			if m := markerRE.FindStringSubmatch(trimmed); m != nil {
				marker = m[1]
			} else if trimmed != "" {
				marker = ""
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if fence != "" {
		t.Errorf("%s:%d: a code fence is never closed", path, start)
	}
	return d
}

// TestSnippetsAreWhatTheTestsRun: each marked block is the generated
// text, every marker names a known snippet, and every snippet is shown.
func TestSnippetsAreWhatTheTestsRun(t *testing.T) {
	root, files := markdownFiles(t)
	shown := map[string]bool{}
	for _, f := range files {
		d := readDoc(t, f)
		rel, _ := filepath.Rel(root, f)
		for _, b := range d.blocks {
			if b.marker == "" {
				continue
			}
			gen, ok := snippets[b.marker]
			if !ok {
				t.Errorf("%s:%d: snippet %q is not one the tests generate (test/docs.snippets)", rel, b.line, b.marker)
				continue
			}
			shown[b.marker] = true
			if want := gen(); b.text != want {
				t.Errorf("%s:%d: snippet %q differs from what the tests run; it should read:\n%s", rel, b.line, b.marker, want)
			}
		}
	}
	for name := range snippets {
		if !shown[name] {
			t.Errorf("snippet %q is shown in no doc (<!-- snippet: %s --> before a code block)", name, name)
		}
	}
}

var (
	// An inline link or image: [text](target) or [text](target "title").
	inlineLinkRE = regexp.MustCompile(`\]\(([^)\s]+)(?:\s+"[^"]*")?\)`)
	// A reference definition: [label]: target
	refDefRE     = regexp.MustCompile(`^\s*\[[^\]]+\]:\s*(\S+)`)
	inlineCodeRE = regexp.MustCompile("`[^`]*`")
	headingRE    = regexp.MustCompile(`^#{1,6}\s+(.*?)\s*#*\s*$`)
)

// anchors returns the GitHub anchors of a markdown file's headings.
func anchors(d doc) map[string]bool {
	out := map[string]bool{}
	seen := map[string]int{}
	for _, line := range d.prose {
		m := headingRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		s := slug(m[1])
		if n := seen[s]; n > 0 {
			out[fmt.Sprintf("%s-%d", s, n)] = true
		} else {
			out[s] = true
		}
		seen[s]++
	}
	return out
}

// slug is GitHub's anchor of a heading: lower case, spaces to hyphens,
// punctuation other than hyphens and underscores dropped.
func slug(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// TestLinksResolve: every relative link of the docs names a file or
// directory of the repository, and its #anchor a heading of that file.
func TestLinksResolve(t *testing.T) {
	root, files := markdownFiles(t)
	docs := map[string]doc{}
	load := func(p string) doc {
		if d, ok := docs[p]; ok {
			return d
		}
		d := readDoc(t, p)
		docs[p] = d
		return d
	}
	checked := 0
	for _, f := range files {
		d := load(f)
		rel, _ := filepath.Rel(root, f)
		for i, line := range d.prose {
			line = inlineCodeRE.ReplaceAllString(line, "")
			var targets []string
			for _, m := range inlineLinkRE.FindAllStringSubmatch(line, -1) {
				targets = append(targets, m[1])
			}
			if m := refDefRE.FindStringSubmatch(line); m != nil {
				targets = append(targets, m[1])
			}
			for _, target := range targets {
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				checked++
				if problem := checkLink(root, f, target, load); problem != "" {
					t.Errorf("%s:%d: link %q: %s", rel, i+1, target, problem)
				}
			}
		}
	}
	if checked == 0 {
		t.Fatal("no relative link found: the parser is broken")
	}
}

func checkLink(root, from, target string, load func(string) doc) string {
	path, anchor, _ := strings.Cut(target, "#")
	dest := from
	if path != "" {
		dest = filepath.Join(filepath.Dir(from), filepath.FromSlash(path))
	}
	if rel, err := filepath.Rel(root, dest); err != nil || strings.HasPrefix(rel, "..") {
		return "leaves the repository"
	}
	fi, err := os.Stat(dest)
	if err != nil {
		return "no such file or directory"
	}
	if anchor == "" {
		return ""
	}
	if fi.IsDir() || !strings.HasSuffix(dest, ".md") {
		return "an anchor into something that is not a markdown file"
	}
	if as := anchors(load(dest)); !as[anchor] {
		keys := make([]string, 0, len(as))
		for a := range as {
			keys = append(keys, a)
		}
		slices.Sort(keys)
		return fmt.Sprintf("no heading with anchor #%s (anchors: %s)", anchor, strings.Join(keys, ", "))
	}
	return ""
}
