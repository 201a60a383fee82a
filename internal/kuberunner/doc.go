// Package kuberunner runs each scan as a Kubernetes Job: the Kubernetes
// counterpart of package executor, behind the same executor.Runner seam.
//
// One scan is one Job (backoffLimit 0, activeDeadlineSeconds as a safety
// net, ttlSecondsAfterFinished, our labels) whose pod carries the same
// sandbox as a Docker container: uid 65532 and no capabilities for
// connect and ping scans, root with only NET_RAW for raw-socket scans,
// allowPrivilegeEscalation false, a read-only root filesystem with a
// size-bounded memory /tmp, a seccomp profile, cpu and memory requests
// equal to limits, no service account token, no service links, never the
// host's network. A fenced scan gets an init container that holds
// NET_ADMIN, installs the fence's nftables ruleset in the pod's network
// namespace and exits before nmap starts; the scan container never holds
// NET_ADMIN. Raw scans and the fence need a namespace that enforces Pod
// Security "privileged" ("baseline" does not allow NET_RAW); the
// ValidatingAdmissionPolicy of deploy/kubernetes/admission.yaml narrows it
// to exactly these Jobs and their pods, and its refusals are named.
//
// The pod's log stream (follow) is split back into stdout and stderr (the
// pod's launcher marks each stderr line) and fed to the same collector as
// Docker's, so progress, partial results and records are identical. The
// wall clock counts from the scan container's start; a deadline or a
// cancellation deletes the Job with foreground propagation and keeps what
// was read. API refusals (RBAC, quota, Pod Security admission, a missing
// image, an unschedulable pod) become errors that name the cause.
package kuberunner
