package proxy

import (
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/wasmgate/wasmgate/gateway/config"
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
func sessionKey(ctx *fasthttp.RequestCtx, k config.SessionKey) []byte {
	switch {
	case k.Header != "":
		return ctx.Request.Header.Peek(k.Header)
	case k.Cookie != "":
		return ctx.Request.Header.Cookie(k.Cookie)
	case k.Query != "":
		return ctx.QueryArgs().Peek(k.Query)
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
	key := sessionKey(ctx, x.rt.cfg.Session)
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
	key := h.Peek(x.rt.cfg.Session.Header)
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
type redactor map[string]bool

func newRedactor(names []string) redactor {
	r := make(redactor, len(names))
	for _, n := range names {
		r[strings.ToLower(n)] = true
	}
	return r
}

func (r redactor) add(dst []event.Header, k, v []byte) []event.Header {
	name := string(k)
	value := "[redacted]"
	if !r[strings.ToLower(name)] {
		value = string(v)
	}
	return append(dst, event.Header{Name: name, Value: value})
}

// recordRequest sends the request event (headers redacted, body captured
// up to sessions.capture_body_bytes when it was read with the headers).
func (x *exchange) recordRequest(ctx *fasthttp.RequestCtx, out *fasthttp.Request) {
	e := x.newEvent(event.Request)
	e.Method = string(out.Header.Method())
	e.Path = string(out.Header.RequestURI())
	for k, v := range out.Header.All() {
		e.Headers = x.p.settings().redact.add(e.Headers, k, v)
	}
	e.BodyBytes = int64(out.Header.ContentLength())
	if !out.IsBodyStream() {
		b := out.Body()
		e.BodyBytes = int64(len(b))
		e.Body = append([]byte(nil), b[:min(len(b), x.p.settings().captureBody)]...)
	}
	x.method, x.path = e.Method, e.Path
	x.p.sink.Record(e)
}

func (x *exchange) recordResponse(h *fasthttp.ResponseHeader) {
	e := x.newEvent(event.Response)
	e.Method, e.Path = x.method, x.path
	e.Status = x.status
	e.Latency = time.Since(x.start)
	for k, v := range h.All() {
		e.Headers = x.p.settings().redact.add(e.Headers, k, v)
	}
	e.BodyBytes = int64(h.ContentLength())
	x.p.sink.Record(e)
}

func (x *exchange) recordError(code int, reason string) {
	e := x.newEvent(event.Error)
	e.Method, e.Path = x.method, x.path
	e.Status = code
	e.Message = reason
	x.p.sink.Record(e)
}
