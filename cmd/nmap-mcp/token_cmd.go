package main

import (
	"fmt"
	"io"

	"github.com/nmap-mcp/nmap-mcp/internal/config"
	"github.com/nmap-mcp/nmap-mcp/internal/httpapi"
)

// cmdToken adds a named bearer token: it prints the token once and stores
// only its SHA-256 in the configuration file.
func cmdToken(args []string, stdout, stderr io.Writer) error {
	const usage = "Usage: nmap-mcp token add NAME [--config PATH]\n"
	if len(args) < 2 || args[0] != "add" {
		fmt.Fprint(stderr, usage)
		return &exitCode{2}
	}
	name := args[1]
	if !validTokenName(name) {
		return fmt.Errorf("token name %q: use 1-64 letters, digits, dots, hyphens or underscores", name)
	}
	path, _ := config.Find(args[2:])
	secret, t, err := httpapi.NewToken(name)
	if err != nil {
		return err
	}
	if err := config.AddToken(path, config.Token{Name: t.Name, SHA256: t.SHA256}); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "nmap-mcp: added token %q to %s (only its SHA-256 is stored; this is the only time it is shown)\n", name, path)
	fmt.Fprintln(stdout, secret)
	return nil
}

func validTokenName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
