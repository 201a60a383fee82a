package shard

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/nmap-mcp/nmap-mcp/sandbox"
)

// LabelShard labels each shard's container or Job with its shard number
// ("2/4"); the scan id label is the scan's, shared by its shards.
const LabelShard = "nmap-mcp.shard"

// MaxShards bounds the shards of one scan.
const MaxShards = 64

// Config says when and how far a scan is split.
type Config struct {
	// Threshold: a scan of more addresses than this is split; 0 never
	// splits.
	Threshold uint64
	// Shards is how many workers a split scan uses (2..MaxShards).
	Shards int
}

// Width is the most shards a scan may be split into: Shards when
// sharding is on, 0 when it is off.
func (c Config) Width() int {
	if c.Threshold == 0 {
		return 0
	}
	return c.Shards
}

// Validate checks c, naming the setting and the rule.
func (c Config) Validate() error {
	if c.Threshold == 0 {
		return nil
	}
	if c.Shards < 2 || c.Shards > MaxShards {
		return fmt.Errorf("sharding.shards %d: must be between 2 and %d when sharding.threshold is set", c.Shards, MaxShards)
	}
	return nil
}

// Plan returns the blocks spec's scan is split into under c, or nil when
// it runs whole: below the threshold, or targets that are not all
// addresses and CIDR blocks (a name is resolved by the server before the
// scan is placed, so fenced scans always qualify). Want, when above 0,
// asks for that many shards (the model's argument), bounded by c.Shards.
func (c Config) Plan(spec sandbox.Spec, want int) ([][]netip.Prefix, error) {
	if c.Threshold == 0 || want == 1 {
		return nil, nil
	}
	_, targets, ok := SplitCommand(spec.Command)
	if !ok {
		return nil, nil
	}
	var blocks []netip.Prefix
	for _, t := range targets {
		p, err := netip.ParsePrefix(t)
		if err != nil {
			a, aerr := netip.ParseAddr(t)
			if aerr != nil {
				return nil, nil // a name: it runs whole
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		blocks = append(blocks, p.Masked())
	}
	if Count(blocks) <= c.Threshold {
		return nil, nil
	}
	n := c.Shards
	if want > 0 {
		n = min(want, c.Shards)
	}
	shards, err := Split(blocks, n)
	if err != nil || len(shards) < 2 {
		return nil, err
	}
	return shards, nil
}

// SplitCommand cuts the sandbox launcher's command at nmap's "--": the
// part before it and the targets after it.
func SplitCommand(cmd []string) (before, targets []string, ok bool) {
	i := slices.Index(cmd, "--")
	if i < 0 || i == len(cmd)-1 {
		return nil, nil, false
	}
	return cmd[:i+1], cmd[i+1:], true
}
