package auth

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"
)

// TestDiscoveryQueueDoesNotPileUp: with the provider hanging (a loopback
// listener that never answers; no provider, no engine, -short), each
// request queued on the discovery lock found the back-off over when its
// turn came (it was counted from the start of an attempt as long as the
// back-off) and made its own attempt: the n-th request waited n attempts,
// and every request piled up behind the last. Now one attempt is made
// and the requests queued behind it fail with its error at once.
func TestDiscoveryQueueDoesNotPileUp(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var held []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c) // never answered
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range held {
			_ = c.Close()
		}
		mu.Unlock()
	})
	v, err := New(Config{Issuer: "http://" + ln.Addr().String(), Audience: "http://127.0.0.1:1/mcp"})
	if err != nil {
		t.Fatal(err)
	}
	const attempt = 500 * time.Millisecond
	v.rediscover, v.discoverTimeout = attempt, attempt
	start := time.Now()
	var wg sync.WaitGroup
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := v.Verify(context.Background(), "a.b.c")
			var ae *Error
			if err == nil || errors.As(err, &ae) {
				t.Errorf("Verify = %v, want the provider's error", err)
			}
		}()
	}
	wg.Wait()
	if took := time.Since(start); took > 5*attempt/2 {
		t.Fatalf("6 requests behind a hanging provider took %s; want about one attempt (%s)", took, attempt)
	}
}
