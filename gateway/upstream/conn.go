package upstream

import (
	"errors"
	"net"
	"time"
)

// DialError is a failure to open a connection to a target: nothing of the
// request was sent, so an idempotent request may go to another target.
type DialError struct {
	Target string
	Err    error
}

func (e *DialError) Error() string { return "dial " + e.Target + ": " + e.Err.Error() }
func (e *DialError) Unwrap() error { return e.Err }

// Timeout reports whether the dial timed out.
func (e *DialError) Timeout() bool {
	var ne net.Error
	return errors.As(e.Err, &ne) && ne.Timeout()
}

// deadlineConn adds deadlines that bound silence rather than a whole
// response, because fasthttp's ReadTimeout would cut streamed bodies:
//
//   - idle > 0 (ordinary pool): every Read and Write must make progress
//     within idle; a slow-but-moving large body is never cut.
//   - idle == 0 (stream pool): after a request is written, the first
//     response byte must arrive within firstByte; after that the body may be
//     silent for as long as the stream lives (SSE).
//
// Deadlines fasthttp sets itself (a caller's DoTimeout) still apply: the
// earlier of the two wins.
type deadlineConn struct {
	net.Conn
	idle      time.Duration
	baseIdle  time.Duration // idle as configured, restored after a long-lived response
	firstByte time.Duration
	armed     bool
	// written (idle > 0): the last Write also armed the read deadline, so
	// the first Read after it need not: the response is due within idle
	// of the request being sent.
	written bool
	readBy  time.Time // from fasthttp
	writeBy time.Time // from fasthttp
}

func earlier(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

func (c *deadlineConn) Read(p []byte) (int, error) {
	if c.written {
		c.written = false
	} else if c.idle > 0 {
		if err := c.Conn.SetReadDeadline(earlier(time.Now().Add(c.idle), c.readBy)); err != nil {
			return 0, err
		}
	}
	n, err := c.Conn.Read(p)
	if n > 0 && c.armed {
		c.armed = false
		if derr := c.Conn.SetReadDeadline(c.readBy); derr != nil && err == nil {
			err = derr
		}
	}
	return n, err
}

func (c *deadlineConn) Write(p []byte) (int, error) {
	if c.idle > 0 && c.readBy.IsZero() && c.writeBy.IsZero() {
		// One clock read and one runtime call arm both directions.
		if err := c.Conn.SetDeadline(time.Now().Add(c.idle)); err != nil {
			return 0, err
		}
		c.written = true
		return c.Conn.Write(p)
	}
	d := c.idle
	if d == 0 {
		d = c.firstByte
	}
	if err := c.Conn.SetWriteDeadline(earlier(time.Now().Add(d), c.writeBy)); err != nil {
		return 0, err
	}
	n, err := c.Conn.Write(p)
	if err == nil && c.idle == 0 && !c.armed {
		c.armed = true
		err = c.Conn.SetReadDeadline(earlier(time.Now().Add(c.firstByte), c.readBy))
	}
	return n, err
}

func (c *deadlineConn) SetReadDeadline(t time.Time) error {
	c.readBy = t
	if c.idle == 0 && !c.armed {
		return c.Conn.SetReadDeadline(t)
	}
	return nil
}

func (c *deadlineConn) SetWriteDeadline(t time.Time) error {
	c.writeBy = t
	return nil
}

func (c *deadlineConn) SetDeadline(t time.Time) error {
	c.writeBy = t
	return c.SetReadDeadline(t)
}
