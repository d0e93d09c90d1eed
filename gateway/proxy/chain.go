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

func (x *exchange) info(ctx *fasthttp.RequestCtx) *chain.Info {
	return &chain.Info{
		RequestID:  string(x.reqID),
		SessionID:  x.session,
		Route:      x.rt.name,
		Upstream:   x.rt.cfg.Upstream,
		ClientAddr: ctx.RemoteAddr().String(),
		LocalAddr:  ctx.LocalAddr().String(),
		Scheme:     scheme(ctx),
		Protocol:   string(ctx.Request.Header.Protocol()),
		StartTime:  x.start,
	}
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
	s, err := x.rt.chain.NewStream(x.info(ctx))
	if err != nil {
		x.fail(ctx, fasthttp.StatusServiceUnavailable, "plugin chain unavailable: "+oneLine(err.Error()), err)
		return true
	}
	x.stream = s

	h := &out.Header
	x.headers = append(x.headers[:0],
		chain.Header{Name: ":method", Value: string(h.Method())},
		chain.Header{Name: ":path", Value: string(h.RequestURI())},
		chain.Header{Name: ":authority", Value: string(ctx.Host())},
		chain.Header{Name: ":scheme", Value: scheme(ctx)},
	)
	for k, v := range h.All() {
		x.headers = append(x.headers, chain.Header{Name: strings.ToLower(string(k)), Value: string(v)})
	}
	cl := h.ContentLength()
	hasBody := cl > 0 || cl == -1
	res := s.RequestHeaders(&x.headers, !hasBody)
	if res.Action == chain.Respond {
		x.local(ctx, res)
		return true
	}
	applyRequestHeaders(out, x.headers)

	if !hasBody {
		return false
	}
	var body []byte
	if out.IsBodyStream() {
		body, err = io.ReadAll(&x.reqBody)
		if err != nil {
			code, reason := fasthttp.StatusBadRequest, "malformed request body"
			if x.reqBody.exceeded {
				code, reason = fasthttp.StatusRequestEntityTooLarge, "request body too large"
			}
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

func applyRequestHeaders(out *fasthttp.Request, hs chain.Headers) {
	h := &out.Header
	var uri, host string
	method := ""
	h.ResetConnectionClose()
	keys := make([]string, 0, len(hs))
	for k := range h.All() {
		keys = append(keys, string(k))
	}
	for _, k := range keys {
		h.Del(k)
	}
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
	x.headers = append(x.headers[:0], chain.Header{Name: ":status", Value: strconv.Itoa(h.StatusCode())})
	for k, v := range h.All() {
		x.headers = append(x.headers, chain.Header{Name: strings.ToLower(string(k)), Value: string(v)})
	}
	noBody := ctx.Request.Header.IsHead() || (x.lease == nil && len(x.resp.Body()) == 0)
	res := x.stream.ResponseHeaders(&x.headers, noBody)
	if res.Action == chain.Respond {
		x.local(ctx, res)
		return true
	}
	var keep []string
	for k := range h.All() {
		keep = append(keep, string(k))
	}
	for _, k := range keep {
		h.Del(k)
	}
	for _, f := range x.headers {
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
	if x.session == "" {
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
