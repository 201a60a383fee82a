package nmapmcp

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// importRules says which folders' non-test Go files may import a family
// of packages (by import-path prefix): the Docker client only in the Docker
// runner and the image builder, client-go only in the Kubernetes runner,
// the MCP library only in the layers that speak MCP. internal/testkit is
// the tests' helper and may use the engine and the cluster.
var importRules = []struct {
	prefix  string
	allowed []string
}{
	{"github.com/docker/docker/", []string{"executor", "executor/fencer", "images", "internal/testkit"}},
	{"k8s.io/", []string{"internal/kuberunner", "internal/testkit"}},
	{"github.com/mark3labs/mcp-go/", []string{"internal/mcpserver", "internal/httpapi", "internal/app", "cmd/nmap-mcp"}},
}

// topLevel is the layout of the repository's root (the design card's, plus
// the scripts, deployment files, docs and CI).
var topLevel = []string{
	".ci", ".git", ".gitignore", "Dockerfile.nmap", "README.md", "go.mod", "go.sum",
	"cmd", "executor", "sandbox", "images", "internal", "scripts", "deploy", "docs",
	"recipe.go", "hostexec_test.go", "layout_test.go",
	// Build outputs, ignored by git.
	"bin", "nmap-mcp", "artifacts",
}

// TestLayout holds the layout: what sits at the top level, and which
// folders may import the Docker client, client-go and the MCP library.
func TestLayout(t *testing.T) {
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !slices.Contains(topLevel, e.Name()) {
			t.Errorf("%s at the top level: the root holds only %v (a new concern gets a folder under internal/)", e.Name(), topLevel)
		}
	}
	fset := token.NewFileSet()
	err = filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != "." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "bin") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		dir := filepath.ToSlash(filepath.Dir(path))
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			for _, r := range importRules {
				if strings.HasPrefix(p, r.prefix) && !slices.Contains(r.allowed, dir) {
					t.Errorf("%s imports %s: only %v may import %s*", path, p, r.allowed, r.prefix)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
