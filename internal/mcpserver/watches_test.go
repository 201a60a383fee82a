package mcpserver

import (
	"slices"
	"testing"

	"github.com/nmap-mcp/nmap-mcp/internal/store"
)

// Names are per client (issue 20, item 4): a change of alice's "lab" is
// told to sessions of alice subscribed to watch://lab and to those that
// may see watch://alice/lab (alice, an admin), never to bob's watch://lab
// or bob's watch://alice/lab, nor to an admin's own watch://lab.
func TestChangeToldOnlyToItsClient(t *testing.T) {
	w := &store.Watch{ID: "0123456789abcdef", Name: "lab", Client: "alice"}
	for _, c := range []struct {
		what string
		subs map[string]subscriber
		want []string
	}{
		{"alice, own name", map[string]subscriber{"watch://lab": {"alice", "alice"}}, []string{"watch://lab"}},
		{"alice, full name", map[string]subscriber{"watch://alice/lab": {"alice", "alice"}}, []string{"watch://alice/lab"}},
		{"bob, same name", map[string]subscriber{"watch://lab": {"bob", "bob"}}, nil},
		{"bob, alice's full name", map[string]subscriber{"watch://alice/lab": {"bob", "bob"}}, nil},
		{"admin, own name", map[string]subscriber{"watch://lab": {"root", ""}}, nil},
		{"admin, full name", map[string]subscriber{"watch://alice/lab": {"root", ""}}, []string{"watch://alice/lab"}},
	} {
		if got := toldOf(c.subs, w); !slices.Equal(got, c.want) {
			t.Errorf("%s: told %v, want %v", c.what, got, c.want)
		}
	}
}
