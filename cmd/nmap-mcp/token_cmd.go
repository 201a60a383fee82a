package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/config"
	"github.com/nmap-mcp/nmap-mcp/internal/httpapi"
)

const tokenUsage = `Usage:
  nmap-mcp token add NAME [--config PATH]
  nmap-mcp token rm NAME [--config PATH] [--store PATH]
add prints a new token once and stores only its SHA-256 in the config file.
rm removes it from the config file and pauses the watches of its client
(they scan as their client); restart a running serve for the token to stop
authenticating.
`

// cmdToken adds or removes a named bearer token.
func cmdToken(args []string, stdout, stderr io.Writer) error {
	if len(args) < 2 || (args[0] != "add" && args[0] != "rm") {
		fmt.Fprint(stderr, tokenUsage)
		return &exitCode{2}
	}
	name := args[1]
	if !validTokenName(name) {
		return fmt.Errorf("token name %q: use 1-64 letters, digits, dots, hyphens or underscores", name)
	}
	if args[0] == "rm" {
		return tokenRemove(context.Background(), name, args[2:], stdout, stderr)
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

// tokenRemove removes the token from the config file and pauses its
// client's watches in the history: a watch runs as its client, so it must
// not outlive the client's token. The watches are paused first, so that a
// failure leaves the token in place rather than watches of a removed
// client running.
func tokenRemove(ctx context.Context, name string, args []string, stdout, stderr io.Writer) error {
	_, fs, set, ok, err := subcommand("token", tokenUsage, append([]string{"rm"}, args...), stderr)
	if !ok {
		return err
	}
	if _, err := parseInterleaved(fs, args); err != nil {
		return flagErr(err)
	}
	if err := set.parsed(); err != nil {
		return err
	}
	found := false
	for _, t := range set.HTTP.Tokens {
		found = found || t.Name == name
	}
	if !found {
		return fmt.Errorf("config file %s has no token named %q (http.tokens); nothing was changed", set.configPath, name)
	}
	st, err := set.openStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	reason := fmt.Sprintf("its client %q was removed (nmap-mcp token rm, %s), and a watch scans as its client", name, time.Now().UTC().Format(time.RFC3339))
	n, err := st.PauseClientWatches(ctx, name, reason, time.Now())
	if err != nil {
		return fmt.Errorf("token %q not removed: its watches could not be paused: %w", name, err)
	}
	if err := config.RemoveToken(set.configPath, name); err != nil {
		return fmt.Errorf("paused %d watches of %q, but the token was not removed: %w", n, name, err)
	}
	fmt.Fprintf(stdout, "removed token %q from %s; paused %d of its watches (nmap-mcp watch list shows them). "+
		"Restart a running serve for the token to stop authenticating.\n", name, set.configPath, n)
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
