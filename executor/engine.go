// Package engine connects to the Docker Engine and explains, in words a user
// can act on, why it cannot.
package executor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/docker/docker/client"
)

// UnreachableError says that the Docker Engine did not answer, and how to fix it.
type UnreachableError struct {
	Host string // the engine address that was tried
	Err  error
}

func (e *UnreachableError) Error() string {
	hint := "start the Docker engine (systemctl start docker, or dockerd as root), or point DOCKER_HOST at a running one; if it runs, this user may need to join the docker group (then log in again)"
	if strings.Contains(strings.ToLower(e.Err.Error()), "permission denied") {
		hint = "this user may not use the Docker socket: run as root or add the user to the docker group (then log in again)"
	}
	return fmt.Sprintf("docker engine unreachable at %s: %v; %s", e.Host, e.Err, hint)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// IsUnreachable reports whether err says the engine could not be reached.
func IsUnreachable(err error) bool {
	var u *UnreachableError
	return errors.As(err, &u) || client.IsErrConnectionFailed(err)
}

// Connect returns a client for the engine named by the environment
// (DOCKER_HOST and friends) with API version negotiation, after checking
// that the engine answers within 5 s.
func Connect(ctx context.Context) (*client.Client, error) {
	if v := os.Getenv("DOCKER_API_VERSION"); v != "" {
		// client.FromEnv pins the version and turns negotiation off.
		fmt.Fprintf(os.Stderr, "nmap-mcp: DOCKER_API_VERSION=%s is set; API version negotiation is off\n", v)
	}
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("create docker client: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ping, err := cli.Ping(pctx)
	if err != nil {
		host := cli.DaemonHost()
		_ = cli.Close()
		return nil, &UnreachableError{Host: host, Err: err}
	}
	// Negotiate from this ping rather than a second one on first use.
	cli.NegotiateAPIVersionPing(ping)
	return cli, nil
}

// Client is a connection to the Docker engine, as Connect returns it.
type Client = client.Client
