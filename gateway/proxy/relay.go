package proxy

import (
	"bufio"
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
// events, runs each through the chain and queues it; the writer (fasthttp's
// body-stream writer) sends queued events to the client and flushes each.
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
	q      chan *[]byte
	stop   chan struct{}
	done   chan struct{}
	err    error       // set by the reader before closing q
	eof    atomic.Bool // the upstream body ended cleanly
	lastID string      // Last-Event-ID for gateway replay
}

// relay streams a text/event-stream response to the client event by event.
func (x *exchange) relay(ctx *fasthttp.RequestCtx, replayFrom string) {
	p := x.p
	p.streams.Add(1)
	p.m.sseOpen.Inc()
	rs := &relayState{
		q:      make(chan *[]byte, max(p.settings().sse.PendingEvents, 1)),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
		lastID: replayFrom,
	}
	if x.session != "" {
		x.streamKey = x.rt.name + " " + string(ctx.Path())
	}
	ctx.Response.Header.SetContentLength(-1)
	ctx.Response.Header.Del("Content-Length")
	go x.relayRead(rs)
	ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
		defer p.streams.Done()
		defer p.m.sseOpen.Dec()
		broke := x.relayWrite(w, rs)
		close(rs.stop)
		// Wake a reader blocked on the upstream; finish releases the
		// connection (back to the pool only if the body ended cleanly).
		if x.lease != nil && !rs.eof.Load() {
			x.lease.Interrupt()
		}
		<-rs.done
		for b := range rs.q {
			putBuf(b)
		}
		if x.stream != nil {
			var tail []byte
			x.stream.ResponseBody(&tail, true)
			if len(tail) > 0 && !broke {
				_ = x.writeDeadline()
				_, _ = w.Write(tail)
				_ = w.Flush()
			}
		}
		if broke {
			// Leave the chunked body unterminated: the client must see a
			// broken stream, not a clean end.
			_ = x.conn.Close()
		}
		x.finish()
	})
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
		parser = sse.NewParser(x.body, p.settings().sse.MaxEventBytes.N())
	} else {
		parser.Reset(x.body)
	}
	defer func() {
		parser.Reset(nil)
		p.parsers.Put(parser)
	}()
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

// relayWrite sends queued events to the client until the stream ends. It
// returns true when the upstream broke (the client connection must then be
// closed without a clean end).
func (x *exchange) relayWrite(w *bufio.Writer, rs *relayState) (broke bool) {
	p := x.p
	if rs.lastID != "" && p.replayer != nil && x.session != "" {
		if !x.replay(w, rs) {
			return false
		}
	}
	// Send the response headers now: a stream may stay silent for long.
	if x.flush(w) != nil {
		return false
	}
	hb := p.settings().sse.Heartbeat.D()
	var hbTimer *time.Timer
	var hbC <-chan time.Time
	if hb > 0 {
		hbTimer = time.NewTimer(hb)
		defer hbTimer.Stop()
		hbC = hbTimer.C
	}
	var scratch []byte
	for {
		select {
		case b, ok := <-rs.q:
			if !ok {
				if rs.err != nil && !errors.Is(rs.err, sse.ErrEventTooLarge) {
					p.log.Warn("upstream SSE stream broke", "route", x.rt.name, "request_id", string(x.reqID), "err", rs.err)
					return true
				}
				return false
			}
			_, err := w.Write(*b)
			putBuf(b)
			// Write what else is queued before one flush.
			for err == nil && len(rs.q) > 0 {
				b2, ok := <-rs.q
				if !ok {
					break
				}
				_, err = w.Write(*b2)
				putBuf(b2)
				x.rt.m.sseRelayed.Inc()
			}
			if err == nil {
				err = x.flush(w)
			}
			if err != nil {
				return false
			}
			x.rt.m.sseRelayed.Inc()
		case <-hbC:
			scratch = sse.AppendComment(scratch[:0], "")
			if _, err := w.Write(scratch); err != nil || x.flush(w) != nil {
				return false
			}
			x.rt.m.sseHeartbeat.Inc()
		case <-p.closing:
			return false
		}
		if hbTimer != nil {
			hbTimer.Reset(hb)
		}
	}
}

// flush pushes buffered output to the client under a fresh stall deadline.
func (x *exchange) flush(w *bufio.Writer) error {
	if d := x.p.settings().sse.WriteStallTimeout.D(); d > 0 {
		_ = x.conn.SetWriteDeadline(time.Now().Add(d))
	}
	return w.Flush()
}

// replay sends the recorded events after rs.lastID (sse.replay: gateway).
// It returns false when the client went away.
func (x *exchange) replay(w *bufio.Writer, rs *relayState) bool {
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
	var buf []byte
	found, err := x.p.replayer.SSEAfter(ctx, x.session, x.rtStream(), rs.lastID, func(e *event.Event) error {
		buf = sse.AppendEvent(buf[:0], e.EventID, e.EventName, e.Data)
		if _, err := w.Write(buf); err != nil {
			return err
		}
		x.rt.m.sseReplayed.Inc()
		return x.flush(w)
	})
	if err != nil {
		x.p.log.Warn("SSE replay failed", "route", x.rt.name, "session", x.session, "last_event_id", rs.lastID, "err", err)
		return ctx.Err() == nil && !errors.Is(err, io.ErrClosedPipe)
	}
	if !found {
		x.p.log.Info("SSE replay: last event id unknown; going live", "session", x.session, "last_event_id", rs.lastID)
	}
	return true
}
