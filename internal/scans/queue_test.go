package scans

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestQueueFIFOAndBounds(t *testing.T) {
	q := NewQueue(1, 2)
	ctx := context.Background()
	rel1, err := q.Acquire(ctx, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var order []int
	positions := map[int][]int{}
	var wg sync.WaitGroup
	for i := 1; i <= 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rel, err := q.Acquire(ctx, 0, func(p int) { mu.Lock(); positions[i] = append(positions[i], p); mu.Unlock() })
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			rel()
		}()
		// Let waiter i take its place before the next one.
		for {
			if _, w := q.Stats(); w == i {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	_, err = q.Acquire(ctx, 0, nil)
	var full *QueueFullError
	if !errors.As(err, &full) || !errors.Is(err, ErrQueueFull) || full.Waiting != 2 {
		t.Fatalf("third waiter: %v", err)
	}
	rel1()
	wg.Wait()
	if len(order) != 2 || order[0] != 1 || order[1] != 2 {
		t.Fatalf("order %v", order)
	}
	if got := positions[2]; len(got) < 2 || got[0] != 2 || got[len(got)-1] != 1 {
		t.Fatalf("waiter 2 positions %v; want 2 then 1", got)
	}
	if r, w := q.Stats(); r != 0 || w != 0 {
		t.Fatalf("stats %d %d", r, w)
	}
}

func TestQueueTimeoutAndCancel(t *testing.T) {
	q := NewQueue(1, 5)
	rel, _ := q.Acquire(context.Background(), 0, nil)
	defer rel()
	_, err := q.Acquire(context.Background(), 30*time.Millisecond, nil)
	var qt *QueueTimeoutError
	if !errors.As(err, &qt) {
		t.Fatalf("timeout: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(20 * time.Millisecond); cancel() }()
	if _, err := q.Acquire(ctx, 0, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancel: %v", err)
	}
	if _, w := q.Stats(); w != 0 {
		t.Fatalf("%d waiters left", w)
	}
}
