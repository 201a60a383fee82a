package scans

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nmap-mcp/nmap-mcp/executor"
	"github.com/nmap-mcp/nmap-mcp/internal/policy"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// Version runs "nmap --version" in the sandbox, with no network, and
// returns its first line.
func (s *Service) Version(ctx context.Context) (string, error) {
	out, err := s.runQuiet(ctx, nil, "--version")
	if err != nil {
		return "", fmt.Errorf("run nmap --version in the sandbox: %w", err)
	}
	line, _, _ := strings.Cut(strings.TrimSpace(out), "\n")
	return line, nil
}

// ScriptIndex reads the NSE script index from the scanner image (run in
// the sandbox with no network): each script's categories, and which
// scripts add targets or capture packets. It is cached for the service's
// life; the policy reads it through this.
func (s *Service) ScriptIndex(ctx context.Context) (*policy.ScriptIndex, error) {
	s.idxMu.Lock()
	defer s.idxMu.Unlock()
	if s.scriptDB != nil {
		return s.scriptDB, nil
	}
	out, err := s.runQuiet(ctx, []string{"/bin/sh", "-c", policy.IndexScript})
	if err != nil {
		return nil, fmt.Errorf("read the NSE script index in the scanner image: %w", err)
	}
	idx := policy.ParseScriptIndex(out)
	if len(idx.Categories) == 0 {
		return nil, errors.New("the scanner image's NSE script.db lists no scripts")
	}
	s.scriptDB = idx
	return idx, nil
}

// runQuiet runs a short command in the unprivileged sandbox with no
// network (command nil: nmap with args) and returns its stdout.
func (s *Service) runQuiet(ctx context.Context, command []string, args ...string) (string, error) {
	const limit = 30 * time.Second
	opts := s.cfg.Sandbox
	opts.Network = "none"
	opts.Limits.Timeout = limit
	id, err := newID()
	if err != nil {
		return "", err
	}
	img, err := s.ready(ctx)
	if err != nil {
		return "", err
	}
	spec := s.shape(sandbox.New(opts, sandbox.Scan{ID: id, Image: img.ID, Args: args}))
	if command != nil {
		spec.Command = command
	}
	res, err := s.d.Runner.Run(ctx, executor.Job{Spec: spec})
	if err != nil {
		return "", err
	}
	return string(res.Stdout), nil
}
