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
//
// An API server that stops answering mid-scan (a restart) does not end
// the scan at once: the pod runs on, the pod's watch is opened again with
// backoff and the log stream resumes after the bytes already read, so a
// scan whose Job survived finishes with its whole output. After
// Config.APIGrace the scan ends as *executor.LostError with the output
// read so far, and the Job's deletion is retried until the API answers or
// Close gives up (naming the Jobs; their TTL removes them).
//
// The runner talks to the API through API, a handful of calls over two
// REST clients (core/v1, batch/v1) with a scheme of those types only, not
// client-go's whole clientset: a server that runs scans on Docker does not
// carry every API group's types (see scripts/bench-binary.sh).
package kuberunner
