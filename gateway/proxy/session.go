package proxy

import (
	"bytes"
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

// newEvent takes an event from the pool (event.New) and fills in what
// every event of x holds. The request id is copied into the event: the
// store may write it after x has moved on to another request.
func (x *exchange) newEvent(t event.Type) *event.Event {
	e := event.New()
	e.Session = x.session
	e.Time = time.Now()
	e.Type = t
	e.Route = x.rt.name
	e.RequestID = e.KeepString(x.reqID)
	return e
}

// redactor records header fields, hiding the values of sessions.redact.
type redactor struct{ event.HeaderSet }

func newRedactor(names []string) redactor {
	return redactor{event.NewHeaderSet(names)}
}

// add records one header field in e: its name and value (or
// event.Redacted) copied into the event's own storage.
func (r redactor) add(e *event.Event, name, value []byte) {
	if r.HasBytes(name) {
		e.Headers = append(e.Headers, event.Header{Name: e.KeepString(name), Value: event.Redacted})
		return
	}
	e.AddHeader(name, value)
}

// captureRequest records the fields of h as the upstream gets them. It
// reads them from the header block fasthttp writes (AppendBytes), not with
// RequestHeader.All: All parses the Cookie field into cookies, which Write
// then sends re-serialized.
func (r redactor) captureRequest(e *event.Event, h *fasthttp.RequestHeader) {
	b := outBufPool.Get().(*[]byte)
	defer putOut(b)
	*b = h.AppendBytes((*b)[:0])
	// Lines end in CRLF (AppendBytes writes them; values hold no CR or
	// LF): find the LF, drop the CR.
	block := *b
	if i := bytes.IndexByte(block, '\n'); i >= 0 {
		block = block[i+1:] // the request line
	}
	for {
		i := bytes.IndexByte(block, '\n')
		if i <= 1 {
			break // the blank line that ends the block
		}
		line := block[:i-1]
		block = block[i+1:]
		name, value := line, []byte(nil)
		if c := bytes.IndexByte(line, ':'); c >= 0 {
			// AppendBytes writes "name: value".
			name, value = line[:c], line[c+1:]
			if len(value) > 0 && value[0] == ' ' {
				value = value[1:]
			}
		}
		r.add(e, name, value)
	}
}

// captureResponse records the fields of h.
func (r redactor) captureResponse(e *event.Event, h *fasthttp.ResponseHeader) {
	for k, v := range h.All() {
		r.add(e, k, v)
	}
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
	h := &out.Header
	// Method and path are a string of x's own (not held by the event):
	// the exchange's later events record them too, and this event may be
	// written and released before they are.
	x.method, x.path = methodString(h.Method()), string(h.RequestURI())
	e.Method, e.Path = x.method, x.path
	set.redact.captureRequest(e, h)
	e.BodyBytes = int64(h.ContentLength())
	if !out.IsBodyStream() {
		b := out.Body()
		e.BodyBytes = int64(len(b))
		if n := min(len(b), set.captureBody); n > 0 {
			e.Body = e.Keep(b[:n])
		}
	}
	x.p.sink.Record(e)
}

func (x *exchange) recordResponse(h *fasthttp.ResponseHeader) {
	if !x.records() {
		return
	}
	e := x.newEvent(event.Response)
	e.Method, e.Path = x.method, x.path
	e.Status = x.status
	e.Latency = time.Since(x.start)
	x.p.settings().redact.captureResponse(e, h)
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
