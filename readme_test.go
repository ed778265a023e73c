package persistence_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// maxREADMELines keeps the README a newcomer's path; subjects that need
// more room get a page of docs/ (issue 22).
const maxREADMELines = 250

// TestREADMELength fails when the README outgrows a first read.
func TestREADMELength(t *testing.T) {
	text := readFile(t, "README.md")
	if n := strings.Count(text, "\n"); n > maxREADMELines {
		t.Errorf("README.md has %d lines, more than %d: move a subject to docs/", n, maxREADMELines)
	}
}

// documents are the Markdown files whose links and Go blocks are checked.
func documents(t *testing.T) []string {
	docs, err := filepath.Glob("docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	return append([]string{"README.md", "RELIABILITY.md", "BENCHMARKS.md"}, docs...)
}

var (
	// linkRE matches an inline link or image target, up to a title or the
	// closing parenthesis.
	linkRE    = regexp.MustCompile(`\]\(([^)\s]+)(?:\s+"[^"]*")?\)`)
	headingRE = regexp.MustCompile(`(?m)^#{1,6}\s+(.+?)\s*$`)
	fenceRE   = regexp.MustCompile("(?ms)^```[^\n]*\n.*?^```\\s*$")
)

// TestDocumentLinks checks that every relative link of the README and of
// docs/ names a file of the repository, and a heading of it when it has
// an anchor, so that moving a section cannot leave a link behind.
func TestDocumentLinks(t *testing.T) {
	anchors := map[string]map[string]bool{}
	for _, doc := range documents(t) {
		text := fenceRE.ReplaceAllString(readFile(t, doc), "")
		for _, m := range linkRE.FindAllStringSubmatch(text, -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			path, anchor, _ := strings.Cut(target, "#")
			file := doc
			if path != "" {
				file = filepath.Join(filepath.Dir(doc), path)
				if _, err := os.Stat(file); err != nil {
					t.Errorf("%s links to %s, which does not exist", doc, target)
					continue
				}
			}
			if anchor == "" || !strings.HasSuffix(file, ".md") {
				continue
			}
			if anchors[file] == nil {
				anchors[file] = headingAnchors(readFile(t, file))
			}
			if !anchors[file][anchor] {
				t.Errorf("%s links to %s, but %s has no heading with anchor %q", doc, target, file, anchor)
			}
		}
	}
}

// headingAnchors returns the anchors GitHub gives the headings of a
// Markdown text: lower case, punctuation dropped, spaces as hyphens, and
// -1, -2, … after repeats.
func headingAnchors(text string) map[string]bool {
	seen := map[string]int{}
	out := map[string]bool{}
	for _, m := range headingRE.FindAllStringSubmatch(fenceRE.ReplaceAllString(text, ""), -1) {
		var b strings.Builder
		for _, r := range strings.ToLower(m[1]) {
			switch {
			case r == ' ' || r == '-':
				b.WriteRune('-')
			case r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r > 127:
				b.WriteRune(r)
			}
		}
		a := b.String()
		if n := seen[a]; n > 0 {
			out[a+"-"+strconv.Itoa(n)] = true
		} else {
			out[a] = true
		}
		seen[a]++
	}
	return out
}

// goBlockRE matches a fenced Go block and captures its code.
var goBlockRE = regexp.MustCompile("(?ms)^```go\n(.*?)^```\\s*$")

// TestDocumentGoBlocks compiles every Go block of the README, each of
// which must be a whole file with its package clause and imports, so that
// what a newcomer pastes builds; and every Go block of docs/ that is a
// whole file. Each is vetted as a package of its own inside the module,
// where the module's packages resolve as they do for a user.
func TestDocumentGoBlocks(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	dir, err := os.MkdirTemp(".", "_docblocks")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	var pkgs []string
	for _, doc := range documents(t) {
		for i, m := range goBlockRE.FindAllStringSubmatch(readFile(t, doc), -1) {
			code := m[1]
			if !strings.HasPrefix(code, "package ") {
				if doc == "README.md" {
					t.Errorf("README.md's Go block %d has no package clause: make it a whole file, which a test compiles", i+1)
				}
				continue
			}
			name := "block.go"
			if strings.Contains(strings.SplitN(code, "\n", 2)[0], "_test") {
				name = "block_test.go"
			}
			pkg := filepath.Join(dir, strings.NewReplacer("/", "_", ".", "_").Replace(doc)+"_"+strconv.Itoa(i+1))
			if err := os.MkdirAll(pkg, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(pkg, name), []byte(code), 0o644); err != nil {
				t.Fatal(err)
			}
			pkgs = append(pkgs, "./"+filepath.ToSlash(pkg))
		}
	}
	if len(pkgs) == 0 {
		t.Fatal("found no Go block to compile")
	}
	var out bytes.Buffer
	cmd := exec.Command(goTool, append([]string{"vet"}, pkgs...)...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Errorf("the documents' Go blocks do not compile (%s, numbered from 1 in each document): %v\n%s", strings.Join(pkgs, " "), err, out.String())
	}
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
