package testkit

import (
	"strings"
	"testing"
)

// Frame is one frame a target counted: source and destination MAC and
// EtherType ("0x0800" IPv4, "0x0806" ARP, "0x86dd" IPv6).
type Frame struct {
	Src, Dst, Type string
}

// Frames returns every frame the target received, in order, read from its
// log (so that reading them sends nothing on the network).
func (tg *Target) Frames(t testing.TB) []Frame {
	t.Helper()
	out, err := tg.output()
	if err != nil {
		t.Fatalf("read the frame log of target %s: %v", tg.IPv4, err)
	}
	var frames []Frame
	for _, line := range strings.Split(out, "\n") {
		// frame src MAC dst MAC type 0xNNNN ...
		f := strings.Fields(line)
		if len(f) >= 7 && f[0] == "frame" && f[1] == "src" && f[3] == "dst" && f[5] == "type" {
			frames = append(frames, Frame{Src: f[2], Dst: f[4], Type: f[6]})
		}
	}
	return frames
}
