package proxy_test

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wasmgate/wasmgate/gateway/chain"
	"github.com/wasmgate/wasmgate/gateway/config"
	"github.com/wasmgate/wasmgate/gateway/event"
	"github.com/wasmgate/wasmgate/gateway/proxy"
	"github.com/wasmgate/wasmgate/gateway/session"
	"github.com/wasmgate/wasmgate/gateway/sse"
	"github.com/wasmgate/wasmgate/gateway/store"
)

// memReplayer replays from the events a memSink recorded.
type memReplayer struct{ sink *memSink }

func (r memReplayer) SSEAfter(ctx context.Context, sess, stream, last string, fn func(*event.Event) error) (bool, error) {
	found := false
	for _, e := range r.sink.of(sess) {
		if e.Type != event.SSE || e.Stream != stream {
			continue
		}
		if found {
			if err := fn(e); err != nil {
				return true, err
			}
		} else if e.EventID == last {
			found = true
		}
	}
	return found, nil
}

func TestSSEGatewayReplay(t *testing.T) {
	verifyNone(t)
	var sawLastID atomic.Value
	sawLastID.Store("")
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sawLastID.Store(r.Header.Get("Last-Event-ID"))
		sseHandler(3, 0, "live")(w, r)
	}))
	cfg := testConfig(t, []string{up.addr}, func(c *config.Config) { c.Routes[0].SSE.Replay = "gateway" })
	sink := &memSink{}
	table := session.NewTable(cfg.Sessions, cfg.SSE, sink, testLogger(), prometheus.NewRegistry())
	defer table.Close()
	g := startGatewayOpts(t, proxy.Options{Config: cfg, Sessions: tableSessions{table}, Sink: sink, Replayer: memReplayer{sink}})

	read := func(hdr ...string) []string { return readEvents(t, g.addr, "/events", hdr...) }
	first := read("Mcp-Session-Id: s1")
	if strings.Join(first, " ") != "0=live-0 1=live-1 2=live-2" {
		t.Fatalf("first stream: %v", first)
	}
	// Reconnect after event 0: events 1 and 2 come from the recording,
	// then the live stream, and the upstream is not asked to resume.
	second := read("Mcp-Session-Id: s1", "Last-Event-ID: 0")
	if got := strings.Join(second, " "); got != "1=live-1 2=live-2 0=live-0 1=live-1 2=live-2" {
		t.Fatalf("resumed stream: %v", got)
	}
	if v := sawLastID.Load().(string); v != "" {
		t.Errorf("upstream got Last-Event-ID %q in gateway replay mode", v)
	}
}

// gateChain answers some requests itself and rewrites response bodies.
type gateChain struct{}

func (gateChain) NewStream(*chain.Info) (chain.Stream, error) { return &gateStream{}, nil }
func (gateChain) Len() int                                    { return 1 }

type gateStream struct{}

func (s *gateStream) RequestHeaders(h *chain.Headers, _ bool) chain.Result {
	if p, _ := h.Get(":path"); p == "/blocked" {
		return chain.Result{Action: chain.Respond, Plugin: "gate", Response: &chain.LocalResponse{
			Status: 403, Headers: chain.Headers{{Name: "x-gate", Value: "no"}}, Body: []byte("blocked by gate\n"), Details: "path"}}
	}
	if p, _ := h.Get(":path"); p == "/rewrite" {
		h.Set(":path", "/rewritten")
	}
	return chain.Result{}
}
func (s *gateStream) RequestBody(b *[]byte, end bool) chain.Result {
	*b = []byte(strings.ToUpper(string(*b)))
	return chain.Result{}
}
func (s *gateStream) ResponseHeaders(*chain.Headers, bool) chain.Result { return chain.Result{} }
func (s *gateStream) ResponseBody(b *[]byte, end bool) chain.Result {
	// Ask for the whole body, then replace it.
	if !end {
		return chain.Result{Action: chain.Buffer}
	}
	*b = []byte("len=" + strconv.Itoa(len(*b)))
	return chain.Result{}
}
func (s *gateStream) Done() {}

func TestChainLocalResponseAndBodies(t *testing.T) {
	verifyNone(t)
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		io.WriteString(w, r.URL.Path+":"+string(b)+":"+strings.Repeat("z", 100<<10))
	}))
	g := startGatewayChains(t, testConfig(t, []string{up.addr}, nil), map[string]chain.Chain{"r": gateChain{}})
	resp := rawRequest(t, g.addr, "GET /blocked HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 5*time.Second)
	if statusOf(resp) != 403 || !strings.Contains(resp, "blocked by gate") || !strings.Contains(resp, "X-Gate: no") {
		t.Fatalf("local response: %q", resp)
	}
	c := newClient(t)
	r, err := c.Post("http://"+g.addr+"/rewrite", "text/plain", strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r.Body)
	r.Body.Close()
	// The upstream saw the rewritten path and upper-cased body; the
	// client gets the chain's replacement of the whole (buffered) body.
	want := "len=" + strconv.Itoa(len("/rewritten:HELLO:")+100<<10)
	if string(b) != want {
		t.Fatalf("body %q, want %q", b, want)
	}
}

func TestSSEUpstreamReplayPassesLastEventID(t *testing.T) {
	verifyNone(t)
	up := startUpstream(t, sseHandler(5, 0, "u"))
	g := startGateway(t, testConfig(t, []string{up.addr}, nil), nil, nil)
	resp, c := openSSE(t, g.addr, "/events", "Last-Event-ID: 2")
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	p := sse.NewParser(resp.Body, 0)
	var got []string
	for {
		ev, err := p.Next()
		if err != nil {
			break
		}
		got = append(got, ev.ID)
	}
	if strings.Join(got, ",") != "3,4" {
		t.Fatalf("resumed from the upstream: %v, want 3,4", got)
	}
}

// An event longer than sessions.capture_body_bytes is recorded whole on a
// route with sse.replay: gateway, so the real store replays it byte-exact
// instead of stopping at a truncated event.
func TestSSEGatewayReplayEventOverCaptureLimit(t *testing.T) {
	verifyNone(t)
	long := strings.Repeat("0123456789abcdef", 640) // 10 KiB
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "id: 0\ndata: short\n\n")
		io.WriteString(w, "id: 1\ndata: "+long+"\ndata: second line\n\n")
		io.WriteString(w, "id: 2\ndata: tail\n\n")
	}))
	cfg := testConfig(t, []string{up.addr}, func(c *config.Config) {
		c.Routes[0].SSE.Replay = "gateway"
		c.Sessions.CaptureBodyBytes = 64
	})
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := store.NewWorker(st, store.WorkerOptions{FlushInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close(); st.Close() }) // after the gateway's cleanup
	table := session.NewTable(cfg.Sessions, cfg.SSE, w, testLogger(), prometheus.NewRegistry())
	t.Cleanup(table.Close)
	g := startGatewayOpts(t, proxy.Options{Config: cfg, Sessions: tableSessions{table}, Sink: w, Replayer: st})

	read := func(hdr ...string) []string { return readEvents(t, g.addr, "/events", hdr...) }
	live := []string{"0=short", "1=" + long + "\nsecond line", "2=tail"}
	if got := read("Mcp-Session-Id: s1"); strings.Join(got, "|") != strings.Join(live, "|") {
		t.Fatalf("live stream: %d events, want %d", len(got), len(live))
	}
	// Wait for the recorder to store events 1 and 2.
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := 0
		_, err := st.SSEAfter(context.Background(), "s1", "r /events", "0", func(*event.Event) error { n++; return nil })
		if err == nil && n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("recorded events after id 0: %d, %v", n, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	got := read("Mcp-Session-Id: s1", "Last-Event-ID: 0")
	want := append([]string{live[1], live[2]}, live...)
	if len(got) != len(want) {
		t.Fatalf("resumed stream: %d events, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("resumed event %d: %d bytes %.40q…, want %d bytes %.40q…", i, len(got[i]), got[i], len(want[i]), want[i])
		}
	}
}

// readEvents opens an SSE stream and returns its events as "id=data"
// until the gateway ends it.
func readEvents(t *testing.T, addr, path string, hdr ...string) []string {
	t.Helper()
	resp, c := openSSE(t, addr, path, hdr...)
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	p := sse.NewParser(resp.Body, 0)
	var got []string
	for {
		ev, err := p.Next()
		if err != nil {
			if err != io.EOF {
				t.Fatal(err)
			}
			return got
		}
		got = append(got, ev.ID+"="+string(ev.Data))
	}
}
