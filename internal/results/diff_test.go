package results

import (
	"strings"
	"testing"
)

func host(addr string, ports ...Port) Host {
	return Host{Addresses: []string{addr}, State: "up", Ports: ports, OtherPorts: []PortCount{{State: "closed", Count: 90}}}
}

func TestCompare(t *testing.T) {
	before := &Result{Hosts: []Host{
		host("10.0.0.1", Port{Protocol: "tcp", Port: 22, State: "open", Service: "ssh", Product: "OpenSSH", Version: "9.2"},
			Port{Protocol: "tcp", Port: 80, State: "open", Service: "http"}),
		host("10.0.0.2"),
	}}
	after := &Result{Hosts: []Host{
		host("10.0.0.1", Port{Protocol: "tcp", Port: 22, State: "open", Service: "ssh", Product: "OpenSSH", Version: "9.6"},
			Port{Protocol: "tcp", Port: 443, State: "open", Service: "https"}, Port{Protocol: "tcp", Port: 80, State: "filtered", Service: "http"}),
		host("10.0.0.3"),
		{Addresses: []string{"10.0.0.2"}, State: "down"},
	}}
	d := Compare(before, after)
	if strings.Join(d.HostsAppeared, ",") != "10.0.0.3" || strings.Join(d.HostsDisappeared, ",") != "10.0.0.2" {
		t.Fatalf("hosts %+v", d)
	}
	if len(d.PortChanges) != 2 || d.PortChanges[0] != (PortChange{"10.0.0.1", "tcp", 80, "open", "filtered"}) ||
		d.PortChanges[1] != (PortChange{"10.0.0.1", "tcp", 443, "closed", "open"}) {
		t.Fatalf("port changes %+v", d.PortChanges)
	}
	if len(d.ServiceChanges) != 1 || d.ServiceChanges[0].Field != "version" || d.ServiceChanges[0].To != "9.6" {
		t.Fatalf("service changes %+v", d.ServiceChanges)
	}
	text := DiffText(d)
	for _, want := range []string{"+ host 10.0.0.3", "- host 10.0.0.2", "10.0.0.1 443/tcp closed -> open", `version "9.2" -> "9.6"`} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}
	if !Compare(before, before).Empty() || DiffText(Compare(before, before)) != "no changes\n" {
		t.Fatal("a result differs from itself")
	}
}
