package config

import (
	"strings"
	"testing"
)

// The approval section is read strictly and compiled by Resolve; its
// absence asks for nothing.
func TestApprovalSection(t *testing.T) {
	c, err := Load(write(t, "approval:\n  timeout_seconds: 60\n  rules:\n    - name: big-udp\n      scan_types: [udp]\n      min_addresses: 256\n      second_person: true\n"), true)
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.Resolve()
	if err != nil {
		t.Fatal(err)
	}
	if r.Approval.Empty() || r.Approval.Limits().Timeout.Seconds() != 60 || !strings.Contains(r.Approval.Describe(), "big-udp: scan type udp, and at least 256 addresses; a second person must approve") {
		t.Fatalf("approval: %s", r.Approval.Describe())
	}
	if r, err := Default().Resolve(); err != nil || !r.Approval.Empty() {
		t.Fatalf("default approval: %v %v", r.Approval.Describe(), err)
	}
	for yaml, want := range map[string]string{
		"approval:\n  rules:\n    - name: x\n      scan_type: [udp]\n":              "field scan_type not found",
		"approval:\n  rules:\n    - name: x\n":                                      `approval.rules[0].name "x": gives no condition`,
		"approval:\n  timeout_seconds: -5\n":                                        `approval.timeout_seconds "-5"`,
		"http:\n  tokens:\n    - name: a\n      sha256: x\n      approvers: true\n": "field approvers not found",
	} {
		if _, err := Load(write(t, yaml), true); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", yaml, err, want)
		}
	}
}
