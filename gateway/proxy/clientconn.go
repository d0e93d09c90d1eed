package proxy

import (
	"net"
	"time"

	"github.com/valyala/fasthttp"
)

// Listener wraps ln so that the proxy keeps limits.read_header_timeout and
// limits.idle_timeout on the connections it accepts itself (see
// clientConn), with fewer deadline updates than fasthttp. Serve the
// Server on it; connections from any other listener get the same limits
// through the server's ConnState hook, at fasthttp's cost.
func (p *Proxy) Listener(ln net.Listener) net.Listener {
	return &clientListener{Listener: ln, t: p.readLimits}
}

type clientListener struct {
	net.Listener
	t *readLimits
}

func (l *clientListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &clientConn{Conn: c, t: l.t}, nil
}

// readLimits are the read deadlines the proxy keeps on client connections
// instead of fasthttp's ReadTimeout and IdleTimeout.
type readLimits struct {
	epoch  time.Time     // clientConn deadlines are durations since epoch
	header time.Duration // limits.read_header_timeout; 0: none
	idle   time.Duration // limits.idle_timeout, else the header timeout (as fasthttp)
}

func newReadLimits(header, idle time.Duration) *readLimits {
	if idle == 0 {
		idle = header
	}
	return &readLimits{epoch: time.Now(), header: header, idle: idle}
}

func (t *readLimits) now() time.Duration { return time.Since(t.epoch) }

// clientConn is a client connection accepted by Listener. fasthttp's
// ReadTimeout and IdleTimeout set the read deadline twice per keep-alive
// request (for the wait, then for the header block), each a runtime timer
// change and several clock reads. clientConn keeps the same limits with
// about one clock read per request:
//
//   - Waiting for a request, the read deadline is armed idle_timeout plus a
//     quarter ahead and kept while at least idle_timeout of it is left: a
//     silent connection is closed after idle_timeout to 1.25×idle_timeout.
//   - Once a request's first bytes are in (ConnState StateActive), the
//     header deadline is armed only if fasthttp reads again because the
//     header block did not come whole; it then must be complete within
//     read_header_timeout (slowloris). A block that came in one read needs
//     no deadline of its own.
//   - A new connection's first request must be in within
//     read_header_timeout of the accept, as with fasthttp.
//   - Deadlines set on the connection (the body timeout from
//     HeaderReceived, the SSE relay's) are set as asked and remembered.
//
// A clientConn starts passive (plain pass-through) and is put to work by
// ConnState's StateNew, which fasthttp calls with the connection it serves:
// one fasthttp wraps again (limits.max_conns_per_ip) stays passive, and the
// hook keeps its limits instead. Until the connection is hijacked only the
// goroutine serving it calls Read and sets its read deadline; before the
// hijack it turns passive again (handOver) and keeps no state.
type clientConn struct {
	net.Conn
	t     *readLimits
	on    time.Duration // read deadline set on Conn, since t.epoch; 0: none
	phase uint8
}

const (
	phasePassive = iota // not managed: everything passes through
	phaseIdle           // waiting for the next request
	phaseHeader         // a request's header is being read; no deadline armed for it yet
	phaseArmed          // the deadline set is the one that applies
)

func (c *clientConn) setRead(d time.Duration) error {
	c.on = d
	var t time.Time
	if d != 0 {
		t = c.t.epoch.Add(d)
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *clientConn) Read(b []byte) (int, error) {
	switch c.phase {
	case phaseIdle:
		if idle := c.t.idle; idle == 0 {
			if c.on != 0 {
				if err := c.setRead(0); err != nil {
					return 0, err
				}
			}
		} else if now := c.t.now(); c.on == 0 || c.on-now < idle || c.on-now > idle+idle/4 {
			// None, too close, or one set for something else (the first
			// request's header, a body) that ends too late.
			if err := c.setRead(now + idle + idle/4); err != nil {
				return 0, err
			}
		}
	case phaseHeader:
		c.phase = phaseArmed
		if h := c.t.header; h > 0 {
			if err := c.setRead(c.t.now() + h); err != nil {
				return 0, err
			}
		}
	}
	return c.Conn.Read(b)
}

func (c *clientConn) SetReadDeadline(t time.Time) error {
	if c.phase == phasePassive {
		return c.Conn.SetReadDeadline(t)
	}
	c.phase = phaseArmed
	c.on = 0
	if !t.IsZero() {
		c.on = max(t.Sub(c.t.epoch), 1)
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *clientConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.Conn.SetWriteDeadline(t)
}

// readState moves a connection's read deadlines along fasthttp's
// connection states (called from connState).
func (p *Proxy) readState(c net.Conn, s fasthttp.ConnState) {
	t := p.readLimits
	cc, ok := c.(*clientConn)
	if !ok {
		// Not from Listener: set the deadlines as fasthttp's ReadTimeout
		// and IdleTimeout would.
		var d time.Duration
		switch s {
		case fasthttp.StateNew, fasthttp.StateActive:
			d = t.header
		case fasthttp.StateIdle:
			d = t.idle
		default:
			return
		}
		if d > 0 {
			_ = c.SetReadDeadline(time.Now().Add(d))
		} else if s == fasthttp.StateActive || s == fasthttp.StateIdle {
			_ = c.SetReadDeadline(time.Time{})
		}
		return
	}
	switch s {
	case fasthttp.StateNew:
		cc.phase = phaseArmed
		if t.header > 0 {
			_ = cc.setRead(t.now() + t.header)
		}
	case fasthttp.StateActive:
		if cc.phase == phaseIdle {
			cc.phase = phaseHeader
		}
	case fasthttp.StateIdle:
		cc.phase = phaseIdle
	}
	// Not StateHijacked: fasthttp reports it after the hijack handler
	// started using the connection; see handOver.
}

// handOver makes c passive before the handler hijacks it: from then on
// other goroutines (the SSE relay's, Close) use it, so it must keep no
// state. It runs in the goroutine serving c, before fasthttp starts the
// hijack handler.
func handOver(c net.Conn) {
	if cc, ok := c.(*clientConn); ok {
		cc.phase = phasePassive
	}
}
