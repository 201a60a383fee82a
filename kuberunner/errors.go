package kuberunner

import (
	"fmt"
	"regexp"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// RefusedError says that the cluster would not run a scan's pod, and why:
// Cause is "pod-security", "quota", "forbidden", "unschedulable" or the
// kubelet's reason.
type RefusedError struct {
	Cause     string
	Namespace string
	// Level is the Pod Security level that refused it (e.g.
	// "restricted:latest"), when Cause is "pod-security".
	Level   string
	Message string
}

func (e *RefusedError) Error() string {
	switch e.Cause {
	case "pod-security":
		return fmt.Sprintf("kubernetes refused the scan's pod: namespace %s enforces Pod Security %q, which forbids it (%s); "+
			"connect and ping scans meet \"restricted\", SYN/UDP/OS scans need \"baseline\" (NET_RAW), and a fenced scan's init container needs \"privileged\" (NET_ADMIN)",
			e.Namespace, e.Level, e.Message)
	case "quota":
		return fmt.Sprintf("kubernetes refused the scan's pod: a resource quota of namespace %s is exhausted (%s)", e.Namespace, e.Message)
	case "forbidden":
		return fmt.Sprintf("kubernetes refused the request in namespace %s: %s; give the runner's account the Role in deploy/kubernetes/rbac.yaml", e.Namespace, e.Message)
	}
	return fmt.Sprintf("kubernetes could not run the scan's pod in namespace %s (%s): %s", e.Namespace, e.Cause, e.Message)
}

// ImagePinError says that the pod ran another image than the configured pin;
// its result is not accepted.
type ImagePinError struct{ Want, Got string }

func (e *ImagePinError) Error() string {
	return fmt.Sprintf("the scan's pod ran image %s, not the configured pin %s (kubernetes.image); the result is not accepted", e.Got, e.Want)
}

var psaLevel = regexp.MustCompile(`violates PodSecurity "([^"]+)"`)

// refused turns the message of a refused pod creation into an error.
func refused(namespace, msg string) error {
	msg = strings.TrimPrefix(msg, "Error creating: ")
	if m := psaLevel.FindStringSubmatch(msg); m != nil {
		detail := msg
		if i := strings.Index(msg, m[0]); i >= 0 {
			detail = strings.TrimLeft(msg[i+len(m[0]):], ": ")
		}
		return &RefusedError{Cause: "pod-security", Namespace: namespace, Level: m[1], Message: detail}
	}
	if strings.Contains(msg, "exceeded quota") {
		return &RefusedError{Cause: "quota", Namespace: namespace, Message: msg}
	}
	if strings.Contains(msg, "forbidden") {
		return &RefusedError{Cause: "forbidden", Namespace: namespace, Message: msg}
	}
	return &RefusedError{Cause: "pod creation failed", Namespace: namespace, Message: msg}
}

// apiErr names what the runner was doing when the API said no.
func (r *Runner) apiErr(what string, err error) error {
	switch {
	case apierrors.IsForbidden(err):
		return fmt.Errorf("%s: %w", what, refused(r.cfg.Namespace, err.Error()))
	case apierrors.IsNotFound(err):
		return fmt.Errorf("%s: namespace %s or the resource does not exist (kubernetes.namespace): %w", what, r.cfg.Namespace, err)
	case apierrors.IsUnauthorized(err):
		return fmt.Errorf("%s: the Kubernetes API did not accept the runner's credentials (kubernetes.kubeconfig): %w", what, err)
	}
	return fmt.Errorf("%s in namespace %s: %w", what, r.cfg.Namespace, err)
}
