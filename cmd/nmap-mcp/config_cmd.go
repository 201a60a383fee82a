package main

import (
	"fmt"
	"io"

	"github.com/nmap-mcp/nmap-mcp/internal/config"
	"github.com/nmap-mcp/nmap-mcp/internal/policy"
)

// cmdConfig prints a commented default configuration (init) or checks a
// file and prints its effective settings and policy (check).
func cmdConfig(args []string, stdout, stderr io.Writer) error {
	const usage = "Usage: nmap-mcp config init          print a fully commented default configuration\n       nmap-mcp config check FILE    validate FILE and print the effective settings\n"
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return &exitCode{2}
	}
	switch args[0] {
	case "init":
		_, err := stdout.Write(config.Init())
		return err
	case "check":
		if len(args) != 2 {
			fmt.Fprint(stderr, usage)
			return &exitCode{2}
		}
		c, err := config.Load(args[1], true)
		if err != nil {
			return err
		}
		pol, err := policy.New(c.Policy(), nil, nil)
		if err != nil {
			return fmt.Errorf("config file %s: %w", args[1], err)
		}
		out, err := c.YAML()
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "# %s is valid. Effective settings (before environment variables and flags):\n%s\n# policy\n%s", args[1], out, pol.Describe())
		if r, err := c.Resolve(); err == nil {
			fmt.Fprintf(stdout, "\n# %s\n", r.Approval.Describe())
		}
		for _, w := range c.Warnings() {
			fmt.Fprintf(stderr, "warning: %s\n", w)
		}
		return nil
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprintf(stderr, "nmap-mcp: unknown config command %q\n%s", args[0], usage)
		return &exitCode{2}
	}
}
