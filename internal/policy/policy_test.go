package policy

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/nmap-mcp/nmap-mcp/internal/scanargs"
)

// fakeDNS is a resolver the test controls. Nothing here sends a packet:
// the policy is called directly.
type fakeDNS map[string][]string

func (f fakeDNS) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, s := range f[host] {
		out = append(out, netip.MustParseAddr(s))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no such host %s", host)
	}
	return out, nil
}

var dns = fakeDNS{
	"scanme.nmap.org":     {"45.33.32.156", "2600:3c01::f03c:91ff:fe18:bb2f"},
	"metadata.evil.test":  {"169.254.169.254"},
	"rebind.evil.test":    {"127.0.0.1", "169.254.169.254"},
	"lab.internal.test":   {"10.1.2.3", "fd12::3"},
	"public.example.test": {"93.184.216.34"},
	"v6meta.evil.test":    {"fd00:ec2::254"},
}

func plan(t *testing.T, req scanargs.Request) *scanargs.Plan {
	t.Helper()
	p, err := req.Plan(scanargs.DefaultRules())
	if err != nil {
		t.Fatalf("Plan(%+v): %v", req, err)
	}
	return p
}

// resolving is the default policy that also resolves names no allow rule
// names (scope.resolve_unlisted_names), to test how resolved addresses
// are checked.
func resolving() Config {
	c := DefaultConfig()
	c.ResolveUnlistedNames = true
	return c
}

func TestScope(t *testing.T) {
	pol, err := New(resolving(), dns, nil)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		targets string
		ok      bool
		want    string // in the refusal, or in the pinned targets
	}{
		{"127.0.0.1", true, "127.0.0.1"},
		{"::1", true, "::1"},
		{"10.0.0.0/24", true, "10.0.0.0/24"},
		{"fd00:1::/120", true, "fd00:1::/120"},
		{"169.254.169.254", false, "denied by 169.254.169.254/32; to change this, edit scope.deny"},
		{"100.100.100.200", false, "scope.deny"},
		{"fd00:ec2::254", false, "denied by fd00:ec2::254/128"},
		{"224.0.0.1", false, "224.0.0.0/4"},
		{"ff02::1", false, "ff00::/8"},
		{"255.255.255.255", false, "255.255.255.255/32"},
		{"8.8.8.8", false, "no allow rule covers it; to change this, edit scope.allow"},
		{"2001:db8::1", false, "scope.allow"},
		{"169.254.169.0/24", false, "it overlaps denied by 169.254.169.254/32"},
		{"fd00:ec2::/116", false, "overlaps denied by fd00:ec2::254/128"},
		{"172.15.255.248/29", false, "no allow rule"},
		{"scanme.nmap.org", true, "45.33.32.156"},
		{"lab.internal.test", true, "10.1.2.3"},
		{"metadata.evil.test", false, "resolves to 169.254.169.254, denied by 169.254.169.254/32"},
		{"rebind.evil.test", false, "resolves to 169.254.169.254"},
		{"public.example.test", false, "resolves to 93.184.216.34, which no allow rule covers"},
		{"nowhere.test", false, "does not resolve"},
	}
	for _, c := range cases {
		t.Run(c.targets, func(t *testing.T) {
			pinned, err := pol.Check(context.Background(), plan(t, scanargs.Request{Targets: c.targets}))
			if c.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if got := pinned.TargetList(); !strings.Contains(got, c.want) || strings.Contains(got, ".test") || strings.Contains(got, ".org") {
					t.Fatalf("pinned targets %q, want %q and no hostname", got, c.want)
				}
				return
			}
			var r *Refusal
			if !errors.As(err, &r) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v; want a refusal containing %q", err, c.want)
			}
		})
	}
}

// Hostnames are resolved once, and the scan is pinned to the vetted
// addresses of its family; the names stay for the report.
func TestPinningAndFamilies(t *testing.T) {
	pol, _ := New(resolving(), dns, nil)
	p4, err := pol.Check(context.Background(), plan(t, scanargs.Request{Targets: "lab.internal.test"}))
	if err != nil || p4.TargetList() != "10.1.2.3" || p4.Names["10.1.2.3"][0] != "lab.internal.test" {
		t.Fatalf("v4: %v %+v", err, p4)
	}
	p6, err := pol.Check(context.Background(), plan(t, scanargs.Request{Targets: "::1 lab.internal.test"}))
	if err != nil || p6.TargetList() != "::1 fd12::3" || !p6.IPv6 {
		t.Fatalf("v6: %v %q", err, p6.TargetList())
	}
	if args := strings.Join(p6.Args(), " "); !strings.HasSuffix(args, "-- ::1 fd12::3") {
		t.Fatalf("argv %s", args)
	}
}

func TestBadConfig(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Allow = append(cfg.Allow, "10.0.0.0/33")
	if _, err := New(cfg, nil, nil); err == nil || !strings.Contains(err.Error(), "scope.allow") {
		t.Fatalf("bad allow entry: %v", err)
	}
}
