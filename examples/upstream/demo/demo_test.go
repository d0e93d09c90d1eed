package demo

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/wasmgate/wasmgate/gateway/sse"
)

// fasthttp keeps one process-wide goroutine refreshing its Date header.
var ignoreFasthttpDate = goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1")

func start(t *testing.T) (*Server, *http.Client, string) {
	t.Helper()
	s, err := Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{DisableCompression: true}
	c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		goleak.VerifyNone(t, ignoreFasthttpDate)
	})
	return s, c, "http://" + s.Addr()
}

func get(t *testing.T, c *http.Client, url string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func TestSimpleEndpoints(t *testing.T) {
	_, c, base := start(t)
	tests := []struct {
		path       string
		wantStatus int
		wantBody   string
	}{
		{"/json", 200, JSONBody},
		{"/health", 200, "ok\n"},
		{"/status/418", 418, "status 418\n"},
		{"/status/503", 503, "status 503\n"},
		{"/status/204", 204, ""},
		{"/status/99", 400, "status code must be 200-599\n"},
		{"/status/abc", 400, "status code must be 200-599\n"},
		{"/bytes?n=10", 200, Pattern[:10]},
		{"/bytes?n=0", 200, ""},
		{"/bytes?n=-1", 400, "n must be a byte count\n"},
		{"/bytes?n=2000000000", 400, "n is over the limit of 1073741824\n"},
		{"/slow?delay=forever", 400, "delay must be a duration up to 1m\n"},
		{"/sse?n=x", 400, "n must be an event count (0: endless)\n"},
		{"/nope", 404, "no such endpoint: /nope\n"},
	}
	for _, tt := range tests {
		resp, body := get(t, c, base+tt.path)
		if resp.StatusCode != tt.wantStatus || string(body) != tt.wantBody {
			t.Errorf("GET %s = %d %q, want %d %q", tt.path, resp.StatusCode, body, tt.wantStatus, tt.wantBody)
		}
	}
	var v map[string]any
	if _, body := get(t, c, base+"/json"); json.Unmarshal(body, &v) != nil {
		t.Errorf("/json is not JSON: %q", body)
	}
	resp, err := c.Post(base+"/json", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 {
		t.Errorf("POST /json = %d, want 405", resp.StatusCode)
	}
}

func TestBytesLarge(t *testing.T) {
	_, c, base := start(t)
	for _, n := range []int{100, 16 << 10, 64 << 10, 64<<10 + 1, 3<<20 + 7} {
		resp, body := get(t, c, base+"/bytes?n="+strconv.Itoa(n))
		if resp.ContentLength != int64(n) || len(body) != n {
			t.Fatalf("n=%d: Content-Length %d, %d bytes", n, resp.ContentLength, len(body))
		}
		for i := range body {
			if body[i] != Pattern[i%len(Pattern)] {
				t.Fatalf("n=%d: byte %d is %q", n, i, body[i])
			}
		}
	}
}

func TestEcho(t *testing.T) {
	_, c, base := start(t)
	body := make([]byte, 5<<20)
	rand.Read(body)
	for _, chunked := range []bool{false, true} {
		var r io.Reader = bytes.NewReader(body)
		if chunked {
			r = io.MultiReader(r) // hides the length: chunked encoding
		}
		req, _ := http.NewRequest("PUT", base+"/echo", r)
		req.Header.Set("Content-Type", "application/x-test")
		req.Header.Set("X-Custom", "v1")
		req.Header.Add("X-Multi", "a")
		req.Header.Add("X-Multi", "b")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, body) {
			t.Fatalf("chunked=%v: echoed %d bytes, sent %d", chunked, len(got), len(body))
		}
		h := resp.Header
		if h.Get("Content-Type") != "application/x-test" || h.Get("X-Echo-X-Custom") != "v1" ||
			strings.Join(h.Values("X-Echo-X-Multi"), ",") != "a,b" || h.Get("X-Echo-Host") == "" {
			t.Fatalf("chunked=%v: headers %v", chunked, h)
		}
	}
	resp, _ := get(t, c, base+"/echo")
	if resp.StatusCode != 405 {
		t.Fatalf("GET /echo = %d", resp.StatusCode)
	}
}

func TestHeaders(t *testing.T) {
	_, c, base := start(t)
	_, body := get(t, c, base+"/headers?x=1", "X-Forwarded-For", "10.0.0.1", "X-Request-Id", "abc")
	var v struct {
		Method  string
		URI     string
		Headers map[string][]string
	}
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("%v: %q", err, body)
	}
	if v.Method != "GET" || v.URI != "/headers?x=1" || v.Headers["X-Forwarded-For"][0] != "10.0.0.1" || v.Headers["X-Request-Id"][0] != "abc" {
		t.Fatalf("got %+v", v)
	}
}

func TestSlow(t *testing.T) {
	_, c, base := start(t)
	t0 := time.Now()
	resp, body := get(t, c, base+"/slow?delay=100ms")
	if resp.StatusCode != 200 || string(body) != "slow\n" || time.Since(t0) < 100*time.Millisecond {
		t.Fatalf("got %d %q after %v", resp.StatusCode, body, time.Since(t0))
	}
}

// readEvents reads dispatchable events until n are read or the stream ends.
func readEvents(t *testing.T, r io.Reader, n int) []sse.Event {
	t.Helper()
	p := sse.NewParser(r, 0)
	var out []sse.Event
	for n <= 0 || len(out) < n {
		e, err := p.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if e.Dispatchable() {
			c := *e
			c.Data = bytes.Clone(e.Data)
			out = append(out, c)
		}
	}
	return out
}

func openStream(t *testing.T, c *http.Client, url string, hdr ...string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		resp.Body.Close()
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return resp
}

func TestSSECounter(t *testing.T) {
	_, c, base := start(t)
	tests := []struct {
		query, lastID string
		wantFirst     int
		wantN         int
	}{
		{"n=5&interval=1ms", "", 1, 5},
		{"n=5&interval=0", "3", 4, 2},
		{"n=5", "5", 0, 0},
		{"n=3&interval=0", "junk", 1, 3},
	}
	for _, tt := range tests {
		var hdr []string
		if tt.lastID != "" {
			hdr = []string{"Last-Event-ID", tt.lastID}
		}
		resp := openStream(t, c, base+"/sse?"+tt.query, hdr...)
		evs := readEvents(t, resp.Body, 0)
		resp.Body.Close()
		if len(evs) != tt.wantN {
			t.Fatalf("%s: %d events, want %d", tt.query, len(evs), tt.wantN)
		}
		for i, e := range evs {
			k := strconv.Itoa(tt.wantFirst + i)
			if e.ID != k || string(e.Data) != k {
				t.Fatalf("%s: event %d is id %q data %q", tt.query, i, e.ID, e.Data)
			}
		}
	}
	resp := openStream(t, c, base+"/sse?n=2&size=50&interval=0")
	evs := readEvents(t, resp.Body, 0)
	resp.Body.Close()
	if len(evs) != 2 || string(evs[1].Data) != "2"+strings.Repeat(".", 49) {
		t.Fatalf("padded: %d events", len(evs))
	}
}

func TestSSEFlushedPerEvent(t *testing.T) {
	s, c, base := start(t)
	// The second event is an hour away: the first arrives only if it was
	// flushed on its own.
	resp := openStream(t, c, base+"/sse?n=0&interval=30m")
	evs := readEvents(t, resp.Body, 1)
	if len(evs) != 1 || evs[0].ID != "1" {
		t.Fatalf("got %v", evs)
	}
	if s.OpenStreams() != 1 {
		t.Fatalf("OpenStreams = %d", s.OpenStreams())
	}
	resp.Body.Close()
}

func TestSSEClientLeaves(t *testing.T) {
	s, c, base := start(t)
	resp := openStream(t, c, base+"/sse?n=0&interval=1ms")
	if evs := readEvents(t, resp.Body, 20); len(evs) != 20 || evs[19].ID != "20" {
		t.Fatalf("got %d events", len(evs))
	}
	resp.Body.Close()
	waitFor(t, "the stream to end after the client left", func() bool { return s.OpenStreams() == 0 })
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSSEMixed(t *testing.T) {
	_, c, base := start(t)
	resp := openStream(t, c, base+"/sse/mixed")
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	want := `: demo mixed stream

id: 1
data: hello

id: 2
event: shout
data: make me loud

id: 3
event: drop
data: drop me

: keep-alive

id: 4
data: line one
data: line two

id: 5
event: shout
data: second shout

id: 6
event: drop
data: drop me too

id: 7
data: bye

`
	if string(raw) != want {
		t.Fatalf("mixed stream:\n%s\nwant (as in the package doc):\n%s", raw, want)
	}
}

func TestKillEndsStream(t *testing.T) {
	s, c, base := start(t)
	resp := openStream(t, c, base+"/sse?n=0&interval=5ms")
	defer resp.Body.Close()
	readEvents(t, resp.Body, 3)
	s.Kill()
	_, err := io.Copy(io.Discard, resp.Body)
	if err == nil {
		t.Fatal("stream ended cleanly after Kill; want a broken stream")
	}
	if _, err := net.DialTimeout("tcp", s.Addr(), time.Second); err == nil {
		t.Fatal("still accepting after Kill")
	}
}

func TestCloseEndsEndlessStream(t *testing.T) {
	s, err := Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("http://" + s.Addr() + "/sse?n=0&interval=30m")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	readEvents(t, resp.Body, 1)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s.OpenStreams() != 0 {
		t.Fatalf("OpenStreams = %d after Close", s.OpenStreams())
	}
	goleak.VerifyNone(t, ignoreFasthttpDate, goleak.IgnoreCurrent())
}

// mcpClient speaks to /mcp.
type mcpClient struct {
	t    *testing.T
	c    *http.Client
	url  string
	sess string
	id   int
}

func (m *mcpClient) call(method string, params any) (status int, hdr http.Header, resp map[string]any) {
	m.t.Helper()
	m.id++
	msg := map[string]any{"jsonrpc": "2.0", "id": m.id, "method": method}
	if params != nil {
		msg["params"] = params
	}
	b, _ := json.Marshal(msg)
	return m.post(b)
}

func (m *mcpClient) post(b []byte) (int, http.Header, map[string]any) {
	m.t.Helper()
	req, _ := http.NewRequest("POST", m.url, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if m.sess != "" {
		req.Header.Set(SessionHeader, m.sess)
	}
	r, err := m.c.Do(req)
	if err != nil {
		m.t.Fatal(err)
	}
	defer r.Body.Close()
	body, _ := io.ReadAll(r.Body)
	var out map[string]any
	if len(body) > 0 && r.Header.Get("Content-Type") == "application/json" {
		if err := json.Unmarshal(body, &out); err != nil {
			m.t.Fatalf("%v: %q", err, body)
		}
	}
	return r.StatusCode, r.Header, out
}

func TestMCP(t *testing.T) {
	s, c, base := start(t)
	m := &mcpClient{t: t, c: c, url: base + "/mcp"}

	// Without a session only initialize works.
	if st, _, _ := m.call("tools/list", nil); st != 400 {
		t.Fatalf("tools/list without session: %d, want 400", st)
	}
	st, hdr, resp := m.call("initialize", map[string]any{"protocolVersion": "2025-03-26", "capabilities": map[string]any{},
		"clientInfo": map[string]any{"name": "test", "version": "1"}})
	m.sess = hdr.Get(SessionHeader)
	if st != 200 || m.sess == "" || resp["result"].(map[string]any)["protocolVersion"] != "2025-03-26" {
		t.Fatalf("initialize: %d %q %v", st, m.sess, resp)
	}
	if b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": "notifications/initialized"}); true {
		if st, _, _ := m.post(b); st != 202 {
			t.Fatalf("notification: %d, want 202", st)
		}
	}

	// The notification stream.
	stream := openStream(t, c, m.url, SessionHeader, m.sess)
	defer stream.Body.Close()
	p := sse.NewParser(stream.Body, 0)
	nextNote := func() string {
		for {
			e, err := p.Next()
			if err != nil {
				t.Fatal(err)
			}
			if e.Dispatchable() {
				var n struct{ Params struct{ Data string } }
				json.Unmarshal(e.Data, &n)
				return n.Params.Data
			}
		}
	}
	if n := nextNote(); n != "stream open" {
		t.Fatalf("first notification %q", n)
	}

	st, _, resp = m.call("tools/list", nil)
	tools := resp["result"].(map[string]any)["tools"].([]any)
	if st != 200 || len(tools) != 1 || tools[0].(map[string]any)["name"] != "echo" {
		t.Fatalf("tools/list: %d %v", st, resp)
	}
	st, _, resp = m.call("tools/call", map[string]any{"name": "echo", "arguments": map[string]any{"text": "hi there"}})
	content := resp["result"].(map[string]any)["content"].([]any)[0].(map[string]any)
	if st != 200 || content["text"] != "hi there" {
		t.Fatalf("tools/call: %d %v", st, resp)
	}
	if n := nextNote(); n != "echo: hi there" {
		t.Fatalf("notification %q", n)
	}
	for _, tt := range []struct {
		method string
		params any
		code   float64
	}{
		{"tools/call", map[string]any{"name": "nope"}, -32602},
		{"tools/call", map[string]any{"name": "echo", "arguments": map[string]any{}}, -32602},
		{"no/such", nil, -32601},
	} {
		_, _, resp := m.call(tt.method, tt.params)
		if e, ok := resp["error"].(map[string]any); !ok || e["code"] != tt.code {
			t.Errorf("%s %v: %v, want error %v", tt.method, tt.params, resp, tt.code)
		}
	}
	if st, _, resp := m.call("ping", nil); st != 200 || resp["result"] == nil {
		t.Fatalf("ping: %d %v", st, resp)
	}
	for _, bad := range []string{`{`, `[{"jsonrpc":"2.0","id":1,"method":"ping"}]`, `{"id":1,"method":"ping"}`} {
		if st, _, resp := m.post([]byte(bad)); st != 400 || resp["error"] == nil {
			t.Errorf("POST %s: %d %v", bad, st, resp)
		}
	}

	// DELETE ends the session and its stream; the id is then unknown.
	del := func(id string) int {
		req, _ := http.NewRequest("DELETE", m.url, nil)
		req.Header.Set(SessionHeader, id)
		r, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		return r.StatusCode
	}
	if st := del(m.sess); st != 200 {
		t.Fatalf("DELETE: %d", st)
	}
	if _, err := io.Copy(io.Discard, stream.Body); err != nil {
		t.Fatalf("stream after DELETE: %v", err)
	}
	if st, _, _ := m.call("ping", nil); st != 404 {
		t.Fatalf("call after DELETE: %d, want 404", st)
	}
	if st := del(m.sess); st != 404 {
		t.Fatalf("second DELETE: %d, want 404", st)
	}
	if st := del(""); st != 400 {
		t.Fatalf("DELETE without header: %d, want 400", st)
	}
	if s.MCPSessions() != 0 {
		t.Fatalf("%d sessions left", s.MCPSessions())
	}
	waitFor(t, "the notification stream to end", func() bool { return s.OpenStreams() == 0 })
}

func TestMCPSessionLimit(t *testing.T) {
	s, err := StartWith("127.0.0.1:0", Options{MaxSessions: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	m := &mcpClient{t: t, c: &http.Client{Transport: tr}, url: "http://" + s.Addr() + "/mcp"}
	var codes []int
	for range 3 {
		st, _, _ := m.call("initialize", nil)
		codes = append(codes, st)
	}
	if fmt.Sprint(codes) != "[200 200 503]" {
		t.Fatalf("statuses %v", codes)
	}
}

// TestRawTCPStream checks the wire: chunked text/event-stream from a bare
// HTTP/1.1 exchange, as a proxy sees it.
func TestRawTCPStream(t *testing.T) {
	s, _, _ := start(t)
	conn, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /sse?n=2&interval=0 HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 7\r\n\r\n")
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.TransferEncoding == nil || resp.TransferEncoding[0] != "chunked" {
		t.Fatalf("transfer encoding %v", resp.TransferEncoding)
	}
	if evs := readEvents(t, resp.Body, 0); len(evs) != 0 {
		t.Fatalf("Last-Event-ID past n: got %d events", len(evs))
	}
	if err := conn.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		t.Fatal(err)
	}
}
