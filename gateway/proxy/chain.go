package proxy

import (
	"errors"
	"io"
	"strconv"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/wasmgate/wasmgate/gateway/chain"
	"github.com/wasmgate/wasmgate/gateway/event"
)

// errPluginEnded ends a response body that a plugin answered with Respond
// after the headers had gone out (the status can no longer change).
var errPluginEnded = errors.New("plugin ended the response")

// responseChunk is how much of a non-SSE response body one ResponseBody call
// carries.
const responseChunk = 16 << 10

// chainScratch is an exchange's chain state that survives the exchange
// pool: the response header map (the request map is exchange.headers),
// copies of both as the chain got them, to see what it changed, and the
// request's Info.
type chainScratch struct {
	resp    chain.Headers
	reqWas  chain.Headers
	respWas chain.Headers
	info    chain.Info
}

// reuse empties cs for the next exchange, keeping its slices.
func (cs *chainScratch) reuse() chainScratch {
	return chainScratch{resp: cs.resp[:0], reqWas: cs.reqWas[:0], respWas: cs.respWas[:0]}
}

// info fills the exchange's Info; requestID is a string the caller made.
func (x *exchange) info(ctx *fasthttp.RequestCtx, requestID string) *chain.Info {
	x.cs.info = chain.Info{
		RequestID:     requestID,
		SessionID:     x.session,
		Route:         x.rt.name,
		Upstream:      x.rt.cfg.Upstream,
		ClientNetAddr: ctx.RemoteAddr(),
		LocalNetAddr:  ctx.LocalAddr(),
		Scheme:        scheme(ctx),
		Protocol:      protocol(ctx.Request.Header.Protocol()),
		StartTime:     x.start,
	}
	return &x.cs.info
}

func protocol(p []byte) string {
	switch string(p) {
	case "HTTP/1.1":
		return "HTTP/1.1"
	case "HTTP/1.0":
		return "HTTP/1.0"
	}
	return string(p)
}

// headerText holds the text of one header map handed to the chain: names
// (lower-cased) and values are slices of one string, so converting a map
// costs one allocation rather than two or three per field. A
// strings.Builder never changes bytes it has handed out, so every slice
// stays valid and immutable whatever the chain keeps.
type headerText struct{ b strings.Builder }

func (t *headerText) add(s []byte, lower bool) string {
	start := t.b.Len()
	if !lower {
		t.b.Write(s)
		return t.b.String()[start:]
	}
	for _, c := range s {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		t.b.WriteByte(c)
	}
	return t.b.String()[start:]
}

func (t *headerText) field(dst chain.Headers, name, value []byte) chain.Headers {
	n := t.add(name, true)
	return append(dst, chain.Header{Name: n, Value: t.add(value, false)})
}

// appendedTo reports whether now is was with fields appended (the usual
// change a plugin makes: none, or an added header) and returns them.
func appendedTo(now, was chain.Headers) (chain.Headers, bool) {
	if len(now) < len(was) {
		return nil, false
	}
	for i := range was {
		if now[i] != was[i] {
			return nil, false
		}
	}
	return now[len(was):], true
}

func scheme(ctx *fasthttp.RequestCtx) string {
	if ctx.IsTLS() {
		return "https"
	}
	return "http"
}

// requestChain runs the request phases. It returns true when the exchange
// is answered (local response or error).
func (x *exchange) requestChain(ctx *fasthttp.RequestCtx, out *fasthttp.Request) bool {
	h := &out.Header
	var t headerText
	size := len(x.reqID) + len(h.Method()) + len(h.RequestURI()) + len(ctx.Host())
	for k, v := range h.All() {
		size += len(k) + len(v)
	}
	t.b.Grow(size)
	reqID := t.add(x.reqID, false)
	s, err := x.rt.chain.NewStream(x.info(ctx, reqID))
	if err != nil {
		x.fail(ctx, fasthttp.StatusServiceUnavailable, "plugin chain unavailable: "+oneLine(err.Error()), err)
		return true
	}
	x.stream = s

	x.headers = append(x.headers[:0],
		chain.Header{Name: ":method", Value: t.add(h.Method(), false)},
		chain.Header{Name: ":path", Value: t.add(h.RequestURI(), false)},
		chain.Header{Name: ":authority", Value: t.add(ctx.Host(), false)},
		chain.Header{Name: ":scheme", Value: scheme(ctx)},
	)
	for k, v := range h.All() {
		x.headers = t.field(x.headers, k, v)
	}
	x.cs.reqWas = append(x.cs.reqWas[:0], x.headers...)
	cl := h.ContentLength()
	hasBody := cl > 0 || cl == -1
	res := s.RequestHeaders(&x.headers, !hasBody)
	if res.Action == chain.Respond {
		x.local(ctx, res)
		return true
	}
	if added, ok := appendedTo(x.headers, x.cs.reqWas); ok {
		addRequestHeaders(out, added)
	} else {
		applyRequestHeaders(out, x.headers)
	}

	if !hasBody {
		return false
	}
	var body []byte
	if out.IsBodyStream() {
		body, err = io.ReadAll(&x.reqBody)
		if err != nil {
			code, reason := bodyStatus(err)
			ctx.SetConnectionClose()
			x.fail(ctx, code, reason, err)
			return true
		}
	} else {
		body = out.Body()
	}
	res = s.RequestBody(&body, true)
	if res.Action == chain.Respond {
		x.local(ctx, res)
		return true
	}
	out.SetBody(body)
	out.Header.SetContentLength(len(body))
	return false
}

// applyRequestHeaders makes out's headers what the chain left in hs.
func applyRequestHeaders(out *fasthttp.Request, hs chain.Headers) {
	h := &out.Header
	h.ResetConnectionClose()
	keys := make([]string, 0, len(hs))
	for k := range h.All() {
		keys = append(keys, string(k))
	}
	for _, k := range keys {
		h.Del(k)
	}
	addRequestHeaders(out, hs)
}

// addRequestHeaders adds the fields of hs to out; pseudo-headers set the
// method, path and host (the last of each wins).
func addRequestHeaders(out *fasthttp.Request, hs chain.Headers) {
	h := &out.Header
	var uri, host string
	method := ""
	for _, f := range hs {
		switch f.Name {
		case ":method":
			method = f.Value
		case ":path":
			uri = f.Value
		case ":authority":
			host = f.Value
		case ":scheme":
		default:
			if len(f.Name) > 0 && f.Name[0] == ':' {
				continue
			}
			h.Add(f.Name, f.Value)
		}
	}
	if method != "" {
		h.SetMethod(method)
	}
	if uri != "" {
		h.SetRequestURI(uri)
	}
	if host != "" {
		h.SetHost(host)
	}
}

// responseHeadersChain runs the response header phase; true when the
// exchange was answered locally instead.
func (x *exchange) responseHeadersChain(ctx *fasthttp.RequestCtx) bool {
	h := &ctx.Response.Header
	var status [8]byte
	code := strconv.AppendInt(status[:0], int64(h.StatusCode()), 10)
	var t headerText
	size := len(code)
	for k, v := range h.All() {
		size += len(k) + len(v)
	}
	t.b.Grow(size)
	// Its own map: the request's may still be read (on_log, properties).
	hs := append(x.cs.resp[:0], chain.Header{Name: ":status", Value: t.add(code, false)})
	for k, v := range h.All() {
		hs = t.field(hs, k, v)
	}
	x.cs.resp = hs
	x.cs.respWas = append(x.cs.respWas[:0], hs...)
	noBody := ctx.Request.Header.IsHead() || (x.lease == nil && len(x.resp.Body()) == 0)
	res := x.stream.ResponseHeaders(&x.cs.resp, noBody)
	if res.Action == chain.Respond {
		x.local(ctx, res)
		return true
	}
	added, ok := appendedTo(x.cs.resp, x.cs.respWas)
	if !ok {
		var keep []string
		for k := range h.All() {
			keep = append(keep, string(k))
		}
		for _, k := range keep {
			h.Del(k)
		}
		added = x.cs.resp
	}
	for _, f := range added {
		if f.Name == ":status" {
			if n, err := strconv.Atoi(f.Value); err == nil && n >= 100 && n < 1000 {
				h.SetStatusCode(n)
				x.status = n
			}
			continue
		}
		if len(f.Name) > 0 && f.Name[0] == ':' {
			continue
		}
		h.Add(f.Name, f.Value)
	}
	return false
}

// chainRead passes a non-SSE response body through the chain chunk by
// chunk (or whole, when the chain asks to Buffer).
func (x *exchange) chainRead(b []byte) (int, error) {
	for len(x.pending) == 0 {
		if x.bodyEOF {
			return 0, io.EOF
		}
		if cap(x.chunk) < responseChunk {
			x.chunk = make([]byte, responseChunk)
		}
		n, err := x.body.Read(x.chunk[:responseChunk])
		eos := err == io.EOF
		x.upEOF = eos
		if err != nil && !eos {
			x.bodyErr = err
			return 0, err
		}
		data := x.chunk[:n]
		if x.bufferOn {
			if int64(len(x.buffered)+n) > x.p.maxBody {
				return 0, errors.New("buffered response body over limits.max_body_bytes")
			}
			x.buffered = append(x.buffered, data...)
			data = x.buffered
		}
		if n == 0 && !eos {
			continue
		}
		res := x.stream.ResponseBody(&data, eos)
		switch res.Action {
		case chain.Buffer:
			if !eos {
				if !x.bufferOn {
					x.bufferOn = true
					x.buffered = append(x.buffered[:0], data...)
				}
				continue
			}
		case chain.Respond:
			x.recordPlugin(res, "local_response")
			return 0, errPluginEnded
		}
		x.bufferOn = false
		x.buffered = x.buffered[:0]
		x.pending = data
		x.bodyEOF = eos
	}
	n := copy(b, x.pending)
	x.pending = x.pending[n:]
	return n, nil
}

// local answers the client with a chain's local response.
func (x *exchange) local(ctx *fasthttp.RequestCtx, res chain.Result) {
	lr := res.Response
	if lr == nil {
		lr = &chain.LocalResponse{Status: fasthttp.StatusInternalServerError, Body: []byte("plugin answered without a response\n")}
	}
	ctx.Response.Reset()
	status := lr.Status
	if status < 100 || status > 999 {
		status = fasthttp.StatusInternalServerError
	}
	ctx.Response.SetStatusCode(status)
	for _, f := range lr.Headers {
		if len(f.Name) > 0 && f.Name[0] != ':' {
			ctx.Response.Header.Add(f.Name, f.Value)
		}
	}
	ctx.Response.Header.SetBytesKV(hdrXRequestID, x.reqID)
	ctx.Response.SetBody(lr.Body)
	x.status = status
	x.rt.m.observe(status, 0)
	x.p.log.Info("plugin answered locally", "route", x.rt.name, "plugin", res.Plugin, "status", status, "details", lr.Details, "request_id", string(x.reqID))
	x.recordPlugin(res, "local_response")
}

// recordPlugin sends a plugin decision to the session sink.
func (x *exchange) recordPlugin(res chain.Result, decision string) {
	if !x.records() {
		return
	}
	e := x.newEvent(event.Plugin)
	e.Plugin = res.Plugin
	e.Decision = decision
	if res.Response != nil {
		e.Status = res.Response.Status
		e.Message = oneLine(res.Response.Details)
	}
	x.p.sink.Record(e)
}

func oneLine(s string) string {
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		return s[:i]
	}
	return s
}
