package upstream

import (
	"errors"
	"net"
	"testing"
	"time"
)

// connPair returns the two ends of a loopback TCP connection.
func connPair(t testing.TB) (client, server net.Conn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// TestDeadlineConnIdleBound checks the ordinary pool's silence bound: a
// peer that answers nothing is cut after idle and at most idle plus the
// slack, and requests in quick succession arm the deadline once.
func TestDeadlineConnIdleBound(t *testing.T) {
	const idle = time.Second
	client, server := connPair(t)
	c := &deadlineConn{Conn: client, idle: idle, baseIdle: idle, firstByte: idle}
	buf := make([]byte, 64)

	// Exchanges in quick succession: the deadline armed by the first
	// write stays on the connection.
	var first time.Time
	for i := 0; i < 5; i++ {
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = c.rOn
			if first.IsZero() || c.wOn != first {
				t.Fatalf("first write armed read %v, write %v", c.rOn, c.wOn)
			}
		} else if c.rOn != first || c.wOn != first {
			t.Fatalf("write %d re-armed the deadline %v after %v", i, c.rOn.Sub(first), time.Since(first))
		}
		if _, err := server.Read(buf); err != nil {
			t.Fatal(err)
		}
		if _, err := server.Write([]byte("pong")); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Read(buf); err != nil {
			t.Fatal(err)
		}
	}

	// Past a quarter of idle the next request re-arms: the response is
	// again due within at least idle.
	time.Sleep(idle/4 + 20*time.Millisecond)
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if !c.rOn.After(first) {
		t.Fatalf("write after %v kept the deadline armed at the start", idle/4)
	}
	if left := time.Until(c.rOn); left < idle {
		t.Fatalf("read deadline %v ahead, want at least %v", left, idle)
	}

	// The server never answers: the read fails with a timeout between idle
	// and idle plus the slack.
	start := time.Now()
	_, err := c.Read(buf)
	took := time.Since(start)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read from a silent peer: %v", err)
	}
	if took < idle-20*time.Millisecond || took > idle+idleSlack(idle)+2*time.Second {
		t.Fatalf("silent peer cut after %v, want %v to %v", took, idle, idle+idleSlack(idle))
	}
}

// TestDeadlineConnCallerDeadlineWins checks that a deadline the caller
// sets (fasthttp's DoTimeout) earlier than the idle bound is the one
// applied.
func TestDeadlineConnCallerDeadlineWins(t *testing.T) {
	const idle = 5 * time.Second
	client, _ := connPair(t)
	c := &deadlineConn{Conn: client, idle: idle, baseIdle: idle, firstByte: idle}
	by := time.Now().Add(150 * time.Millisecond)
	if err := c.SetDeadline(by); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := c.Read(make([]byte, 8))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read: %v", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("caller's deadline ignored: read returned after %v", took)
	}
}
