package httpapi

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"
)

// Connections before authentication. A TCP connection costs nothing to
// open and /healthz needs no token, so the listener, not the handlers,
// decides which connections stay:
//
//   - one source address (IPv4 address, IPv6 /64) holds at most perAddr
//     connections that have not carried an authenticated request (every
//     new connection is one): over it, that address's oldest idle such
//     connection is closed, or, if none is idle, the new connection is.
//     Connections that authenticated do not count, so one busy client
//     host (or a reverse proxy) is bounded by max alone;
//   - near the cap (the last reserve slots of max), each new connection
//     first closes the oldest idle keep-alive, one that never
//     authenticated before one that did;
//   - in those last slots only authenticated work waits: a connection that
//     never carried an authenticated request is closed as soon as it goes
//     idle;
//   - at max with nothing idle to close, a new connection waits to be
//     accepted, as before.
//
// Slow or silent clients are bounded by the server's timeouts (5 s for
// headers, 60 s idle), so a busy slot frees itself. Closing an idle
// keep-alive is what its idle timeout would do anyway; HTTP clients open a
// new connection.

// connLimiter owns the accounting of every connection its listeners hand
// out (see listen).
type connLimiter struct {
	max, perAddr, reserve int
	refused               func(reason string)

	mu     sync.Mutex
	open   map[*trackedConn]struct{}
	byAddr map[string]int // open, not authenticated, per address
	room   chan struct{}  // a slot may have freed (buffered, 1)
}

func newConnLimiter(maxConns, perAddr int, refused func(string)) *connLimiter {
	return &connLimiter{max: maxConns, perAddr: min(perAddr, maxConns), reserve: reserveFor(maxConns),
		refused: refused, open: map[*trackedConn]struct{}{}, byAddr: map[string]int{}, room: make(chan struct{}, 1)}
}

// listen wraps ln: its connections are admitted and counted by l.
func (l *connLimiter) listen(ln net.Listener) net.Listener {
	return &limitedListener{Listener: ln, l: l, done: make(chan struct{})}
}

// limitedListener is a listener whose connections pass the caps.
type limitedListener struct {
	net.Listener
	l    *connLimiter
	done chan struct{} // closed with the listener
	once sync.Once
}

// reserveFor is how many of max slots are kept for authenticated work:
// an eighth, at least one.
func reserveFor(maxConns int) int { return max(maxConns/8, 1) }

// trackedConn is one accepted connection.
type trackedConn struct {
	net.Conn
	l         *connLimiter
	key       string
	idle      bool // between requests (http.StateIdle)
	idleSince time.Time
	authed    bool // carried at least one authenticated request
	gone      bool // no longer counted
	closeOnce sync.Once
	closeErr  error
}

// Close releases the connection's slot once.
func (c *trackedConn) Close() error {
	c.closeOnce.Do(func() {
		c.l.forget(c)
		c.closeErr = c.Conn.Close()
	})
	return c.closeErr
}

// addrKey is the unit of the per-address cap: an IPv4 address or an IPv6
// /64 (what one host can easily hold).
func addrKey(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		host, _, err := net.SplitHostPort(a.String())
		if err != nil {
			return a.String()
		}
		return host
	}
	if v4 := ta.IP.To4(); v4 != nil {
		return v4.String()
	}
	return ta.IP.Mask(net.CIDRMask(64, 128)).String() + "/64"
}

// Accept hands out the next connection the caps allow.
func (ll *limitedListener) Accept() (net.Conn, error) {
	for {
		c, err := ll.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if tc := ll.l.admit(c, ll.done); tc != nil {
			return tc, nil
		}
	}
}

// Close closes the listener and wakes an Accept waiting for room.
func (ll *limitedListener) Close() error {
	ll.once.Do(func() { close(ll.done) })
	return ll.Listener.Close()
}

// admit applies the caps to c; nil means c was refused (and closed). It
// waits for room until done is closed.
func (l *connLimiter) admit(c net.Conn, done <-chan struct{}) *trackedConn {
	key := addrKey(c.RemoteAddr())
	l.mu.Lock()
	if l.byAddr[key] >= l.perAddr {
		victim := l.oldestIdleLocked(func(v *trackedConn) bool { return v.key == key && !v.authed })
		if victim == nil {
			l.mu.Unlock()
			l.refused("connections_per_address")
			_ = c.Close()
			return nil
		}
		l.dropLocked(victim)
		l.mu.Unlock()
		_ = victim.Close()
		l.mu.Lock()
	}
	for len(l.open) >= l.max-l.reserve {
		victim := l.oldestIdleLocked(nil)
		if victim == nil {
			if len(l.open) < l.max {
				break
			}
			// Full of busy connections: wait for one to end or go idle.
			l.mu.Unlock()
			select {
			case <-l.room:
			case <-done:
				_ = c.Close()
				return nil
			}
			l.mu.Lock()
			continue
		}
		l.dropLocked(victim)
		l.mu.Unlock()
		_ = victim.Close()
		l.mu.Lock()
	}
	tc := &trackedConn{Conn: c, l: l, key: key}
	l.open[tc] = struct{}{}
	l.byAddr[key]++
	l.mu.Unlock()
	return tc
}

// oldestIdleLocked picks the idle connection to close first: never
// authenticated before authenticated, then the longest idle.
func (l *connLimiter) oldestIdleLocked(match func(*trackedConn) bool) *trackedConn {
	var best *trackedConn
	for c := range l.open {
		if !c.idle || match != nil && !match(c) {
			continue
		}
		if best == nil || best.authed && !c.authed ||
			best.authed == c.authed && c.idleSince.Before(best.idleSince) {
			best = c
		}
	}
	return best
}

// dropLocked stops counting c (it is about to be closed).
func (l *connLimiter) dropLocked(c *trackedConn) {
	if c.gone {
		return
	}
	c.gone = true
	delete(l.open, c)
	if !c.authed {
		l.uncountLocked(c.key)
	}
	select {
	case l.room <- struct{}{}:
	default:
	}
}

func (l *connLimiter) uncountLocked(key string) {
	if l.byAddr[key] <= 1 {
		delete(l.byAddr, key)
	} else {
		l.byAddr[key]--
	}
}

func (l *connLimiter) forget(c *trackedConn) {
	l.mu.Lock()
	l.dropLocked(c)
	l.mu.Unlock()
}

// state follows each connection between requests (http.Server.ConnState).
func (l *connLimiter) state(c net.Conn, st http.ConnState) {
	tc := tracked(c)
	if tc == nil {
		return
	}
	l.mu.Lock()
	switch st {
	case http.StateIdle:
		tc.idle, tc.idleSince = true, time.Now()
		if !tc.authed && !tc.gone && len(l.open) > l.max-l.reserve {
			// In the reserved slots an unauthenticated keep-alive does
			// not wait.
			l.dropLocked(tc)
			l.mu.Unlock()
			_ = tc.Close()
			return
		}
		select {
		case l.room <- struct{}{}:
		default:
		}
	case http.StateActive, http.StateHijacked:
		tc.idle = false
	}
	l.mu.Unlock()
}

// authenticated marks the connection of ctx as having carried an
// authenticated request.
func (l *connLimiter) authenticated(ctx context.Context) {
	tc, ok := ctx.Value(connKey{}).(*trackedConn)
	if !ok || tc.l != l {
		return
	}
	l.mu.Lock()
	if !tc.authed && !tc.gone {
		l.uncountLocked(tc.key)
	}
	tc.authed = true
	l.mu.Unlock()
}

type connKey struct{}

// tracked finds the trackedConn under c (under TLS, c is a *tls.Conn).
func tracked(c net.Conn) *trackedConn {
	for c != nil {
		switch v := c.(type) {
		case *trackedConn:
			return v
		case interface{ NetConn() net.Conn }:
			c = v.NetConn()
		default:
			return nil
		}
	}
	return nil
}
