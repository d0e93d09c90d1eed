package proxy

import (
	"net"
	"testing"
	"time"
)

// deadlineCounter counts the write deadlines set on a connection.
type deadlineCounter struct {
	net.Conn
	sets int
	last time.Time
}

func (c *deadlineCounter) SetWriteDeadline(t time.Time) error {
	c.sets++
	c.last = t
	return nil
}

func TestWriteDeadlinesReArm(t *testing.T) {
	const d = 10 * time.Second
	w := newWriteDeadlines()
	a, b := &deadlineCounter{}, &deadlineCounter{}
	const idA, idB = 7, 7 + writeDeadlineSlots // the same slot
	now := time.Now()
	steps := []struct {
		name     string
		id       uint64
		conn     *deadlineCounter
		at       time.Duration
		wantSets int
	}{
		{"first response arms", idA, a, 0, 1},
		{"next response soon after keeps it", idA, a, time.Millisecond, 1},
		{"still more than d left", idA, a, d/4 - time.Second, 1},
		{"another connection in the slot arms its own", idB, b, d/4 - time.Second, 1},
		{"the first one no longer trusts the slot", idA, a, d / 4, 2},
		{"less than d left re-arms", idA, a, d/4 + d/4 + 10*time.Millisecond, 3},
	}
	for _, s := range steps {
		at := now.Add(s.at)
		if err := w.arm(s.id, s.conn, at, d); err != nil {
			t.Fatal(err)
		}
		if s.conn.sets != s.wantSets {
			t.Fatalf("%s: %d deadlines set, want %d", s.name, s.conn.sets, s.wantSets)
		}
		if left := s.conn.last.Sub(at); left < d {
			t.Fatalf("%s: deadline %v ahead, want at least %v", s.name, left, d)
		}
	}
	w.forget(idA)
	if err := w.arm(idA, a, now.Add(d/4+d/4+20*time.Millisecond), d); err != nil {
		t.Fatal(err)
	}
	if a.sets != 4 {
		t.Fatalf("after forget: %d deadlines set, want 4", a.sets)
	}
}

// TestReadLimits drives readLimits through each phase on real loopback
// connections: a connection is cut (its blocked read fails) no earlier than
// its phase's limit and within two sweeps after it, a handled one is never
// cut, a body deadline fasthttp set is lifted when the connection idles,
// and the sweep goroutine ends with the last connection.
func TestReadLimits(t *testing.T) {
	const header, idle = 150 * time.Millisecond, 300 * time.Millisecond
	l := newReadLimits(header, idle)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// open returns the server side of a new connection, watched from now.
	open := func(t *testing.T) net.Conn {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		l.opened(s)
		t.Cleanup(func() { l.closed(s); s.Close() })
		return s
	}
	// cutAfter reads from s until the cut and returns how long it took
	// (capped at wait).
	cutAfter := func(s net.Conn, wait time.Duration) time.Duration {
		start := time.Now()
		done := make(chan time.Duration, 1)
		go func() {
			var b [1]byte
			_, _ = s.Read(b[:])
			done <- time.Since(start)
		}()
		select {
		case d := <-done:
			return d
		case <-time.After(wait):
			return wait
		}
	}
	late := 2*l.every + 100*time.Millisecond // two sweeps and a busy box
	for _, tc := range []struct {
		name  string
		setup func(s net.Conn)
		limit time.Duration // 0: never cut
	}{
		{"first header", func(net.Conn) {}, header},
		{"first header after its first byte", func(s net.Conn) { l.active(s) }, header},
		{"idle", func(s net.Conn) { l.active(s); l.handled(s, false); l.idled(s) }, idle},
		{"next header", func(s net.Conn) { l.handled(s, false); l.idled(s); l.active(s) }, header},
		{"handled", func(s net.Conn) { l.active(s); l.handled(s, false) }, 0},
		{"body deadline lifted", func(s net.Conn) {
			l.active(s)
			_ = s.SetReadDeadline(time.Now().Add(20 * time.Millisecond)) // as fasthttp's headerReceived would
			l.handled(s, true)
			l.idled(s)
		}, idle},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			tc.setup(s)
			if tc.limit == 0 {
				if d := cutAfter(s, idle+late); d < idle+late {
					t.Errorf("a handled connection was cut after %v", d)
				}
				return
			}
			if d := cutAfter(s, tc.limit+late+time.Second); d < tc.limit || d > tc.limit+late {
				t.Errorf("cut after %v, want %v to %v", d, tc.limit, tc.limit+late)
			}
		})
	}
	if n := l.n.Load(); n != 0 {
		t.Errorf("%d connections still watched", n)
	}
	for end := time.Now().Add(time.Second); l.running.Load(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("the sweep goes on with no connection left")
		}
	}
}

// BenchmarkReadLimits prices, per keep-alive request on one of 64 loopback
// connections, fasthttp's two read deadlines (idle, then header) against
// readLimits' three phase changes.
func BenchmarkReadLimits(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	var conns []net.Conn
	for range 64 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		defer s.Close()
		conns = append(conns, s)
	}
	b.Run("deadlines", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			c := conns[i&63]
			i++
			_ = c.SetReadDeadline(time.Now().Add(120 * time.Second))
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		}
	})
	b.Run("readLimits", func(b *testing.B) {
		l := newReadLimits(10*time.Second, 120*time.Second)
		for _, c := range conns {
			l.opened(c)
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			c := conns[i&63]
			i++
			l.active(c)
			l.handled(c, false)
			l.idled(c)
		}
		b.StopTimer()
		for _, c := range conns {
			l.closed(c)
		}
	})
}

// TestReadLimitsOverflow checks the watches kept outside the slot table: a
// connection other than a *net.TCPConn, and one whose slot is taken, are
// found, swept and forgotten like the others.
func TestReadLimitsOverflow(t *testing.T) {
	l := newReadLimits(100*time.Millisecond, 100*time.Millisecond)

	// A pipe: no slot.
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	l.opened(a)
	if l.watch(a) == nil || l.nOver.Load() != 1 {
		t.Fatalf("pipe not watched in overflow (%d there)", l.nOver.Load())
	}
	start := time.Now()
	var buf [1]byte
	if _, err := a.Read(buf[:]); err == nil || time.Since(start) < 100*time.Millisecond {
		t.Errorf("pipe read ended after %v with %v, want a cut after 100ms", time.Since(start), err)
	}
	l.closed(a)

	// A TCP connection whose slot another connection holds.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	holder := &connWatch{conn: b}
	slot, _ := l.slot(s)
	slot.Store(holder)
	l.opened(s)
	if w := l.watch(s); w == nil || w == holder || l.nOver.Load() != 1 {
		t.Fatalf("connection with a taken slot: watch %p (holder %p), %d in overflow", w, holder, l.nOver.Load())
	}
	l.handled(s, false)
	l.closed(s)
	if slot.Load() != holder || l.nOver.Load() != 0 || l.n.Load() != 0 {
		t.Errorf("after close: slot holder kept %v, %d in overflow, %d watched", slot.Load() == holder, l.nOver.Load(), l.n.Load())
	}
	slot.Store(nil)
	for end := time.Now().Add(time.Second); l.running.Load(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("the sweep goes on with no connection left")
		}
	}
}

// TestLimitedReaderIdleFromRead: the body's idle bound counts from the
// moment the gateway asks for more, not from the last bytes: a client that
// kept sending while the gateway was away (writing upstream) is not cut.
func TestLimitedReaderIdleFromRead(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	const idle = 100 * time.Millisecond
	l := limitedReader{r: server, max: 1 << 20, conn: server, idle: idle, clock: newWriteDeadlines()}
	b := make([]byte, 1)
	client.Write([]byte("a"))
	if _, err := l.Read(b); err != nil {
		t.Fatal(err)
	}
	client.Write([]byte("b")) // the client keeps sending...
	time.Sleep(3 * idle)      // ...while the gateway writes to a slow upstream
	if n, err := l.Read(b); n != 1 || err != nil {
		t.Fatalf("read after the gateway's own pause: %d, %v; want the byte the client sent", n, err)
	}
	// Now the client is silent while the gateway waits: cut after idle to
	// 1.25×idle.
	if _, err := l.Read(b); err == nil {
		t.Fatal("a read waiting for a silent client succeeded")
	}
}
