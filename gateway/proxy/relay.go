package proxy

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/wasmgate/wasmgate/gateway/chain"
	"github.com/wasmgate/wasmgate/gateway/event"
	"github.com/wasmgate/wasmgate/gateway/sse"
)

// The SSE relay. Two goroutines serve a stream: the reader parses upstream
// events, runs each through the chain and queues it; fasthttp's connection
// goroutine pulls queued events through relayState.Read and writes each as
// one flushed chunk (no stream-writer goroutine, pipe or extra buffer per
// stream).
//
//   - Backpressure: the queue holds at most sse.pending_events events; when
//     it is full the reader stops reading, so a slow client slows the
//     upstream read instead of growing memory.
//   - Stalled clients: every flush gets a fresh write deadline of
//     sse.write_stall_timeout (never an absolute deadline on the stream),
//     so a client that takes nothing for that long is dropped.
//   - Heartbeats: after sse.heartbeat without output a comment goes out,
//     which also detects a vanished client on an idle stream.
//   - A client that goes away makes the writer fail; closing the upstream
//     body then interrupts the reader and releases the upstream connection.
//   - An upstream that breaks mid-stream closes the client connection
//     without the terminating chunk, so the client sees the break.

var eventBufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

var errUpstreamBroke = errors.New("upstream stream broke")

type relayState struct {
	x      *exchange
	q      chan *[]byte
	stop   chan struct{}
	done   chan struct{}
	err    error       // set by the reader before closing q
	eof    atomic.Bool // the upstream body ended cleanly
	lastID string      // Last-Event-ID for gateway replay

	// Used by Read and Close only (the connection goroutine).
	cur     *[]byte
	pending []byte
	hb      *time.Timer
	ended   bool // no more output: Read returns io.EOF
	qClosed bool // the reader closed q (seen by Read)
	tailed  bool // the chain got its final call
	closed  bool
}

var heartbeatComment = sse.AppendComment(nil, "")

// relay streams a text/event-stream response to the client event by event.
func (x *exchange) relay(ctx *fasthttp.RequestCtx, replayFrom string) {
	p := x.p
	p.streams.Add(1)
	p.m.sseOpen.Inc()
	rs := &relayState{
		x:      x,
		q:      make(chan *[]byte, max(p.settings().sse.PendingEvents, 1)),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
		lastID: replayFrom,
	}
	if x.session != "" {
		x.streamKey = x.rt.name + " " + string(ctx.Path())
	}
	if hb := p.settings().sse.Heartbeat.D(); hb > 0 {
		rs.hb = time.NewTimer(hb)
	}
	go x.relayRead(rs)
	// Headers go out at once: a stream may stay silent for long.
	ctx.Response.ImmediateHeaderFlush = true
	ctx.Response.SetBodyStream(rs, -1)
}

// Read hands the client the next queued event (or a heartbeat) and arms
// the stall deadline for the write that follows. It blocks while nothing
// is queued, which is what keeps an idle stream open.
func (rs *relayState) Read(b []byte) (int, error) {
	x := rs.x
	for len(rs.pending) == 0 {
		rs.release()
		if rs.ended {
			return 0, io.EOF
		}
		if rs.qClosed {
			if err := rs.upstreamEnded(); err != nil {
				return 0, err
			}
			continue
		}
		var hbC <-chan time.Time
		if rs.hb != nil {
			hbC = rs.hb.C
		}
		select {
		case e, ok := <-rs.q:
			if !ok {
				rs.qClosed = true
				continue
			}
			rs.cur, rs.pending = e, *e
		case <-hbC:
			rs.pending = heartbeatComment
			x.rt.m.sseHeartbeat.Inc()
		case <-x.p.closing:
			rs.ended = true
			rs.pending = rs.finalChain()
		}
		if rs.hb != nil {
			rs.hb.Reset(x.p.settings().sse.Heartbeat.D())
		}
	}
	if d := x.p.settings().sse.WriteStallTimeout.D(); d > 0 {
		_ = x.conn.SetWriteDeadline(time.Now().Add(d))
	}
	n := copy(b, rs.pending)
	rs.pending = rs.pending[n:]
	// Events already queued go out in the same chunk: one write and flush
	// for a burst instead of one per event.
	for len(rs.pending) == 0 && n < len(b) && rs.cur != nil && !rs.qClosed {
		select {
		case e, ok := <-rs.q:
			if !ok {
				rs.qClosed = true
				continue
			}
			rs.release()
			rs.cur, rs.pending = e, *e
			m := copy(b[n:], rs.pending)
			n += m
			rs.pending = rs.pending[m:]
		default:
			return n, nil
		}
	}
	return n, nil
}

// release returns the event just sent to the pool.
func (rs *relayState) release() {
	if rs.cur != nil {
		putBuf(rs.cur)
		rs.cur = nil
		rs.x.rt.m.sseRelayed.Inc()
	}
}

// upstreamEnded handles the end of the queue: a broken upstream returns an
// error (fasthttp then leaves the chunked body unterminated and closes, so
// the client sees the break); a clean end sends the chain's tail, if any.
func (rs *relayState) upstreamEnded() error {
	x := rs.x
	rs.ended = true
	if rs.err != nil && !errors.Is(rs.err, sse.ErrEventTooLarge) {
		x.p.log.Warn("upstream SSE stream broke", "route", x.rt.name, "request_id", string(x.reqID), "err", rs.err)
		return errUpstreamBroke
	}
	rs.pending = rs.finalChain()
	return nil
}

// finalChain makes the chain's last call (endOfStream) once the reader is
// done, and returns what it wants sent.
func (rs *relayState) finalChain() []byte {
	if rs.tailed || rs.x.stream == nil {
		rs.tailed = true
		return nil
	}
	rs.stopReader()
	rs.tailed = true
	var tail []byte
	rs.x.stream.ResponseBody(&tail, true)
	return tail
}

// stopReader ends the reader goroutine and waits for it.
func (rs *relayState) stopReader() {
	select {
	case <-rs.stop:
	default:
		close(rs.stop)
	}
	// Wake a reader blocked on the upstream; finish releases the
	// connection (back to the pool only if the body ended cleanly).
	if rs.x.lease != nil && !rs.eof.Load() {
		rs.x.lease.Interrupt()
	}
	<-rs.done
	for b := range rs.q {
		putBuf(b)
	}
}

// Close is called by fasthttp when the response ends, cleanly or not.
func (rs *relayState) Close() error {
	if rs.closed {
		return nil
	}
	rs.closed = true
	x, p := rs.x, rs.x.p
	rs.stopReader()
	if !rs.tailed && x.stream != nil {
		rs.tailed = true
		var tail []byte
		x.stream.ResponseBody(&tail, true)
	}
	if rs.cur != nil {
		putBuf(rs.cur)
		rs.cur = nil
	}
	if rs.hb != nil {
		rs.hb.Stop()
	}
	x.finish()
	p.m.sseOpen.Dec()
	p.streams.Done()
	return nil
}

func putBuf(b *[]byte) {
	if cap(*b) > 64<<10 {
		return
	}
	*b = (*b)[:0]
	eventBufPool.Put(b)
}

// relayRead runs in its own goroutine: upstream → parser → chain → queue.
func (x *exchange) relayRead(rs *relayState) {
	defer close(rs.done)
	defer close(rs.q)
	p := x.p
	parser, _ := p.parsers.Get().(*sse.Parser)
	if parser == nil {
		// A small initial buffer (it grows for a large event and shrinks
		// back): the upstream connection's reader already buffers.
		parser = sse.NewParserSize(x.body, p.settings().sse.MaxEventBytes.N(), 1<<10)
	} else {
		parser.Reset(x.body)
	}
	defer func() {
		parser.Reset(nil)
		p.parsers.Put(parser)
	}()
	if rs.lastID != "" && p.replayer != nil && x.session != "" {
		if !x.replay(rs) {
			return
		}
	}
	for {
		ev, err := parser.Next()
		if err != nil {
			if err == io.EOF {
				rs.eof.Store(true)
				x.upEOF = true
			} else {
				select {
				case <-rs.stop: // the writer ended the stream; not an upstream fault
				default:
					rs.err = err
					if errors.Is(err, sse.ErrEventTooLarge) {
						p.log.Warn("SSE event over sse.max_event_bytes; stream ended", "route", x.rt.name, "request_id", string(x.reqID), "limit", p.settings().sse.MaxEventBytes)
					} else {
						x.bodyErr = err
					}
				}
			}
			return
		}
		b := eventBufPool.Get().(*[]byte)
		*b = append((*b)[:0], ev.Raw...)
		if ev.Dispatchable() {
			if !x.relayEvent(ev, b) {
				putBuf(b)
				continue
			}
		}
		select {
		case rs.q <- b:
		case <-rs.stop:
			putBuf(b)
			return
		}
	}
}

// relayEvent runs one dispatchable event through the chain and records it.
// It returns false when the event is dropped.
func (x *exchange) relayEvent(ev *sse.Event, b *[]byte) bool {
	p := x.p
	keep := true
	if x.stream != nil {
		body := *b
		res := x.stream.ResponseBody(&body, false)
		switch {
		case res.Action == chain.Respond:
			// Headers are out: a Respond on an event drops it.
			keep = false
			x.recordPluginEvent(res, "drop", ev)
		case len(body) == 0:
			keep = false
			x.recordPluginEvent(res, "drop", ev)
		case string(body) != string(*b):
			*b = append((*b)[:0], body...)
			x.recordPluginEvent(res, "modify", ev)
		}
	}
	if !keep {
		x.rt.m.sseDropped.Inc()
		return false
	}
	if x.sess != nil && ev.HasID && ev.ID != "" {
		x.sess.TrackEventID(x.rtStream(), ev.ID)
	}
	if x.session != "" {
		e := x.newEvent(event.SSE)
		e.Method, e.Path = x.method, x.path
		e.Stream = x.rtStream()
		e.EventID = ev.ID
		e.EventName = ev.Name
		e.BodyBytes = int64(len(ev.Data))
		e.Data = append([]byte(nil), ev.Data[:min(len(ev.Data), p.settings().captureBody)]...)
		p.sink.Record(e)
	}
	return true
}

// rtStream names the SSE stream within the session: route and path.
func (x *exchange) rtStream() string { return x.streamKey }

func (x *exchange) recordPluginEvent(res chain.Result, decision string, ev *sse.Event) {
	if x.session == "" {
		return
	}
	e := x.newEvent(event.Plugin)
	e.Plugin = res.Plugin
	e.Decision = decision
	e.Stream = x.rtStream()
	e.EventID = ev.ID
	x.p.sink.Record(e)
}

// replay queues the recorded events after rs.lastID (sse.replay: gateway)
// ahead of the live ones, with the same backpressure. It returns false when
// the stream was stopped meanwhile.
func (x *exchange) replay(rs *relayState) bool {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop, closing := rs.stop, x.p.closing // x may be recycled before this goroutine runs
	go func() {
		select {
		case <-stop:
		case <-closing:
		case <-ctx.Done():
		}
		cancel()
	}()
	found, err := x.p.replayer.SSEAfter(ctx, x.session, x.rtStream(), rs.lastID, func(e *event.Event) error {
		b := eventBufPool.Get().(*[]byte)
		*b = sse.AppendEvent((*b)[:0], e.EventID, e.EventName, e.Data)
		select {
		case rs.q <- b:
			x.rt.m.sseReplayed.Inc()
			return nil
		case <-ctx.Done():
			putBuf(b)
			return ctx.Err()
		}
	})
	if err != nil {
		if ctx.Err() != nil {
			return false
		}
		x.p.log.Warn("SSE replay failed; going live", "route", x.rt.name, "session", x.session, "last_event_id", rs.lastID, "err", err)
	} else if !found {
		x.p.log.Info("SSE replay: last event id unknown; going live", "session", x.session, "last_event_id", rs.lastID)
	}
	return true
}
