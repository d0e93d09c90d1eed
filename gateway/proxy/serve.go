package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/wasmgate/wasmgate/gateway/chain"
	"github.com/wasmgate/wasmgate/gateway/upstream"
)

// errBodyTooLarge is returned by the request body reader past max_body_bytes.
var errBodyTooLarge = errors.New("request body too large")

// inlineBody is the largest request body fasthttp pre-reads with the
// headers; such bodies are forwarded from memory, larger ones stream.
const inlineBody = 8 << 10

// exchange is the state of one proxied request. It is pooled; it outlives
// the handler when the response body streams, and returns to the pool when
// fasthttp closes the body stream (exchange.Close).
type exchange struct {
	p     *Proxy
	table *routeTable // held until finish: a reload drains it
	rt    *route
	conn  net.Conn
	// connID is fasthttp's id of conn, for p.writeDeadlines.
	connID uint64
	resp   *fasthttp.Response
	lease  *upstream.Lease
	long   bool
	upEOF  bool
	// reqSeen is what scanRequest found in the client's header block.
	reqSeen int
	// absolute: the request target is absolute-form (toOriginForm).
	absolute bool
	start    time.Time
	// doneAt is when the response headers were ready, for a response that
	// is written whole after the handler returns: finish arms the client
	// write deadline from it instead of reading the clock again.
	doneAt time.Time

	// A block of request ids from ids, kept across reuse (appendNextID).
	ids           *requestIDs
	idNext, idEnd uint64

	body    io.Reader // upstream response body
	bodyErr error
	reqBody limitedReader
	scratch []byte
	// inBody holds a small request body (takeInlineBody), kept across
	// requests: fasthttp never writes into a body set with SetBodyRaw, and
	// nothing reads it once the exchange is finished (recording copies it).
	inBody []byte
	hop    []byte // the Connection values (dropSet.conn)
	// dropRequestFields' header block and its reader; dropResponseFields'
	// copy of the field list.
	block       []byte
	blockReader bytes.Reader
	br          *bufio.Reader
	fields      []byte
	fieldLines  []responseField
	reqID       []byte
	// The values of the gateway's own request fields (prepareRequest):
	// X-Forwarded-For is fwdValues[xff[0]:xff[1]], Via likewise, and
	// X-Request-Id is reqID, added when addID. fwdLines: they may go
	// upstream as lines after the header block (fwd) rather than be set.
	fwdValues []byte
	xff, via  [2]int
	addID     bool
	fwdLines  bool
	fwd       []byte
	stream    chain.Stream
	headers   chain.Headers
	cs        chainScratch
	chunk     []byte
	pending   []byte // chain output not yet returned by Read
	buffered  []byte // chain Buffer accumulation
	bodyEOF   bool
	bufferOn  bool
	status    int
	session   string
	sess      Session
	streamKey string
	method    string
	path      string
}

var exchangePool = sync.Pool{New: func() any { return new(exchange) }}

// limitedReader forwards a streamed request body and fails past max. Its
// errors are the client's (a malformed chunk, a body over the limit, a
// client gone, a client silent for idle), marked so the upstream target is
// not blamed.
//
// With idle set (limits.idle_timeout), conn's read deadline (fasthttp's
// body deadline, set from the header's arrival) is kept at least idle ahead
// of each read: a body that keeps coming is never cut for being long, one
// that stops for idle is, between idle and 1.25×idle after the gateway
// asked for more. Moving it before the read, not after the bytes came,
// keeps the time the gateway spends writing the body upstream out of the
// client's count: an expired deadline fails the next read even with bytes
// waiting. It is moved only when less than idle is left, so a steady body
// costs a clock read per read and a deadline change per quarter of idle.
type limitedReader struct {
	r      io.Reader
	n, max int64
	err    error

	conn  net.Conn
	idle  time.Duration
	clock *writeDeadlines // for its monotonic now
	until time.Time       // conn's read deadline, once moved
}

// extend keeps conn's read deadline at least idle ahead.
func (l *limitedReader) extend() {
	now := l.clock.now()
	if l.until.Sub(now) > l.idle {
		return
	}
	l.until = now.Add(l.idle + l.idle/4)
	_ = l.conn.SetReadDeadline(l.until)
}

func (l *limitedReader) Read(b []byte) (int, error) {
	if l.idle > 0 {
		// The client has idle from now on to send more: the time the
		// gateway spent away from this body (writing it to an upstream
		// that reads slowly, waiting for a connection) is not its silence.
		l.extend()
	}
	n, err := l.r.Read(b)
	l.n += int64(n)
	if l.n > l.max {
		l.err = errBodyTooLarge
		return 0, &upstream.RequestBodyError{Err: errBodyTooLarge}
	}
	if err != nil && err != io.EOF {
		l.err = err
		return n, &upstream.RequestBodyError{Err: err}
	}
	return n, err
}

// Serve is the fasthttp handler.
func (p *Proxy) Serve(ctx *fasthttp.RequestCtx) {
	p.m.inFlight.Add(1)
	if p.reads != nil && !p.bodyDeadline(&ctx.Request.Header) {
		// The header is in: no header limit while the request is handled.
		// A request with a body left the header phase in headerReceived,
		// with fasthttp's body deadline, lifted once it is answered.
		p.reads.handled(ctx.Conn(), false)
	}
	x := exchangePool.Get().(*exchange)
	x.p, x.start, x.conn, x.connID = p, ctx.Time(), ctx.Conn(), ctx.ConnID()
	if !x.serve(ctx) {
		x.finish()
	}
	p.m.inFlight.Add(-1)
}

// serve handles the request; it returns true when the response body
// streams and x is finished by Close.
func (x *exchange) serve(ctx *fasthttp.RequestCtx) bool {
	p := x.p
	req := &ctx.Request
	var fields int
	x.reqSeen, fields = scanRequest(&req.Header)
	if reason := badFraming(x.reqSeen); reason != "" {
		ctx.SetConnectionClose()
		x.fail(ctx, fasthttp.StatusBadRequest, reason, nil)
		return false
	}
	if max := p.maxHeaders; max > 0 && fields > max {
		ctx.SetConnectionClose()
		x.fail(ctx, fasthttp.StatusRequestHeaderFieldsTooLarge, "too many request header fields", nil)
		return false
	}
	if uri := req.Header.RequestURI(); len(uri) == 0 || uri[0] != '/' || req.Header.IsConnect() {
		if reason := checkTarget(&req.Header); reason != "" {
			ctx.SetConnectionClose()
			x.fail(ctx, fasthttp.StatusBadRequest, reason, nil)
			return false
		}
		// fasthttp routes an absolute-form request by its authority, as
		// RFC 9112 §3.2.2 says; forward sends it in origin-form.
		x.absolute = uri[0] != '*'
	}
	if !x.absolute {
		// An HTTP/1.0 request may come without Host, but the upstream
		// gets HTTP/1.1, which needs one: refused here, not sent to fail
		// in the upstream writer (counted as the target's failure). With
		// userinfo, fasthttp routes by the host after it while the
		// upstream would get the Host as sent (RFC 9110 §7.2: none).
		reason := ""
		if host := req.Header.Host(); len(host) == 0 {
			reason = reasonNoHost
		} else if bytes.IndexByte(host, '@') >= 0 {
			reason = reasonHost
		}
		if reason != "" {
			ctx.SetConnectionClose()
			x.fail(ctx, fasthttp.StatusBadRequest, reason, nil)
			return false
		}
	}
	x.table = p.acquireRoutes()
	rt := x.table.match(ctx.Host(), ctx.Path())
	if rt == nil {
		x.fail(ctx, fasthttp.StatusNotFound, "no route for this host and path", nil)
		return false
	}
	x.rt = rt
	cl := req.Header.ContentLength()
	if int64(cl) > p.maxBody {
		ctx.SetConnectionClose()
		x.fail(ctx, fasthttp.StatusRequestEntityTooLarge, "request body too large", nil)
		return false
	}

	// A small body (an MCP call's) is already in memory: taken out of its
	// stream wrapper, it goes with the request, copy or not. An empty body
	// (Content-Length: 0) is a stream too: none may go on (Stream cannot
	// add the gateway's fields to one).
	inline := cl <= inlineBody && cl != -1
	if inline && !x.takeInlineBody(ctx, req, cl) {
		return false
	}
	if inline && rt.chain.Len() == 0 {
		// The client's request goes upstream itself, its header edited in
		// place: nothing after this reads the client's own forwarding or
		// hop-by-hop fields, and fasthttp took the connection's keep-alive
		// decision from the header before calling the handler. This saves
		// a copy of the whole header block, a pooled request and its reset
		// per request. A plugin chain gets a copy it may rewrite freely,
		// and a streamed body is wrapped to enforce its limit.
		// As for a copy: no invented Content-Type.
		req.Header.SetNoDefaultContentType(true)
		return x.forward(ctx, req, cl)
	}
	// Released here, not deferred: with this many returns the defer
	// would not be open-coded and cost a runtime call per request.
	out := fasthttp.AcquireRequest()
	req.Header.CopyTo(&out.Header)
	// A body without a Content-Type goes without one: fasthttp's writer
	// would add application/octet-stream.
	out.Header.SetNoDefaultContentType(true)
	streams := x.forward(ctx, out, cl)
	fasthttp.ReleaseRequest(out)
	return streams
}

// takeInlineBody makes a body of at most inlineBody bytes req's body in
// memory. fasthttp reads such a body whole with the header (the server's
// pre-read), but with StreamRequestBody hands it over as a stream: read
// from the stream here (memory only) into x.inBody. Request.Body would do
// the same, and log a warning, a formatted string, every time. It answers
// (bodyStatus) and returns false if the stream does not hold the whole body.
func (x *exchange) takeInlineBody(ctx *fasthttp.RequestCtx, req *fasthttp.Request, cl int) bool {
	if !req.IsBodyStream() {
		return true
	}
	if cl <= 0 {
		req.SetBodyRaw(nil) // closes the (empty) stream
		return true
	}
	if cap(x.inBody) < cl {
		x.inBody = make([]byte, cl, max(cl, 1<<10))
	}
	b := x.inBody[:cl]
	if _, err := io.ReadFull(req.BodyStream(), b); err != nil {
		ctx.SetConnectionClose()
		code, reason := bodyStatus(err)
		x.fail(ctx, code, reason, err)
		return false
	}
	x.inBody = b
	req.SetBodyRaw(b)
	return true
}

// forward sends the request to the route's upstream as out (the client's
// request, or a copy of its header) and starts the response; it returns what
// serve returns.
func (x *exchange) forward(ctx *fasthttp.RequestCtx, out *fasthttp.Request, cl int) bool {
	p, rt, req := x.p, x.rt, &ctx.Request
	if x.absolute {
		// After routing, which read ctx's URI (parsed once: ctx.Host stays
		// the authority, for X-Forwarded-Host).
		x.scratch = toOriginForm(&out.Header, x.scratch)
	}
	x.long = wantsStream(&req.Header)
	if err := x.prepareRequest(ctx, &out.Header); err != nil {
		ctx.SetConnectionClose()
		x.fail(ctx, fasthttp.StatusBadRequest, "malformed request", err)
		return false
	}
	if !x.beginSession(ctx) {
		return false
	}
	// The client's own request, not recorded, goes with the gateway's
	// fields as lines after its header block (Stream writes them): no Set
	// per field. Anything that reads or rewrites the header (recording, the
	// chain) or a streamed body gets them set.
	var fields []byte
	if x.fwdLines && out == req && x.session == "" && len(out.Header.Host()) > 0 {
		x.fwd = x.appendForwarding(x.fwd[:0], ctx)
		fields = x.fwd
	} else {
		x.setForwarding(ctx, &out.Header)
	}

	switch {
	case out == req:
		// An inline body (or none) is already in req.
	case cl == 0 || cl == -2:
	case cl > 0 && cl <= inlineBody:
		out.SetBodyRaw(req.Body()) // in memory: takeInlineBody
	default:
		x.reqBody = limitedReader{r: ctx.RequestBodyStream(), max: p.maxBody}
		if p.bodyDeadline(&req.Header) {
			// headerReceived set fasthttp's body deadline; the connection's
			// watch lifts it once the request is answered.
			x.reqBody.conn, x.reqBody.idle, x.reqBody.clock = x.conn, p.bodyTimeout, p.writeDeadlines
		}
		out.SetBodyStream(&x.reqBody, cl)
	}

	if x.session != "" {
		x.recordRequest(ctx, out)
	}
	if rt.chain.Len() > 0 {
		if done := x.requestChain(ctx, out); done {
			return false
		}
	}

	var replayFrom string
	if rt.cfg.SSE.Replay == "gateway" && x.session != "" && p.replayer != nil {
		// The gateway replays what the client missed; the upstream only
		// serves the live stream.
		if id := out.Header.PeekBytes(hdrLastEventID); len(id) > 0 {
			replayFrom = string(id)
			out.Header.DelBytes(hdrLastEventID)
		}
	}

	resp := x.resp
	if resp == nil {
		// Kept with the pooled exchange, body buffer and all: the buffer
		// trades places with the client response's (also kept by fasthttp)
		// below instead of cycling through fasthttp's shared body pool,
		// which drops buffers larger than its recent typical size and so
		// allocated a new one per request whenever response sizes changed.
		resp = fasthttp.AcquireResponse()
		resp.KeepBodyBuffer = true
		x.resp = resp
	}
	if out == req {
		// Write the request line and Host from the header as edited, as
		// for a copy, not from the URI fasthttp parsed (which Write would
		// otherwise re-render, normalizing the path). Here, after the
		// last read of ctx's URI (a query session key parses it again).
		out.SetRequestURIBytes(out.Header.RequestURI())
	}
	// A proxy sends its own version (RFC 9110 §6.2): an HTTP/1.0 request
	// goes upstream as HTTP/1.1, on a connection that stays pooled. The
	// client's own request gets its version back once written: fasthttp
	// frames the client's response and keeps its connection by it.
	var proto [8]byte
	downgraded := 0
	if !out.Header.IsHTTP11() {
		downgraded = copy(proto[:], out.Header.Protocol())
		out.Header.SetProtocolBytes(strHTTP11)
	}
	// The response header is read straight into the client response's:
	// no copy. resp keeps the body and its framing.
	lease, err := rt.up.Stream(out, fields, &ctx.Response.Header, resp, x.long)
	if downgraded > 0 && out == req {
		req.Header.SetProtocolBytes(proto[:downgraded])
	}
	if err != nil {
		// Whatever part of an upstream header was read is not the answer,
		// and its Connection: close is not the client's.
		ctx.Response.Header.ResetConnectionClose()
		if x.reqBody.err != nil {
			ctx.SetConnectionClose()
			code, reason := bodyStatus(x.reqBody.err)
			x.fail(ctx, code, reason, x.reqBody.err)
			return false
		}
		code, reason := upstream.Status(err)
		x.fail(ctx, code, reason, err)
		return false
	}
	x.lease = lease

	x.prepareResponse(&ctx.Response.Header)
	x.status = ctx.Response.Header.StatusCode()
	if x.session == "" && x.p.sessions != nil {
		if x.sessionFromResponse(&ctx.Response.Header); x.session != "" {
			if fields != nil {
				x.setForwarding(ctx, &out.Header) // recorded as sent
			}
			x.recordRequest(ctx, out)
		}
	}

	if x.stream != nil {
		if done := x.responseHeadersChain(ctx); done {
			return false
		}
	}
	if x.session != "" {
		x.recordResponse(&ctx.Response.Header)
		if req.Header.IsDelete() && len(sessionKey(ctx, rt)) > 0 {
			p.sessions.End(x.session, ReasonDeleted)
		}
	}
	// One monotonic clock read (x.start has one), not time.Now's two.
	lat := time.Since(x.start)
	x.doneAt = x.start.Add(lat)
	rt.m.observe(x.status, lat)

	if req.Header.IsHead() {
		ctx.Response.SkipBody = true
		return false
	}
	isSSE := bytes.HasPrefix(ctx.Response.Header.ContentType(), strEventStream)
	if lease == nil {
		// The whole (small) body is in resp.
		if x.stream == nil && !isSSE {
			// Hand resp's body buffer to the client response instead of
			// copying it, and give resp the client response's in
			// exchange: both keep their buffers across requests.
			body := resp.SwapBody(nil)
			resp.SwapBody(ctx.Response.SwapBody(body)[:0])
			return false
		}
		if !isSSE {
			// Already whole in memory: one body call with end_of_stream,
			// answered with a Content-Length, instead of a chunked stream
			// and a second, empty call.
			data := resp.Body()
			if len(data) > 0 {
				if res := x.stream.ResponseBody(&data, true); res.Action == chain.Respond {
					x.local(ctx, res)
					return false
				}
			}
			ctx.Response.SetBody(data)
			return false
		}
		x.body = bytes.NewReader(resp.Body())
	} else {
		x.body = resp.BodyStream()
	}
	x.doneAt = time.Time{} // the body is written after headers, or relayed
	if isSSE {
		if lease != nil {
			lease.LongLived()
		}
		x.relay(ctx, replayFrom, false)
		return true
	}
	n := ctx.Response.Header.ContentLength()
	if n < 0 || x.stream != nil {
		n = -1
		if !req.Header.IsHTTP11() {
			// An HTTP/1.0 client cannot read chunked (RFC 9112 §6.1) and
			// fasthttp chunks every body of unknown length.
			x.relay(ctx, "", true)
			return true
		}
	}
	ctx.Response.SetBodyStream(x, n)
	return true
}

// Read feeds the client response body from the upstream, with a fresh
// write deadline for each chunk: a client must keep taking data, but a long
// response is never cut for being long.
func (x *exchange) Read(b []byte) (int, error) {
	if x.writeDeadline() != nil {
		return 0, io.ErrClosedPipe
	}
	if x.stream != nil {
		return x.chainRead(b)
	}
	n, err := x.body.Read(b)
	if err != nil {
		if err == io.EOF {
			x.upEOF = true
		} else {
			x.bodyErr = err
		}
	}
	return n, err
}

func (x *exchange) writeDeadline() error {
	if x.p.writeTimeout > 0 {
		w := x.p.writeDeadlines
		return w.arm(x.connID, x.conn, w.now(), x.p.writeTimeout)
	}
	return nil
}

// Close is called by fasthttp when the response is written or abandoned.
func (x *exchange) Close() error {
	x.finish()
	return nil
}

// finish releases everything x holds and returns it to the pool.
func (x *exchange) finish() {
	if x.lease != nil {
		if x.bodyErr != nil {
			x.lease.Target().Failed(x.bodyErr)
			x.p.log.Warn("upstream body broke", "route", x.rt.name, "target", x.lease.Target().Addr, "err", x.bodyErr)
		}
		if x.resp != nil { // the SSE relay may have released it early
			_ = x.resp.CloseBodyStream()
		}
		x.lease.Release(x.upEOF)
	}
	if x.resp != nil {
		x.resp.Reset()
	}
	if x.stream != nil {
		x.stream.Done()
	}
	if x.conn != nil && x.p.writeTimeout > 0 {
		// Bound the write of a buffered response too.
		now := x.doneAt
		if now.IsZero() {
			now = x.p.writeDeadlines.now()
		}
		_ = x.p.writeDeadlines.arm(x.connID, x.conn, now, x.p.writeTimeout)
	}
	if x.table != nil {
		x.table.release()
	}
	*x = exchange{resp: x.resp, ids: x.ids, idNext: x.idNext, idEnd: x.idEnd, scratch: x.scratch[:0], inBody: x.inBody[:0], hop: x.hop[:0], block: x.block[:0], br: x.br, fields: x.fields[:0], fieldLines: x.fieldLines[:0], reqID: x.reqID[:0], fwdValues: x.fwdValues[:0], fwd: x.fwd[:0], headers: x.headers[:0], cs: x.cs.reuse(), chunk: x.chunk[:0], buffered: x.buffered[:0]}
	exchangePool.Put(x)
}

// fail answers the client with an error status and one-line reason.
func (x *exchange) fail(ctx *fasthttp.RequestCtx, code int, reason string, err error) {
	route := ""
	if x.rt != nil {
		route = x.rt.name
		x.doneAt = time.Now()
		x.rt.m.observe(code, x.doneAt.Sub(x.start))
	} else {
		x.p.m.rejected.WithLabelValues(itoa(code)).Inc()
	}
	if err != nil {
		x.p.log.Warn("request failed", "route", route, "status", code, "reason", reason, "request_id", string(x.reqID), "err", err)
	} else {
		x.p.log.Info("request refused", "route", route, "status", code, "reason", reason, "client", ctx.RemoteAddr().String())
	}
	if x.session != "" {
		x.recordError(code, reason)
	}
	writeError(ctx, code, reason, x.reqID)
}

// bodyStatus is the answer to a request whose body broke off with err or
// went over the size limit.
func bodyStatus(err error) (int, string) {
	if errors.Is(err, errBodyTooLarge) {
		return fasthttp.StatusRequestEntityTooLarge, "request body too large"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fasthttp.StatusRequestTimeout, "request body not received in time"
	}
	return fasthttp.StatusBadRequest, "malformed request body"
}

// badFraming rejects what fasthttp would accept but a gateway must not: a
// request carrying both Content-Length and Transfer-Encoding (fasthttp lets
// Transfer-Encoding win; nginx and Envoy answer 400 to avoid smuggling), or
// a Transfer-Encoding other than chunked (fasthttp drops "identity"
// silently), or a header line ended by LF alone. fasthttp accepts a bare
// LF, and ends a header block at a bare-LF empty line once a CRLFCRLF is
// anywhere in what it has read: a peer that ends lines at CRLF only would
// read a following request as part of this one (RFC 9112 §2.2 lets a
// recipient reject a bare LF). seen is what scanRequest found in the raw
// header block.
func badFraming(seen int) string {
	switch {
	case seen&seenBareLF != 0:
		return "bare LF in header"
	case seen&seenBadTE != 0:
		return "unsupported Transfer-Encoding (only chunked is accepted)"
	case seen&seenTE != 0 && seen&seenLength != 0:
		return "both Content-Length and Transfer-Encoding"
	}
	return ""
}

// wantsStream says whether a request should take the stream pool: its
// client asks for an event stream or resumes one.
func wantsStream(h *fasthttp.RequestHeader) bool {
	if len(h.PeekCanonical(hdrLastEventID)) > 0 {
		return true
	}
	return bytes.Contains(h.PeekCanonical(hdrAccept), strEventStream)
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			break
		}
	}
	return string(b[i:])
}
