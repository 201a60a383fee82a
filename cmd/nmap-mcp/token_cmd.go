package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
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
authenticating. Flags may come before or after NAME; a NAME that starts
with "-" is refused.
`

// cmdToken adds or removes a named bearer token. Its arguments are flags
// and exactly one NAME, in any order, so that neither "--help" nor a flag
// written before the name is ever taken for a token's name.
func cmdToken(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, tokenUsage)
		return &exitCode{2}
	}
	sub := args[0]
	switch {
	case sub == "help" || isHelpFlag(sub):
		fmt.Fprint(stderr, tokenUsage)
		return nil
	case sub != "add" && sub != "rm":
		fmt.Fprintf(stderr, "nmap-mcp token: unknown subcommand %q (add or rm)\n%s", sub, tokenUsage)
		return &exitCode{2}
	}
	// Help wins over everything else, before any file is read.
	for _, a := range args[1:] {
		if a == "--" {
			break
		}
		if isHelpFlag(a) {
			fmt.Fprint(stderr, tokenUsage)
			return nil
		}
	}
	if sub == "rm" {
		return tokenRemove(context.Background(), args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("token add", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, tokenUsage) }
	configPath := fs.String("config", "", "configuration file (default: $NMAP_MCP_CONFIG, else the default path)")
	pos, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return flagErr(err)
	}
	name, err := tokenName("add", pos)
	if err != nil {
		return err
	}
	path := *configPath
	if path == "" {
		path, _ = config.Find(nil)
	}
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

// isHelpFlag reports whether a is one of the spellings of the help flag.
func isHelpFlag(a string) bool {
	return a == "-h" || a == "--help" || a == "-help"
}

// tokenName is the one NAME among the positional arguments of token sub,
// checked.
func tokenName(sub string, pos []string) (string, error) {
	switch len(pos) {
	case 0:
		return "", fmt.Errorf("token %s takes one NAME, got none; see nmap-mcp token --help", sub)
	case 1:
	default:
		return "", fmt.Errorf("token %s takes one NAME, got %d: %q; see nmap-mcp token --help", sub, len(pos), pos)
	}
	name := pos[0]
	if strings.HasPrefix(name, "-") {
		return "", fmt.Errorf("token name %q: must not start with \"-\" (it would read as a flag); use 1-64 letters, digits, dots, hyphens or underscores, starting with a letter, digit, dot or underscore", name)
	}
	if !validTokenName(name) {
		return "", fmt.Errorf("token name %q: use 1-64 letters, digits, dots, hyphens or underscores", name)
	}
	return name, nil
}

// tokenRemove removes the token from the config file and pauses its
// client's watches in the history: a watch runs as its client, so it must
// not outlive the client's token. The watches are paused first, so that a
// failure leaves the token in place rather than watches of a removed
// client running.
func tokenRemove(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	_, fs, set, ok, err := subcommand("token", tokenUsage, append([]string{"rm"}, args...), stderr)
	if !ok {
		return err
	}
	fs.Usage = func() { fmt.Fprint(stderr, tokenUsage+"\nFlags:\n"); fs.PrintDefaults() }
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return flagErr(err)
	}
	name, err := tokenName("rm", pos)
	if err != nil {
		return err
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
