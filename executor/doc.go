// Package executor runs one container to completion the way os/exec runs a
// process, and never leaks it.
//
// The order is fixed so that no output is lost: create, attach, wait for the
// next exit, start, stream stdout and stderr, inspect, force-remove. A
// wall-clock deadline or a cancelled context kills the container and keeps
// what it printed so far. Removal uses a context that outlives the caller's.
// Sweep removes containers that a crashed server left behind.
package executor
