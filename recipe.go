// Package nmapmcp holds what ships inside the nmap-mcp binary besides code:
// the scanner image recipe, Dockerfile.nmap, embedded so that a lone binary
// can build its own pinned image.
package nmapmcp

import (
	"bytes"
	_ "embed"
)

//go:embed Dockerfile.nmap
var dockerfile []byte

// Dockerfile returns a copy of the embedded Dockerfile.nmap.
func Dockerfile() []byte { return bytes.Clone(dockerfile) }
