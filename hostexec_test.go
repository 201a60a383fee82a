package nmapmcp

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

// hostExecAllowed lists the only files that may start host processes, and
// why: making the offline base image needs debootstrap and tar on the host.
// A CLI scan also hands unfinished container removals to a detached copy
// of nmap-mcp itself ("nmap-mcp reap", executor.Detach). The test kit
// builds the fence tests' target program with go build, and the fault
// tests' second Docker engine is a dockerd it starts.
var hostExecAllowed = map[string]bool{
	"images/base.go":      true,
	"executor/handoff.go": true,
	// The fence tests' target program is built for the tests (go build).
	"internal/testkit/network.go": true,
	// The fault tests' second engine (dockerd, never nmap).
	"internal/testkit/engine.go": true,
	// The fault tests stop and start the test cluster's API server
	// (scripts/kube.sh apiserver, never nmap).
	"internal/testkit/kube.go": true,
	// The test OpenID provider: npm and node (oidc-provider), never nmap.
	"internal/testkit/oidcop/install.go": true,
	"internal/testkit/oidcop/oidcop.go":  true,
	// The sharding benchmark's delayed listeners take their address off
	// the interface in their own test container's namespace (nsenter ip).
	"internal/shard/shardtest/listener.go": true,
}

// TestNoHostNmap holds the rule that nmap never runs on the host: no
// non-test source outside hostExecAllowed starts a process, and no source
// names an nmap binary as a command. The e2e tests check the same at run
// time with a fake nmap on the server's PATH.
func TestNoHostNmap(t *testing.T) {
	fset := token.NewFileSet()
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && path != "." || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			pkg, ok := sel.X.(*ast.Ident)
			if !ok {
				return true
			}
			name := pkg.Name + "." + sel.Sel.Name
			switch name {
			case "exec.Command", "exec.CommandContext", "os.StartProcess", "syscall.Exec", "syscall.ForkExec", "exec.LookPath":
			default:
				return true
			}
			if !hostExecAllowed[filepath.ToSlash(path)] {
				t.Errorf("%s: %s starts a host process outside the allowed files", fset.Position(call.Pos()), name)
			}
			for _, arg := range call.Args {
				if lit, ok := arg.(*ast.BasicLit); ok && strings.Contains(strings.ToLower(lit.Value), "nmap") {
					t.Errorf("%s: %s names nmap: %s", fset.Position(call.Pos()), name, lit.Value)
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
