package proxy_test

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wasmgate/wasmgate/gateway/config"
	"github.com/wasmgate/wasmgate/gateway/event"
	"github.com/wasmgate/wasmgate/gateway/proxy"
	"github.com/wasmgate/wasmgate/gateway/session"
	"github.com/wasmgate/wasmgate/gateway/sse"
)

// memSink keeps every event.
type memSink struct {
	mu     sync.Mutex
	events []*event.Event
}

func (s *memSink) Record(e *event.Event) bool {
	s.mu.Lock()
	s.events = append(s.events, e)
	s.mu.Unlock()
	return true
}

func (s *memSink) of(session string) []*event.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*event.Event
	for _, e := range s.events {
		if e.Session == session {
			out = append(out, e)
		}
	}
	return out
}

type tableSessions struct{ t *session.Table }

func (s tableSessions) Touch(id, route string) (proxy.Session, bool, error) {
	sess, started, err := s.t.Touch(id, route)
	if err != nil {
		return nil, false, err
	}
	return sess, started, nil
}
func (s tableSessions) End(id, reason string) bool { return s.t.End(id, reason) }

func types(evs []*event.Event) string {
	var b []string
	for _, e := range evs {
		b = append(b, e.Type.String())
	}
	return strings.Join(b, ",")
}

func TestSessionsMCPFlow(t *testing.T) {
	verifyNone(t)
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == "POST" && r.Header.Get("Mcp-Session-Id") == "":
			w.Header().Set("Mcp-Session-Id", "sess-1")
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{}}`)
		case r.Method == "GET":
			sseHandler(3, 0, "m")(w, r)
		case r.Method == "DELETE":
			w.WriteHeader(204)
		default:
			io.WriteString(w, "{}")
		}
	}))
	cfg := testConfig(t, []string{up.addr}, nil)
	sink := &memSink{}
	table := session.NewTable(cfg.Sessions, cfg.SSE, sink, testLogger(), prometheus.NewRegistry())
	defer table.Close()
	g := startGateway(t, cfg, tableSessions{table}, sink)
	c := newClient(t)

	// initialize: the upstream issues the session id.
	req, _ := http.NewRequest("POST", "http://"+g.addr+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize"}`))
	req.Header.Set("Authorization", "Bearer secret")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.Header.Get("Mcp-Session-Id") != "sess-1" {
		t.Fatalf("session header not relayed: %v", resp.Header)
	}
	if _, ok := table.Get("sess-1"); !ok {
		t.Fatal("session not started from the upstream's Mcp-Session-Id")
	}

	// The SSE stream of the session: event ids are tracked.
	req, _ = http.NewRequest("GET", "http://"+g.addr+"/mcp", nil)
	req.Header.Set("Mcp-Session-Id", "sess-1")
	req.Header.Set("Accept", "text/event-stream")
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	p := sse.NewParser(resp.Body, 0)
	for i := 0; i < 3; i++ {
		if _, err := p.Next(); err != nil {
			t.Fatal(err)
		}
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	s, _ := table.Get("sess-1")
	if !s.KnowsEventID("r /mcp", "2") {
		t.Error("event id 2 of stream \"r /mcp\" not tracked")
	}

	// DELETE ends the session.
	req, _ = http.NewRequest("DELETE", "http://"+g.addr+"/mcp", nil)
	req.Header.Set("Mcp-Session-Id", "sess-1")
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if _, ok := table.Get("sess-1"); ok {
		t.Fatal("DELETE did not end the session")
	}

	evs := sink.of("sess-1")
	want := "session_start,request,response,request,response,sse_event,sse_event,sse_event,request,response,session_end"
	if got := types(evs); got != want {
		t.Fatalf("events\n got %s\nwant %s", got, want)
	}
	for _, h := range evs[1].Headers {
		if h.Name == "Authorization" && h.Value != "[redacted]" {
			t.Errorf("Authorization recorded as %q", h.Value)
		}
	}
	if string(evs[1].Body) != `{"jsonrpc":"2.0","id":1,"method":"initialize"}` || evs[1].Method != "POST" {
		t.Errorf("request event: %+v", evs[1])
	}
	if evs[2].Status != 200 || evs[5].EventID != "0" || string(evs[7].Data) != "m-2" || evs[7].Stream != "r /mcp" {
		t.Errorf("response/sse events: %+v %+v %+v", evs[2], evs[5], evs[7])
	}
}

func TestSessionKeyFromCookieAndQuery(t *testing.T) {
	verifyNone(t)
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	cfg := testConfig(t, []string{up.addr}, func(c *config.Config) {
		c.Routes[0].Session = config.SessionKey{Cookie: "sid"}
		r := c.Routes[0]
		r.Name, r.Match.PathPrefix, r.Session = "q", "/q", config.SessionKey{Query: "session"}
		c.Routes = append(c.Routes, r)
	})
	sink := &memSink{}
	table := session.NewTable(cfg.Sessions, cfg.SSE, sink, testLogger(), prometheus.NewRegistry())
	defer table.Close()
	g := startGateway(t, cfg, tableSessions{table}, sink)
	c := newClient(t)
	req, _ := http.NewRequest("GET", "http://"+g.addr+"/a", nil)
	req.AddCookie(&http.Cookie{Name: "sid", Value: "cookie-1"})
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = c.Get("http://" + g.addr + "/q?session=query-1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, id := range []string{"cookie-1", "query-1"} {
		if s, ok := table.Get(id); !ok {
			t.Errorf("session %s not started", id)
		} else if id == "query-1" && s.Route != "q" {
			t.Errorf("session %s on route %s", id, s.Route)
		}
	}
	// A bad id is refused.
	resp, err = c.Get("http://" + g.addr + "/q?session=" + strings.Repeat("x", 300))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("oversized session id: status %d", resp.StatusCode)
	}
	_ = time.Second
}

// TestSessionHeaderNameAnyCase checks that a session header configured in
// lower case finds the id whatever case the client or the upstream writes
// it in (the name is put in canonical form once per route).
func TestSessionHeaderNameAnyCase(t *testing.T) {
	verifyNone(t)
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/init" {
			w.Header()["X-MY-SESSION"] = []string{"from-upstream"}
		}
		io.WriteString(w, "ok")
	}))
	cfg := testConfig(t, []string{up.addr}, func(c *config.Config) {
		c.Routes[0].Session = config.SessionKey{Header: "x-my-session"}
	})
	sink := &memSink{}
	table := session.NewTable(cfg.Sessions, cfg.SSE, sink, testLogger(), prometheus.NewRegistry())
	defer table.Close()
	g := startGateway(t, cfg, tableSessions{table}, sink)
	resp := rawRequest(t, g.addr, "GET /a HTTP/1.1\r\nHost: x\r\nx-MY-session: from-client\r\nConnection: close\r\n\r\n", 5*time.Second)
	if statusOf(resp) != 200 {
		t.Fatalf("got %q", resp)
	}
	resp = rawRequest(t, g.addr, "GET /init HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 5*time.Second)
	if statusOf(resp) != 200 {
		t.Fatalf("got %q", resp)
	}
	for _, id := range []string{"from-client", "from-upstream"} {
		if _, ok := table.Get(id); !ok {
			t.Errorf("session %s not started", id)
		}
	}
	// DELETE with the key ends the session.
	resp = rawRequest(t, g.addr, "DELETE /a HTTP/1.1\r\nHost: x\r\nX-My-Session: from-client\r\nConnection: close\r\n\r\n", 5*time.Second)
	if statusOf(resp) != 200 {
		t.Fatalf("got %q", resp)
	}
	if _, ok := table.Get("from-client"); ok {
		t.Errorf("session from-client still open after DELETE")
	}
}

// TestRecordedHeaders checks what the request and response events hold:
// every field with its exact value, redacted ones (matched in any case,
// long names included) as "[redacted]", the path with its query, and a
// header block larger than the capture scratch's first size.
func TestRecordedHeaders(t *testing.T) {
	verifyNone(t)
	longName := "X-" + strings.Repeat("Secret", 12) // 74 bytes
	big := strings.Repeat("v", 3000)
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Set-Cookie", "id=1")
		w.Header().Set("X-Big", big)
		io.WriteString(w, "{}")
	}))
	cfg := testConfig(t, []string{up.addr}, nil)
	cfg.Sessions.Redact = append(cfg.Sessions.Redact, strings.ToLower(longName))
	sink := &memSink{}
	table := session.NewTable(cfg.Sessions, cfg.SSE, sink, testLogger(), prometheus.NewRegistry())
	defer table.Close()
	g := startGateway(t, cfg, tableSessions{table}, sink)
	c := newClient(t)

	req, _ := http.NewRequest("GET", "http://"+g.addr+"/mcp?x=1&y=%20", nil)
	req.Header.Set("Mcp-Session-Id", "hdr-1")
	req.Header["authorization"] = []string{"Bearer secret"}
	req.Header.Set("X-API-KEY", "k")
	req.Header.Set(longName, "s")
	req.Header.Set("X-Plain", big)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	evs := sink.of("hdr-1")
	if got := types(evs); got != "session_start,request,response" {
		t.Fatalf("events %s", got)
	}
	headers := func(e *event.Event) map[string]string {
		m := map[string]string{}
		for _, h := range e.Headers {
			m[strings.ToLower(h.Name)] = h.Value
		}
		return m
	}
	rq, rs := evs[1], evs[2]
	if rq.Method != "GET" || rq.Path != "/mcp?x=1&y=%20" || rs.Method != "GET" || rs.Path != rq.Path {
		t.Errorf("method/path: request %q %q, response %q %q", rq.Method, rq.Path, rs.Method, rs.Path)
	}
	for _, c := range []struct {
		e           *event.Event
		name, value string
	}{
		{rq, "authorization", "[redacted]"},
		{rq, "x-api-key", "[redacted]"},
		{rq, strings.ToLower(longName), "[redacted]"},
		{rq, "x-plain", big},
		{rq, "mcp-session-id", "hdr-1"},
		{rs, "set-cookie", "[redacted]"},
		{rs, "x-big", big},
	} {
		if got, ok := headers(c.e)[c.name]; !ok || got != c.value {
			t.Errorf("%s event: %s = %.40q (present %v), want %.40q", c.e.Type, c.name, got, ok, c.value)
		}
	}
}
