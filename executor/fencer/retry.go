package fencer

import (
	"context"
	"fmt"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
)

// Backoff of RemoveRetrying: the first retry comes after RetryFirst, each
// later one after twice the wait before it, up to RetryMax.
const (
	RetryFirst = 100 * time.Millisecond
	RetryMax   = 2 * time.Second
)

// RemoveRetrying force-removes container id, retrying with backoff while
// the engine cannot be reached or refuses (an engine restart leaves the
// container of a lost scan behind; removal works once the engine answers
// again), until the container is gone or stop is closed, after which it
// tries once more and gives up. Each attempt is bounded by attempt.
// onRetry, when set, is told of each failed attempt. It returns nil when
// the container is gone (or never existed), else the last error.
func RemoveRetrying(engine Containers, id string, stop <-chan struct{}, attempt time.Duration, onRetry func(n int, err error)) error {
	wait := RetryFirst
	for n := 1; ; n++ {
		ctx, cancel := context.WithTimeout(context.Background(), attempt)
		err := engine.ContainerRemove(ctx, id, container.RemoveOptions{Force: true, RemoveVolumes: true})
		cancel()
		if err == nil || cerrdefs.IsNotFound(err) {
			return nil
		}
		select {
		case <-stop:
			return fmt.Errorf("remove container %.12s (gave up after %d attempts): %w", id, n, err)
		default:
		}
		if onRetry != nil {
			onRetry(n, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-stop:
			t.Stop()
		}
		wait = min(2*wait, RetryMax)
	}
}
