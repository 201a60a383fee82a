package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"

	"github.com/nmap-mcp/nmap-mcp/executor"
	"github.com/nmap-mcp/nmap-mcp/images"
	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

func cmdImage(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const usage = "Usage: nmap-mcp image build [--no-cache] [--debian-mirror URL]\n       nmap-mcp image inspect\n       nmap-mcp image seccomp\n"
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return &exitCode{2}
	}
	sub := args[0]
	fs := flag.NewFlagSet("image "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	noCache := fs.Bool("no-cache", false, "rebuild every step (build only)")
	mirror := fs.String("debian-mirror", envOr("NMAP_MCP_DEBIAN_MIRROR", ""), "Debian mirror for the offline base (env NMAP_MCP_DEBIAN_MIRROR)")
	asJSON := fs.Bool("json", false, "print JSON (inspect only)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "%s\nbuild: build the pinned scanner image from the embedded Dockerfile.nmap; without a registry, first make a\n       Debian bookworm base with debootstrap (needs root once).\ninspect: show the scanner image this binary expects: tag, ID, labels, nmap version.\nseccomp: print the seccomp profile every scan runs under (for Kubernetes nodes: kubernetes.seccomp_profile).\n\nFlags:\n", usage)
		fs.PrintDefaults()
	}
	if sub == "-h" || sub == "--help" {
		fs.Usage()
		return nil
	}
	if err := fs.Parse(args[1:]); err != nil {
		return flagErr(err)
	}
	if sub == "seccomp" {
		// No engine needed: the profile is built into the binary.
		_, err := stdout.Write(append(sandbox.SeccompProfile(), '\n'))
		return err
	}
	cli, err := executor.Connect(ctx)
	if err != nil {
		return err
	}
	defer cli.Close()
	m := images.New(cli, stderr, *mirror)
	var info images.Info
	switch sub {
	case "build":
		if !*noCache {
			if cur, err := m.Current(ctx); err == nil {
				fmt.Fprintf(stderr, "nmap-mcp: %s is present and verified; nothing to build (use --no-cache to rebuild)\n", cur.Tag)
				info = cur
				break
			}
		}
		if info, err = m.Build(ctx, *noCache); err != nil {
			return err
		}
	case "inspect":
		if info, err = m.Current(ctx); err != nil {
			return err
		}
	default:
		fmt.Fprintf(stderr, "nmap-mcp: unknown image command %q\n%s", sub, usage)
		return &exitCode{2}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(info)
	}
	fmt.Fprintf(stdout, "tag:          %s\nid:           %s\nnmap version: %s\nrecipe:       sha256:%s\nbase:         %s\ncreated:      %s\n",
		info.Tag, info.ID, info.NmapVersion, info.RecipeSHA256, info.Base, info.Created)
	for _, k := range slices.Sorted(maps.Keys(info.Labels)) {
		fmt.Fprintf(stdout, "label:        %s=%s\n", k, info.Labels[k])
	}
	return nil
}
