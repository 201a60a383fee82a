package executor

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// No engine listens on this socket, so Connect must explain what to do.
func TestConnectUnreachable(t *testing.T) {
	t.Setenv("DOCKER_HOST", "unix://"+t.TempDir()+"/no-docker.sock")
	_, err := Connect(context.Background())
	var u *UnreachableError
	if !errors.As(err, &u) || !IsUnreachable(err) {
		t.Fatalf("err = %v; want *UnreachableError", err)
	}
	if !strings.Contains(err.Error(), "DOCKER_HOST") || !strings.Contains(err.Error(), "no-docker.sock") {
		t.Fatalf("message %q does not say where and what to do", err)
	}
}

func TestPermissionHint(t *testing.T) {
	err := &UnreachableError{Host: "unix:///var/run/docker.sock", Err: errors.New("dial unix /var/run/docker.sock: connect: permission denied")}
	if !strings.Contains(err.Error(), "docker group") {
		t.Fatalf("message %q lacks the socket permission hint", err)
	}
}
