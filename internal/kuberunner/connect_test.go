package kuberunner_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nmap-mcp/nmap-mcp/internal/kuberunner"
)

// An API server that does not answer at start (nothing listens on the
// kubeconfig's address, 127.0.0.1:1) gives an error that names the
// address, where it came from and what to set. No cluster needed.
func TestConnectUnreachableAPI(t *testing.T) {
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kc, []byte(`apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}
users:
- name: u
  user: {token: x}
contexts:
- name: c
  context: {cluster: c, user: u}
current-context: c
`), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := kuberunner.Connect(ctx, kc, nil)
	if err == nil || !strings.Contains(err.Error(), "https://127.0.0.1:1") || !strings.Contains(err.Error(), "did not answer") ||
		!strings.Contains(err.Error(), kc) || !strings.Contains(err.Error(), "kubernetes.kubeconfig") {
		t.Fatalf("err %v", err)
	}
	t.Log(err)
}
