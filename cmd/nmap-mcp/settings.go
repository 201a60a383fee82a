package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"syscall"

	"github.com/nmap-mcp/nmap-mcp/internal/app"
	"github.com/nmap-mcp/nmap-mcp/internal/config"
	"github.com/nmap-mcp/nmap-mcp/internal/store"
)

// settings is the one configuration of a subcommand (defaults, file,
// environment, flags: see config.Layers), validated, and the file it came
// from.
type settings struct {
	*config.Config
	// resolved is Config in typed values (config.Resolve), set by parsed.
	resolved   config.Resolved
	configPath string
	layers     *config.Layers
}

// subcommand starts a command that has sub-commands (audit, scans,
// watch): with no arguments, or -h, it prints usage and ok is false (err
// says the exit for no arguments); otherwise it returns the sub-command and
// a flag set named "CMD SUB" on which the shared settings are registered.
func subcommand(cmd, usage string, args []string, stderr io.Writer) (sub string, fs *flag.FlagSet, s *settings, ok bool, err error) {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return "", nil, nil, false, &exitCode{2}
		}
		return "", nil, nil, false, nil
	}
	sub = args[0]
	fs = flag.NewFlagSet(cmd+" "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	s = &settings{}
	if err := s.register(fs, args[1:]); err != nil {
		return "", nil, nil, false, err
	}
	return sub, fs, s, true, nil
}

// register adds the shared flags to fs, with defaults from the file
// overridden by the environment. Call parsed after fs.Parse.
func (s *settings) register(fs *flag.FlagSet, args []string) error {
	l, err := config.Register(fs, args)
	if err != nil {
		return err
	}
	s.layers = l
	s.Config = &l.Config // the file and environment; flags come with parsed
	return nil
}

// parsed applies the flags and validates everything.
func (s *settings) parsed() error {
	c, err := s.layers.Done()
	if err != nil {
		return err
	}
	s.Config, s.resolved, s.configPath = c, s.layers.Resolved, s.layers.Path
	return nil
}

// envOr is the variable's value, or def when it is unset or empty.
func envOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

// auditFile is the audit trail's path: as set, or beside the store.
func (s *settings) auditFile() (string, error) { return s.AuditPath(store.DefaultPath) }

// newApp brings up the scans stack for mode: the runner, the history, the
// audit trail, the policy and the scans service (see package app).
func (s *settings) newApp(ctx context.Context, mode app.Mode, log *slog.Logger, stderr io.Writer) (*app.App, error) {
	opts, err := app.FromConfig(s.Config, s.resolved, s.configPath, mode)
	if err != nil {
		return nil, err
	}
	opts.Log, opts.Stderr, opts.ServerVersion = log, stderr, version
	return app.New(ctx, opts)
}

// logger returns the logger and a closer for the log file, if any.
func (s *settings) logger(stderr io.Writer) (*slog.Logger, func(), error) {
	lvl := s.resolved.LogLevel
	w, closer := stderr, func() {}
	if s.Log.File != "" {
		// O_NOFOLLOW: a symlink planted at the log path cannot redirect
		// the server's writes to another file.
		f, err := os.OpenFile(s.Log.File, os.O_CREATE|os.O_APPEND|os.O_WRONLY|syscall.O_NOFOLLOW, 0o600)
		if err != nil {
			return nil, nil, fmt.Errorf("open log file: %w", err)
		}
		w, closer = f, func() { f.Close() }
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lvl})), closer, nil
}

// openStore opens the scan history named by the settings.
func (s *settings) openStore(ctx context.Context) (*store.Store, error) {
	path, err := s.StorePath()
	if err != nil {
		return nil, err
	}
	return store.Open(ctx, path, int(s.resolved.MaxXML))
}

// parseInterleaved parses flags that may come before or after the
// positional arguments ("scans show ID --html") and returns the latter.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos, rest = append(pos, fs.Arg(0)), fs.Args()[1:]
	}
}
