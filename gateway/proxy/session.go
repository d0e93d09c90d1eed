package proxy

import (
	"bytes"
	"iter"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/wasmgate/wasmgate/gateway/event"
)

// ReasonDeleted is the session end reason for a client DELETE (matches
// gateway/session.ReasonDeleted).
const ReasonDeleted = "deleted"

// Sessions is what the proxy needs of the session table
// (gateway/session.Table, adapted in package gateway).
type Sessions interface {
	// Touch marks the session active, starting it when unknown; an error
	// (table full) refuses the request with 503.
	Touch(id, route string) (Session, bool, error)
	// End ends a session; false when it was unknown.
	End(id, reason string) bool
}

// Session is one live session.
type Session interface {
	// TrackEventID remembers an SSE event id seen on stream.
	TrackEventID(stream, id string)
}

// sessionKey reads the session id the route's config names.
func sessionKey(ctx *fasthttp.RequestCtx, rt *route) []byte {
	switch k := rt.cfg.Session; {
	case k.Header != "":
		// The name was put in fasthttp's canonical form once, for the
		// route: Peek would copy and normalize it on every request.
		return ctx.Request.Header.PeekCanonical(rt.sessionHeader)
	case k.Cookie != "":
		return cookieValue(&ctx.Request.Header, k.Cookie)
	case k.Query != "":
		return ctx.QueryArgs().Peek(k.Query)
	}
	return nil
}

// cookieValue finds cookie name in h's Cookie fields without
// RequestHeader.Cookie, which parses them into cookies that Write then
// serializes again: the upstream gets the Cookie field as the client sent
// it. Like fasthttp it takes the first match, trimmed and unquoted.
func cookieValue(h *fasthttp.RequestHeader, name string) []byte {
	for _, field := range h.PeekAll(fasthttp.HeaderCookie) {
		for part := range bytes.SplitSeq(field, []byte{';'}) {
			i := bytes.IndexByte(part, '=')
			if i < 0 || string(bytes.Trim(part[:i], " \t")) != name {
				continue
			}
			v := bytes.Trim(part[i+1:], " \t")
			if len(v) > 1 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			return v
		}
	}
	return nil
}

// validSessionID accepts visible ASCII only (it is used as a store key and
// echoed in logs), up to 256 bytes.
func validSessionID(b []byte) bool {
	if len(b) == 0 || len(b) > 256 {
		return false
	}
	for _, c := range b {
		if c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// beginSession resolves the request's session. It returns false when the
// request was refused.
func (x *exchange) beginSession(ctx *fasthttp.RequestCtx) bool {
	if x.p.sessions == nil {
		return true
	}
	key := sessionKey(ctx, x.rt)
	if len(key) == 0 {
		return true
	}
	if !validSessionID(key) {
		x.fail(ctx, fasthttp.StatusBadRequest, "invalid session id", nil)
		return false
	}
	id := string(key)
	s, _, err := x.p.sessions.Touch(id, x.rt.name)
	if err != nil {
		x.fail(ctx, fasthttp.StatusServiceUnavailable, oneLine(err.Error()), err)
		return false
	}
	x.session, x.sess = id, s
	return true
}

// sessionFromResponse starts a session the upstream created (an MCP
// initialize answer carrying Mcp-Session-Id).
func (x *exchange) sessionFromResponse(h *fasthttp.ResponseHeader) {
	if x.p.sessions == nil || x.session != "" || x.rt.cfg.Session.Header == "" {
		return
	}
	key := h.PeekCanonical(x.rt.sessionHeader)
	if !validSessionID(key) {
		return
	}
	id := string(key)
	s, _, err := x.p.sessions.Touch(id, x.rt.name)
	if err != nil {
		x.p.log.Warn("session not started", "route", x.rt.name, "err", err)
		return
	}
	x.session, x.sess = id, s
}

// records reports whether x's events are recorded: it has a session and
// recording is on. With storage.enabled off the sink is event.Discard, and
// capturing headers and bodies for it cost about 4 of the 50 CPU-µs that
// BenchmarkGatewayRecording spends per request (client and upstream
// included).
func (x *exchange) records() bool {
	return x.session != "" && x.p.sink != event.Discard
}

func (x *exchange) newEvent(t event.Type) *event.Event {
	return &event.Event{
		Session:   x.session,
		Time:      time.Now(),
		Type:      t,
		Route:     x.rt.name,
		RequestID: string(x.reqID),
	}
}

// redactor records header fields, hiding the values of sessions.redact.
type redactor struct{ event.HeaderSet }

func newRedactor(names []string) redactor {
	return redactor{event.NewHeaderSet(names)}
}

// headerSource is what fasthttp's request and response headers offer to
// capture.
type headerSource interface {
	All() iter.Seq2[[]byte, []byte]
	Len() int
}

// captureHeaders records the fields of h (values redacted). All names and
// values share one string, and prefix (the request path) goes first in it:
// three allocations per event instead of two per field.
func (r redactor) captureHeaders(h headerSource, prefix []byte) (string, []event.Header) {
	sc := captureScratchPool.Get().(*captureScratch)
	defer sc.release()
	sc.buf = append(sc.buf[:0], prefix...)
	sc.spans = sc.spans[:0]
	for k, v := range h.All() {
		sp := span{name: len(sc.buf)}
		sc.buf = append(sc.buf, k...)
		sp.value = len(sc.buf)
		if r.HasBytes(k) {
			sc.buf = append(sc.buf, event.Redacted...)
		} else {
			sc.buf = append(sc.buf, v...)
		}
		sp.end = len(sc.buf)
		sc.spans = append(sc.spans, sp)
	}
	all := string(sc.buf)
	if len(sc.spans) == 0 {
		return all, nil
	}
	hs := make([]event.Header, len(sc.spans))
	for i, sp := range sc.spans {
		hs[i] = event.Header{Name: all[sp.name:sp.value], Value: all[sp.value:sp.end]}
	}
	return all[:len(prefix)], hs
}

// captureScratch assembles one event's header fields.
type captureScratch struct {
	buf   []byte
	spans []span
}

// span locates one field in captureScratch.buf: name buf[name:value],
// value buf[value:end].
type span struct{ name, value, end int }

var captureScratchPool = sync.Pool{New: func() any { return new(captureScratch) }}

func (sc *captureScratch) release() {
	if cap(sc.buf) > 64<<10 || cap(sc.spans) > 1024 {
		return // an outsized header block: let it go
	}
	captureScratchPool.Put(sc)
}

// methodString returns m as a string, without allocating for the common
// methods.
func methodString(m []byte) string {
	for _, s := range commonMethods {
		if string(m) == s {
			return s
		}
	}
	return string(m)
}

var commonMethods = [...]string{
	fasthttp.MethodGet, fasthttp.MethodPost, fasthttp.MethodDelete, fasthttp.MethodPut,
	fasthttp.MethodPatch, fasthttp.MethodHead, fasthttp.MethodOptions,
}

// recordRequest sends the request event (headers redacted, body captured
// up to sessions.capture_body_bytes when it was read with the headers).
func (x *exchange) recordRequest(ctx *fasthttp.RequestCtx, out *fasthttp.Request) {
	if !x.records() {
		return
	}
	e := x.newEvent(event.Request)
	set := x.p.settings()
	e.Method = methodString(out.Header.Method())
	h := &out.Header
	if len(h.PeekAll(fasthttp.HeaderCookie)) > 0 {
		// RequestHeader.All, which captureHeaders uses, parses the Cookie
		// field into cookies that Write would then send re-serialized:
		// capture from a copy so the upstream gets the field as it came.
		c := cookieHeaders.Get().(*fasthttp.RequestHeader)
		defer cookieHeaders.Put(c)
		h.CopyTo(c)
		h = c
	}
	e.Path, e.Headers = set.redact.captureHeaders(h, h.RequestURI())
	e.BodyBytes = int64(out.Header.ContentLength())
	if !out.IsBodyStream() {
		b := out.Body()
		e.BodyBytes = int64(len(b))
		if n := min(len(b), set.captureBody); n > 0 {
			e.Body = append([]byte(nil), b[:n]...)
		}
	}
	x.method, x.path = e.Method, e.Path
	x.p.sink.Record(e)
}

// cookieHeaders holds request headers recordRequest captures from.
var cookieHeaders = sync.Pool{New: func() any { return new(fasthttp.RequestHeader) }}

func (x *exchange) recordResponse(h *fasthttp.ResponseHeader) {
	if !x.records() {
		return
	}
	e := x.newEvent(event.Response)
	e.Method, e.Path = x.method, x.path
	e.Status = x.status
	e.Latency = time.Since(x.start)
	_, e.Headers = x.p.settings().redact.captureHeaders(h, nil)
	e.BodyBytes = int64(h.ContentLength())
	x.p.sink.Record(e)
}

func (x *exchange) recordError(code int, reason string) {
	if !x.records() {
		return
	}
	e := x.newEvent(event.Error)
	e.Method, e.Path = x.method, x.path
	e.Status = code
	e.Message = reason
	x.p.sink.Record(e)
}
