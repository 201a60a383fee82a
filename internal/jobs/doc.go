// Package jobs runs scans on behalf of callers: a bounded first-in,
// first-out queue in front of a limit on concurrent scans, live status of
// running scans (progress, hosts finished so far), scans that run on after
// the call that started them returned (wait: false), and cancellation by id.
package jobs
