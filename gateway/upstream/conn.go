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
// In the ordinary pool a deadline is armed idle plus a quarter ahead and
// re-armed only once less than idle is left: the bound is between idle and
// 1.25×idle, and a connection serving a request every few milliseconds
// updates its deadline once per idle/4 instead of on every request (each
// update is a runtime timer change and several clock reads). fasthttp's
// server uses the same trade for its read deadline.
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
	// The deadlines set on Conn (zero: none).
	rOn, wOn time.Time
}

// clockEpoch anchors monoNow.
var clockEpoch = time.Now()

// monoNow is the time now from the monotonic clock alone: one clock read
// where time.Now makes two (wall and monotonic). Deadlines and their
// comparisons use the monotonic reading only.
func monoNow() time.Time { return clockEpoch.Add(time.Since(clockEpoch)) }

// idleSlack is how far past idle an ordinary-pool deadline is armed, and so
// how long it stays good enough before it is armed again.
func idleSlack(idle time.Duration) time.Duration { return idle / 4 }

func earlier(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

func (c *deadlineConn) setRead(t time.Time) error {
	c.rOn = t
	return c.Conn.SetReadDeadline(t)
}

func (c *deadlineConn) setWrite(t time.Time) error {
	c.wOn = t
	return c.Conn.SetWriteDeadline(t)
}

// armIdle makes sure the deadline on is at least idle from now: it
// returns the deadline to set, or zero when on is still good.
func (c *deadlineConn) armIdle(on, from time.Time, now time.Time) time.Time {
	if !on.IsZero() && on.Sub(now) >= c.idle && (from.IsZero() || !on.After(from)) {
		return time.Time{}
	}
	return earlier(now.Add(c.idle+idleSlack(c.idle)), from)
}

func (c *deadlineConn) Read(p []byte) (int, error) {
	if c.written {
		c.written = false
	} else if c.idle > 0 {
		if t := c.armIdle(c.rOn, c.readBy, monoNow()); !t.IsZero() {
			if err := c.setRead(t); err != nil {
				return 0, err
			}
		}
	}
	n, err := c.Conn.Read(p)
	if n > 0 && c.armed {
		c.armed = false
		if derr := c.setRead(c.readBy); derr != nil && err == nil {
			err = derr
		}
	}
	return n, err
}

func (c *deadlineConn) Write(p []byte) (int, error) {
	if c.idle > 0 && c.readBy.IsZero() && c.writeBy.IsZero() {
		now := monoNow()
		if c.armIdle(c.rOn, time.Time{}, now).IsZero() && c.armIdle(c.wOn, time.Time{}, now).IsZero() {
			c.written = true
			return c.Conn.Write(p)
		}
		// One clock read and one runtime call arm both directions.
		t := now.Add(c.idle + idleSlack(c.idle))
		c.rOn, c.wOn = t, t
		if err := c.Conn.SetDeadline(t); err != nil {
			return 0, err
		}
		c.written = true
		return c.Conn.Write(p)
	}
	d := c.idle
	if d == 0 {
		d = c.firstByte
	}
	if err := c.setWrite(earlier(time.Now().Add(d), c.writeBy)); err != nil {
		return 0, err
	}
	n, err := c.Conn.Write(p)
	if err == nil && c.idle == 0 && !c.armed {
		c.armed = true
		err = c.setRead(earlier(time.Now().Add(c.firstByte), c.readBy))
	}
	return n, err
}

func (c *deadlineConn) SetReadDeadline(t time.Time) error {
	c.readBy = t
	if c.idle == 0 && !c.armed {
		return c.setRead(t)
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
