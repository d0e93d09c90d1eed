package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/wasmgate/wasmgate/gateway/chain"
	"github.com/wasmgate/wasmgate/gateway/event"
	"github.com/wasmgate/wasmgate/gateway/sse"
)

// The SSE relay. Once the response headers are decided the client
// connection is hijacked from fasthttp and ONE goroutine serves the stream:
// it reads the upstream, parses events, runs each through the chain and
// writes it to the client itself (status line, headers and chunked framing
// included). An open stream therefore holds no fasthttp connection state
// (its write buffer, request context and worker go back to fasthttp at once;
// its read buffer, sized by limits.max_header_bytes, is left to the garbage
// collector), no upstream read buffer (a chunked or until-close body is read
// straight from the connection, see upstreamBody), one goroutine stack and
// the parser's small buffer; output is gathered in a pooled buffer that is
// returned before the relay blocks on the upstream. Measured at 5,000 open
// streams (scripts/bench.sh): ~20 KiB of RSS per stream, of which ~4 KiB
// stack and ~7 KiB live heap; the rest is garbage-collector headroom.
//
//   - Flushing: events the upstream already delivered are gathered, up to
//     sse.pending_events of them, and go out in one chunk; before the relay
//     waits for more upstream bytes it writes what it gathered, so no event
//     waits for a later one.
//   - Backpressure: while the client's socket is full the write blocks, and
//     the upstream is not read meanwhile: a slow client slows the upstream
//     instead of growing memory (at most sse.pending_events events are held).
//   - Stalled clients: every write gets a fresh deadline of
//     sse.write_stall_timeout (never an absolute deadline on the stream), so
//     a client that takes nothing for that long is dropped.
//   - Heartbeats: after sse.heartbeat without output a timer writes a
//     comment, which also detects a vanished client on an idle stream; a
//     failed heartbeat closes the upstream connection to wake the relay.
//   - A client that goes away makes a write fail; the upstream connection
//     is then closed (not reused).
//   - An upstream that breaks mid-stream closes the client connection
//     without the terminating chunk, so the client sees the break.
//   - Proxy.Close ends every stream cleanly (the chain's final call, the
//     terminating chunk); past its deadline it closes the connections.
//   - A hijacked connection stays counted against limits.max_conns (see
//     Proxy.connState) and limits.max_conns_per_ip until the relay closes it.

var (
	eventBufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}
	outBufPool   = sync.Pool{New: func() any { b := make([]byte, 0, 2<<10); return &b }}
)

const (
	// chunkRoom is kept free at the start of an output buffer for the chunk
	// size line, written once the size is known.
	chunkRoom = 18
	// maxBatch bounds one write of gathered events.
	maxBatch = 32 << 10
	// stallPiece is the most written under one write_stall_timeout deadline.
	stallPiece = 16 << 10
	// hijackWait bounds the wait for fasthttp to hand over a hijacked
	// connection; it only runs out when fasthttp dropped it instead.
	hijackWait = 10 * time.Second
)

var (
	errClientGone = errors.New("client gone")
	errEnding     = errors.New("stream ending")

	heartbeatComment = sse.AppendComment(nil, "")
	heartbeatChunk   = appendChunk(nil, heartbeatComment)
	lastChunk        = []byte("0\r\n\r\n")
)

// relayState.owner: who closes the client connection.
const (
	connOwned int32 = 1 + iota
	connLost
)

// Why a stream ends before its upstream does (relayState.ending).
const (
	live        int32 = iota
	endClient         // a write to the client failed
	endShutdown       // Proxy.Close: end cleanly
	endForced         // Proxy.Close's deadline passed: connections closed
)

type relayState struct {
	x       *exchange
	set     *liveSettings // at the stream's start; write_stall_timeout is read live
	chunked bool
	lastID  string        // Last-Event-ID for gateway replay
	ready   chan struct{} // closed when fasthttp hands the connection over
	owner   atomic.Int32  // connOwned once handed over, connLost if never
	head    *[]byte       // the response header block
	rb      *upstreamBody // the upstream body, when read past fasthttp

	wmu      sync.Mutex // one writer at a time: the relay or a heartbeat
	finished bool       // under wmu: x and its lease are being released
	hb       *time.Timer

	out    *[]byte // gathered output (pooled), nil when nothing is gathered
	events int     // events in out
	tailed bool    // the chain got its final call
	raw    bool    // not an event stream: a body to an HTTP/1.0 client (copyRaw)

	ending      atomic.Int32
	interrupted atomic.Bool        // the upstream connection was closed under the reader
	cancel      context.CancelFunc // a replay in progress; under Proxy.relaysMu
}

// relay streams a text/event-stream response to the client event by event
// on a hijacked connection (raw: any other body, as it comes, see copyRaw).
// The response header must be final.
func (x *exchange) relay(ctx *fasthttp.RequestCtx, replayFrom string, raw bool) {
	p := x.p
	rs := &relayState{x: x, set: p.settings(), lastID: replayFrom, ready: make(chan struct{}), raw: raw}
	h := &ctx.Response.Header
	rs.chunked = ctx.Request.Header.IsHTTP11()
	h.SetContentLength(-1)
	if !rs.chunked {
		// An HTTP/1.0 client reads the stream until the connection closes.
		h.Del(fasthttp.HeaderTransferEncoding)
	}
	// The connection ends with the stream: fasthttp no longer owns it.
	h.SetConnectionClose()
	if len(h.Server()) == 0 {
		h.SetServer(serverName)
	}
	head := outBufPool.Get().(*[]byte)
	*head = h.AppendBytes((*head)[:0])
	rs.head = head
	if x.session != "" && !raw {
		x.streamKey = x.rt.name + " " + string(ctx.Path())
	}
	p.streams.Add(1)
	if !raw {
		p.m.sseOpen.Inc()
	}
	p.register(rs)
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(rs.hijacked)
	go rs.run()
}

// hijacked runs when fasthttp hands over the connection (Server has
// KeepHijackedConns, so it neither closes it nor keeps its buffers).
func (rs *relayState) hijacked(c net.Conn) {
	// No longer fasthttp's to count (see Proxy.connState); first, so that
	// the connection is never counted twice.
	rs.x.p.served.Add(-1)
	if !rs.owner.CompareAndSwap(0, connOwned) {
		_ = c.Close() // the relay gave up waiting
		return
	}
	rs.x.p.hijacked.Add(1)
	close(rs.ready)
}

// giveUp stops waiting for a connection fasthttp has not handed over yet.
func (rs *relayState) giveUp() {
	if rs.owner.CompareAndSwap(0, connLost) {
		close(rs.ready)
	}
}

func (rs *relayState) run() {
	x, p := rs.x, rs.x.p
	defer rs.finish()
	t := time.NewTimer(hijackWait)
	select {
	case <-rs.ready:
		t.Stop()
	case <-t.C:
		// fasthttp closed the connection instead of handing it over.
		rs.giveUp()
		<-rs.ready
	}
	if rs.owner.Load() != connOwned {
		rs.ending.CompareAndSwap(live, endClient)
		return
	}
	err := rs.write(*rs.head)
	putOut(rs.head)
	rs.head = nil
	if err != nil {
		return
	}
	if hb := rs.set.sse.Heartbeat.D(); hb > 0 && !rs.raw {
		rs.wmu.Lock()
		rs.hb = time.AfterFunc(hb, rs.heartbeat)
		rs.wmu.Unlock()
	}
	if l := x.lease; l != nil {
		if cl := x.resp.Header.ContentLength(); cl == -1 || cl == -2 {
			// Chunked or until-close: read past fasthttp's body stream
			// and its connection reader (see upstreamBody).
			rb := &upstreamBody{conn: l.Conn(), chunked: cl == -1}
			pre := outBufPool.Get().(*[]byte)
			if *pre = l.DetachReader((*pre)[:0]); len(*pre) > 0 {
				rb.pre = pre
			} else {
				putOut(pre)
			}
			x.body, rs.rb = rb, rb
			// The upstream response headers are no longer needed.
			_ = x.resp.CloseBodyStream()
			fasthttp.ReleaseResponse(x.resp)
			x.resp = nil
		}
	}
	if rs.raw {
		rs.copyRaw()
		return
	}
	limit := rs.set.sse.MaxEventBytes.N()
	pp, _ := p.parsers.Get().(*pooledParser)
	if pp == nil || pp.limit != limit {
		// A small initial buffer: it grows for a large event and shrinks
		// back.
		pp = &pooledParser{Parser: sse.NewParserSize(rs, limit, 1<<10), limit: limit}
	} else {
		pp.Reset(rs)
	}
	parser := pp.Parser
	defer func() {
		parser.Reset(nil)
		p.parsers.Put(pp)
	}()
	if rs.lastID != "" && p.replayer != nil && x.session != "" {
		x.replay(rs)
	}
	for rs.ending.Load() == live {
		var ev *sse.Event
		if ev, err = parser.Next(); err != nil {
			break
		}
		if ev.Dispatchable() {
			if x.stream == nil {
				raw := ev.Raw
				x.relayEvent(ev, &raw)
				rs.add(raw)
			} else {
				b := eventBufPool.Get().(*[]byte)
				*b = append((*b)[:0], ev.Raw...)
				if x.relayEvent(ev, b) {
					rs.add(*b)
				}
				putBuf(b)
			}
		} else {
			rs.add(ev.Raw)
		}
		if rs.full() {
			if err = rs.flush(); err != nil {
				break
			}
		}
	}
	rs.end(err)
}

// Read is the parser's reader: it writes out what was gathered before it
// waits for more upstream bytes.
func (rs *relayState) Read(b []byte) (int, error) {
	if rs.out != nil {
		if err := rs.flush(); err != nil {
			return 0, err
		}
	}
	if rs.ending.Load() != live {
		return 0, errEnding
	}
	n, err := rs.x.body.Read(b)
	if err == io.EOF {
		rs.x.upEOF = true
	}
	return n, err
}

// copyRaw writes a body that is not an event stream as it comes: through
// exchange.Read (the chain, if any, and the limits.write_timeout deadline),
// without framing, for a client that reads it until the connection closes.
// A body that breaks or a Proxy.Close ends it early; the client cannot tell
// (HTTP/1.0 has no other way to end a body of unknown length).
func (rs *relayState) copyRaw() {
	x := rs.x
	rs.tailed = true // chainRead makes the chain's last call itself
	b := outBufPool.Get().(*[]byte)
	defer putOut(b)
	buf := (*b)[:cap(*b)]
	for rs.ending.Load() == live {
		n, err := x.Read(buf)
		if n > 0 {
			if _, werr := x.conn.Write(buf[:n]); werr != nil {
				rs.ending.CompareAndSwap(live, endClient)
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// add gathers one event (or comment block) for the next write.
func (rs *relayState) add(b []byte) {
	if len(b) == 0 {
		return
	}
	if rs.out == nil {
		rs.out = outBufPool.Get().(*[]byte)
		if cap(*rs.out) < chunkRoom {
			*rs.out = make([]byte, 0, 2<<10)
		}
		*rs.out = (*rs.out)[:chunkRoom]
	}
	*rs.out = append(*rs.out, b...)
	rs.events++
}

// full says whether the gathered output must go out before more is added:
// sse.pending_events events or maxBatch bytes.
func (rs *relayState) full() bool {
	return rs.events >= max(rs.set.sse.PendingEvents, 1) || (rs.out != nil && len(*rs.out) >= maxBatch)
}

// flush writes what was gathered as one chunk.
func (rs *relayState) flush() error {
	out, n := rs.out, rs.events
	rs.out, rs.events = nil, 0
	b := *out
	if rs.chunked {
		size := len(b) - chunkRoom
		b = append(b, '\r', '\n')
		*out = b
		var line [chunkRoom]byte
		l := strconv.AppendInt(line[:0], int64(size), 16)
		l = append(l, '\r', '\n')
		b = b[chunkRoom-len(l):]
		copy(b, l)
	} else {
		b = b[chunkRoom:]
	}
	err := rs.write(b)
	putOut(out)
	if err == nil {
		rs.x.rt.m.sseRelayed.Add(float64(n))
	}
	return err
}

// write sends b to the client under the stall deadline.
func (rs *relayState) write(b []byte) error {
	rs.wmu.Lock()
	defer rs.wmu.Unlock()
	return rs.writeLocked(b)
}

func (rs *relayState) writeLocked(b []byte) error {
	x := rs.x
	d := x.p.settings().sse.WriteStallTimeout.D()
	for len(b) > 0 {
		// A fresh deadline per piece: a client must keep taking bytes,
		// but a large event to a slow reader is not cut for being large.
		n := min(len(b), stallPiece)
		if d > 0 {
			_ = x.conn.SetWriteDeadline(time.Now().Add(d))
		}
		if _, err := x.conn.Write(b[:n]); err != nil {
			if rs.ending.CompareAndSwap(live, endClient) || rs.ending.CompareAndSwap(endShutdown, endClient) {
				x.p.log.Debug("SSE client gone", "route", x.rt.name, "request_id", string(x.reqID), "err", err)
			}
			return errClientGone
		}
		b = b[n:]
	}
	if rs.hb != nil {
		rs.hb.Reset(rs.set.sse.Heartbeat.D())
	}
	return nil
}

// heartbeat runs on its timer: a comment after sse.heartbeat of silence.
// A write under way is output enough; the relay re-arms the timer after it.
func (rs *relayState) heartbeat() {
	if !rs.wmu.TryLock() {
		return
	}
	defer rs.wmu.Unlock()
	if rs.finished || rs.ending.Load() != live {
		return
	}
	frame := heartbeatComment
	if rs.chunked {
		frame = heartbeatChunk
	}
	if err := rs.writeLocked(frame); err != nil {
		// The relay is waiting on the upstream: wake it.
		rs.interrupt()
		return
	}
	rs.x.rt.m.sseHeartbeat.Inc()
}

// interrupt closes the upstream connection under the reader. The caller
// holds wmu with finished false, or Proxy.relaysMu with rs registered, so
// the lease is still held.
func (rs *relayState) interrupt() {
	if l := rs.x.lease; l != nil {
		rs.interrupted.Store(true)
		l.Interrupt()
	}
}

// end finishes the output once the event loop stopped with err.
func (rs *relayState) end(err error) {
	x, p := rs.x, rs.x.p
	switch rs.ending.Load() {
	case endClient, endForced:
		return
	case endShutdown:
	default:
		if err != io.EOF && !errors.Is(err, sse.ErrEventTooLarge) {
			// What was gathered goes out, then the connection closes
			// without the terminating chunk.
			x.bodyErr = err
			p.log.Warn("upstream SSE stream broke", "route", x.rt.name, "request_id", string(x.reqID), "err", err)
			if rs.out != nil {
				_ = rs.flush()
			}
			return
		}
		if errors.Is(err, sse.ErrEventTooLarge) {
			p.log.Warn("SSE event over sse.max_event_bytes; stream ended", "route", x.rt.name, "request_id", string(x.reqID), "limit", rs.set.sse.MaxEventBytes)
		}
	}
	rs.add(rs.finalChain())
	if rs.out != nil && rs.flush() != nil {
		return
	}
	if rs.chunked {
		_ = rs.write(lastChunk)
	}
}

// finalChain makes the chain's last call (endOfStream) once, and returns
// what it wants sent.
func (rs *relayState) finalChain() []byte {
	if rs.tailed {
		return nil
	}
	rs.tailed = true
	if rs.x.stream == nil {
		return nil
	}
	var tail []byte
	rs.x.stream.ResponseBody(&tail, true)
	return tail
}

// finish releases the stream: the client connection, the upstream lease
// and the exchange.
func (rs *relayState) finish() {
	x, p := rs.x, rs.x.p
	rs.wmu.Lock()
	rs.finished = true
	if rs.hb != nil {
		rs.hb.Stop()
	}
	rs.wmu.Unlock()
	rs.finalChain()
	p.unregister(rs)
	if rs.interrupted.Load() || rs.rb != nil && rs.rb.extra {
		// The connection was closed under the reader, or bytes followed
		// the body: it is not reused.
		x.upEOF = false
	}
	if rs.out != nil {
		putOut(rs.out)
		rs.out = nil
	}
	if rs.head != nil {
		putOut(rs.head)
		rs.head = nil
	}
	if rs.rb != nil {
		rs.rb.release()
	}
	if rs.owner.Load() == connOwned {
		// The connection is ours: fasthttp counts it no more.
		_ = x.conn.Close()
		p.hijacked.Add(-1)
	}
	x.finish()
	if !rs.raw {
		p.m.sseOpen.Dec()
	}
	p.streams.Done()
}

// register adds rs to the open relays that Close ends.
func (p *Proxy) register(rs *relayState) {
	p.relaysMu.Lock()
	p.relays[rs] = struct{}{}
	if p.relaysClosed {
		rs.shutdown()
	}
	p.relaysMu.Unlock()
}

func (p *Proxy) unregister(rs *relayState) {
	p.relaysMu.Lock()
	delete(p.relays, rs)
	p.relaysMu.Unlock()
}

// shutdown asks the relay to end cleanly; the caller holds relaysMu.
func (rs *relayState) shutdown() {
	if rs.ending.CompareAndSwap(live, endShutdown) {
		rs.interrupt()
		if rs.cancel != nil {
			rs.cancel()
		}
	}
}

// force ends the relay at once; the caller holds relaysMu.
func (rs *relayState) force() {
	rs.ending.Store(endForced)
	rs.interrupt()
	if rs.cancel != nil {
		rs.cancel()
	}
	_ = rs.x.conn.Close()
	rs.giveUp() // a hijack not done yet will not be
}

// pooledParser is a parser kept for reuse with the event size limit it was
// made with (sse.max_event_bytes may change on a reload).
type pooledParser struct {
	*sse.Parser
	limit int
}

func putBuf(b *[]byte) {
	if cap(*b) > 64<<10 {
		return
	}
	*b = (*b)[:0]
	eventBufPool.Put(b)
}

func putOut(b *[]byte) {
	if cap(*b) > 64<<10 {
		return
	}
	*b = (*b)[:0]
	outBufPool.Put(b)
}

// appendChunk appends b framed as one HTTP/1.1 chunk.
func appendChunk(dst, b []byte) []byte {
	dst = strconv.AppendInt(dst, int64(len(b)), 16)
	dst = append(dst, '\r', '\n')
	dst = append(dst, b...)
	return append(dst, '\r', '\n')
}

// relayEvent runs one dispatchable event through the chain, tracks its id
// and records it. It returns false when the event is dropped.
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
	if x.records() {
		e := x.newEvent(event.SSE)
		e.Method, e.Path = x.method, x.path
		e.Stream = x.rtStream()
		e.EventID = ev.ID
		e.EventName = ev.Name
		e.BodyBytes = int64(len(ev.Data))
		n := len(ev.Data)
		if x.rt.cfg.SSE.Replay != "gateway" {
			// Gateway replay needs the whole event (bounded by
			// sse.max_event_bytes); elsewhere the capture limit applies.
			n = min(n, p.settings().captureBody)
		}
		e.Data = e.Keep(ev.Data[:n])
		p.sink.Record(e)
	}
	return true
}

// rtStream names the SSE stream within the session: route and path.
func (x *exchange) rtStream() string { return x.streamKey }

func (x *exchange) recordPluginEvent(res chain.Result, decision string, ev *sse.Event) {
	if !x.records() {
		return
	}
	e := x.newEvent(event.Plugin)
	e.Plugin = res.Plugin
	e.Decision = decision
	e.Stream = x.rtStream()
	e.EventID = ev.ID
	x.p.sink.Record(e)
}

// replay writes the recorded events after rs.lastID (sse.replay: gateway)
// ahead of the live ones.
func (x *exchange) replay(rs *relayState) {
	p := x.p
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p.relaysMu.Lock()
	if rs.ending.Load() != live {
		p.relaysMu.Unlock()
		return
	}
	rs.cancel = cancel
	p.relaysMu.Unlock()
	defer func() {
		p.relaysMu.Lock()
		rs.cancel = nil
		p.relaysMu.Unlock()
	}()
	found, err := p.replayer.SSEAfter(ctx, x.session, x.rtStream(), rs.lastID, func(e *event.Event) error {
		if rs.ending.Load() != live {
			return errEnding
		}
		b := eventBufPool.Get().(*[]byte)
		*b = sse.AppendEvent((*b)[:0], e.EventID, e.EventName, e.Data)
		rs.add(*b)
		putBuf(b)
		x.rt.m.sseReplayed.Inc()
		if rs.full() {
			return rs.flush()
		}
		return nil
	})
	if err != nil {
		if ctx.Err() != nil || rs.ending.Load() != live {
			return
		}
		p.log.Warn("SSE replay failed; going live", "route", x.rt.name, "session", x.session, "last_event_id", rs.lastID, "err", err)
	} else if !found {
		p.log.Info("SSE replay: last event id unknown; going live", "session", x.session, "last_event_id", rs.lastID)
	}
}
