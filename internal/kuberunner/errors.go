package kuberunner

import (
	"fmt"
	"regexp"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// RefusedError says that the cluster would not run a scan's pod, and why:
// Cause is "pod-security", "admission-policy", "quota", "forbidden",
// "unschedulable" or the kubelet's reason.
type RefusedError struct {
	Cause     string
	Namespace string
	// Level is the Pod Security level that refused it (e.g.
	// "restricted:latest"), when Cause is "pod-security".
	Level string
	// Policy is the ValidatingAdmissionPolicy (and Binding its binding)
	// that refused it, when Cause is "admission-policy".
	Policy, Binding string
	Message         string
}

func (e *RefusedError) Error() string {
	switch e.Cause {
	case "pod-security":
		return fmt.Sprintf("kubernetes refused the scan's pod: namespace %s enforces Pod Security %q, which forbids it (%s); "+
			"unfenced connect and ping scans meet \"restricted\"; SYN/UDP/OS scans (NET_RAW, which \"baseline\" does not allow) "+
			"and a fenced scan's init container (NET_ADMIN) need \"privileged\", with deploy/kubernetes/admission.yaml to narrow it",
			e.Namespace, e.Level, e.Message)
	case "admission-policy":
		return fmt.Sprintf("kubernetes refused the scan in namespace %s: ValidatingAdmissionPolicy %s (binding %s) denied it: %s; "+
			"the policy admits only the runner's own Jobs: check that its image is kubernetes.image (deploy/kubernetes/admission.yaml)",
			e.Namespace, e.Policy, e.Binding, e.Message)
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

var (
	psaLevel = regexp.MustCompile(`violates PodSecurity "([^"]+)"`)
	// The API server's words for a ValidatingAdmissionPolicy's denial.
	vapDenied = regexp.MustCompile(`ValidatingAdmissionPolicy '([^']+)'(?: with binding '([^']+)')? denied request: `)
)

// refused turns the message of a refused creation (the Job's, or its pod's
// in a FailedCreate event) into an error.
func refused(namespace, msg string) error {
	msg = strings.TrimPrefix(msg, "Error creating: ")
	if m := vapDenied.FindStringSubmatchIndex(msg); m != nil {
		return &RefusedError{Cause: "admission-policy", Namespace: namespace, Policy: msg[m[2]:m[3]],
			Binding: substr(msg, m[4], m[5]), Message: msg[m[1]:]}
	}
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

// substr is s[i:j], or "" for an unmatched group (-1).
func substr(s string, i, j int) string {
	if i < 0 {
		return ""
	}
	return s[i:j]
}

// apiErr names what the runner was doing when the API said no.
func (r *Runner) apiErr(what string, err error) error {
	switch {
	case apierrors.IsForbidden(err), vapDenied.MatchString(err.Error()):
		return fmt.Errorf("%s: %w", what, refused(r.cfg.Namespace, err.Error()))
	case apierrors.IsNotFound(err):
		return fmt.Errorf("%s: namespace %s or the resource does not exist (kubernetes.namespace): %w", what, r.cfg.Namespace, err)
	case apierrors.IsUnauthorized(err):
		return fmt.Errorf("%s: the Kubernetes API did not accept the runner's credentials (kubernetes.kubeconfig): %w", what, err)
	case transient(err):
		return fmt.Errorf("%s: the Kubernetes API server did not answer: %w; scans run again as soon as it does (is it up? kubernetes.kubeconfig names it)", what, err)
	}
	return fmt.Errorf("%s in namespace %s: %w", what, r.cfg.Namespace, err)
}
