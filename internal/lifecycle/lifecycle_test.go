package lifecycle

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

// Unit test (no engine): Pending follows Add and Gone, Wait ends the
// retries and waits for the background work, and gives up at ctx's end.
func TestTracker(t *testing.T) {
	tr := New()
	tr.Add("b")
	tr.Add("a")
	if got := tr.Pending(); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("pending %v", got)
	}
	tr.Go(func() {
		<-tr.Stopping() // a removal retrying until the runner closes
		tr.Abandon("a")
		tr.Gone("b")
	})
	if err := tr.Wait(context.Background(), "removals"); err != nil {
		t.Fatal(err)
	}
	if got := tr.Pending(); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("pending after wait %v", got)
	}
	if got := tr.Abandoned(); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("abandoned %v", got)
	}

	stuck := New()
	block := make(chan struct{})
	defer close(block)
	stuck.Add("x")
	stuck.Go(func() { <-block })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := stuck.Wait(ctx, "removals"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want the context's", err)
	}
}
