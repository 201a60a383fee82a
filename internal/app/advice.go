package app

import (
	"errors"
	"fmt"

	"github.com/nmap-mcp/nmap-mcp/executor"
	"github.com/nmap-mcp/nmap-mcp/internal/config"
)

// advice says what to change when a scan hits a limit: the edge knows the
// tool arguments, config keys, flags and variables; the runner does not.
func advice(runner string) func(error) string {
	return func(err error) string { return adviceFor(runner, err) }
}

func adviceFor(runner string, err error) string {
	var (
		te   *executor.TimeoutError
		oe   *executor.OOMError
		pe   *executor.PidsError
		ie   *executor.ImageError
		lost *executor.LostError
	)
	switch {
	case errors.As(err, &te):
		return fmt.Sprintf("; raise timeout_seconds (at most %s), or scan fewer targets or ports", config.Where("sandbox.max_timeout_seconds"))
	case errors.As(err, &oe):
		return "; raise " + config.Where("sandbox.memory") + ", or scan fewer targets"
	case errors.As(err, &pe):
		return "; raise " + config.Where("sandbox.pids")
	case errors.As(err, &ie) && runner == "kubernetes":
		return "; load it on the nodes or push it to their registry (docs/kubernetes.md), and set " + config.Where("kubernetes.image")
	case errors.As(err, &ie):
		return "; build it with: nmap-mcp image build"
	case errors.As(err, &lost):
		return "; its container is removed as soon as the engine answers again; run the scan again then (nmap_version says whether the engine answers)"
	case executor.IsUnreachable(err):
		return "; start the Docker engine (systemctl start docker), or join the docker group, or point DOCKER_HOST at a running engine: the server uses it as soon as it answers, no restart needed"
	}
	return ""
}
