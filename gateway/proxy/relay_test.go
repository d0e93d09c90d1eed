package proxy_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wasmgate/wasmgate/gateway/chain"
	"github.com/wasmgate/wasmgate/gateway/config"
	"github.com/wasmgate/wasmgate/gateway/session"
	"github.com/wasmgate/wasmgate/gateway/sse"
)

// sseHandler streams n events "id: i / data: prefix-i", one every gap, and
// honours Last-Event-ID by starting after it.
func sseHandler(n int, gap time.Duration, prefix string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		start := 0
		fmt.Sscanf(r.Header.Get("Last-Event-ID"), "%d", &start)
		if start > 0 {
			start++
		}
		fl := w.(http.Flusher)
		fl.Flush()
		for i := start; i < n; i++ {
			if _, err := fmt.Fprintf(w, "id: %d\ndata: %s-%d\n\n", i, prefix, i); err != nil {
				return
			}
			fl.Flush()
			if gap > 0 {
				select {
				case <-time.After(gap):
				case <-r.Context().Done():
					return
				}
			}
		}
	}
}

// openSSE sends a GET asking for an event stream over a raw connection and
// returns a parser positioned at the body (chunked decoding by net/http).
func openSSE(t testing.TB, addr, path string, hdr ...string) (*http.Response, net.Conn) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	req := "GET " + path + " HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n"
	for _, h := range hdr {
		req += h + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	return resp, c
}

func TestSSERelayInOrderAndFlushedPerEvent(t *testing.T) {
	verifyNone(t)
	next := make(chan struct{})
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fl := w.(http.Flusher)
		// A comment, a multi-line event, then one more only after the
		// client saw the first: proves per-event flushing.
		io.WriteString(w, ": hello\n\nid: 1\nevent: greet\ndata: a\ndata: b\n\n")
		fl.Flush()
		select {
		case <-next:
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, "id: 2\ndata: c\r\n\r\n")
		fl.Flush()
	}))
	g := startGateway(t, testConfig(t, []string{up.addr}, nil), nil, nil)
	resp, c := openSSE(t, g.addr, "/events")
	defer c.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d, headers %v", resp.StatusCode, resp.Header)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	p := sse.NewParser(resp.Body, 0)
	ev, err := p.Next()
	if err != nil || string(ev.Raw) != ": hello\n\n" {
		t.Fatalf("comment: %v %+v", err, ev)
	}
	ev, err = p.Next()
	if err != nil || ev.ID != "1" || ev.Name != "greet" || string(ev.Data) != "a\nb" {
		t.Fatalf("event 1: %v %+v", err, ev)
	}
	close(next)
	ev, err = p.Next()
	if err != nil || ev.ID != "2" || string(ev.Data) != "c" {
		t.Fatalf("event 2: %v %+v", err, ev)
	}
	if _, err := p.Next(); err != io.EOF {
		t.Fatalf("end: %v", err)
	}
}

func TestSSEThousandStreams(t *testing.T) {
	verifyNone(t)
	const streams, events = 1000, 20
	up := startUpstream(t, sseHandler(events, 20*time.Millisecond, "e"))
	g := startGateway(t, testConfig(t, []string{up.addr}, func(c *config.Config) {
		c.Upstreams[0].MaxStreamsPerTarget = streams
		c.Upstreams[0].ConnWaitTimeout = config.Duration(5 * time.Second)
		// 1,000 dials at once on a shared 2-core box: allow for a slow
		// accept loop in the test upstream.
		c.Upstreams[0].DialTimeout = config.Duration(10 * time.Second)
		c.Upstreams[0].ResponseHeaderTimeout = config.Duration(10 * time.Second)
	}), nil, nil)

	var wg sync.WaitGroup
	var failed atomic.Int32
	errs := make(chan string, streams)
	start := time.Now()
	for i := 0; i < streams; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", g.addr)
			if err != nil {
				failed.Add(1)
				errs <- err.Error()
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			io.WriteString(c, "GET /s HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				failed.Add(1)
				errs <- err.Error()
				return
			}
			p := sse.NewParser(resp.Body, 0)
			for want := 0; want < events; want++ {
				ev, err := p.Next()
				if err != nil || ev.ID != fmt.Sprint(want) || string(ev.Data) != fmt.Sprintf("e-%d", want) {
					failed.Add(1)
					errs <- fmt.Sprintf("stream %d event %d: status %d: %v %+v", i, want, resp.StatusCode, err, ev)
					return
				}
			}
			if _, err := p.Next(); err != io.EOF {
				failed.Add(1)
				errs <- fmt.Sprintf("stream %d end: %v", i, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d streams failed; first: %s", n, streams, <-errs)
	}
	t.Logf("%d streams × %d events in %v", streams, events, time.Since(start))
}

func TestSSESlowClientDropped(t *testing.T) {
	verifyNone(t)
	var written atomic.Int64
	upDone := make(chan time.Time, 1)
	payload := strings.Repeat("x", 16<<10)
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fl := w.(http.Flusher)
		defer func() { upDone <- time.Now() }()
		for i := 0; ; i++ {
			if _, err := fmt.Fprintf(w, "id: %d\ndata: %s\n\n", i, payload); err != nil {
				return
			}
			fl.Flush()
			written.Add(1)
		}
	}))
	stall := 500 * time.Millisecond
	g := startGateway(t, testConfig(t, []string{up.addr}, func(c *config.Config) {
		c.SSE.WriteStallTimeout = config.Duration(stall)
		c.SSE.PendingEvents = 8
	}), nil, nil)

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	c, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// A small receive buffer so the client side stops taking data soon.
	c.(*net.TCPConn).SetReadBuffer(4 << 10)
	io.WriteString(c, "GET /s HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
	// Read nothing. Sample the heap while the gateway holds the stream.
	var peak uint64
	deadline := time.After(10 * time.Second)
	var ended time.Time
wait:
	for {
		select {
		case ended = <-upDone:
			break wait
		case <-deadline:
			t.Fatal("slow client not dropped within 10s")
		case <-time.After(50 * time.Millisecond):
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
		}
	}
	_ = ended
	grew := int64(peak) - int64(before.HeapInuse)
	t.Logf("upstream wrote %d events of 16 KiB before the drop; heap grew by at most %d KiB", written.Load(), grew>>10)
	if grew > 8<<20 {
		t.Errorf("heap grew by %d MiB while a client read nothing", grew>>20)
	}
	// Buffered in sockets and the queue only: far less than an unbounded relay.
	if n := written.Load(); n > 2000 {
		t.Errorf("upstream wrote %d events (%d MiB) to a client that reads nothing", n, n*16>>10)
	}
}

func TestSSEUpstreamKilledMidStream(t *testing.T) {
	verifyNone(t)
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "id: 1\ndata: one\n\n")
		w.(http.Flusher).Flush()
		time.Sleep(100 * time.Millisecond)
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	g := startGateway(t, testConfig(t, []string{up.addr}, nil), nil, nil)
	resp, c := openSSE(t, g.addr, "/s")
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	p := sse.NewParser(resp.Body, 0)
	if ev, err := p.Next(); err != nil || string(ev.Data) != "one" {
		t.Fatalf("first event: %v", err)
	}
	start := time.Now()
	_, err := p.Next()
	if err == nil || err == io.EOF {
		t.Fatalf("client stream after upstream died: %v (want a broken stream)", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("client noticed after %v", d)
	}
}

func TestSSEHeartbeat(t *testing.T) {
	verifyNone(t)
	up := idleSSEUpstream(t, nil)
	g := startGateway(t, testConfig(t, []string{up.addr}, func(c *config.Config) {
		c.SSE.Heartbeat = config.Duration(100 * time.Millisecond)
	}), nil, nil)
	resp, c := openSSE(t, g.addr, "/s")
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	p := sse.NewParser(resp.Body, 0)
	for i := 0; i < 3; i++ {
		ev, err := p.Next()
		if err != nil || ev.Dispatchable() || !strings.HasPrefix(string(ev.Raw), ":") {
			t.Fatalf("heartbeat %d: %v %q", i, err, ev.Raw)
		}
	}
}

// eventChain is a Go chain: it drops events whose data says "drop" and
// upper-cases "shout".
type eventChain struct{ done atomic.Int32 }

func (c *eventChain) NewStream(*chain.Info) (chain.Stream, error) { return &eventStream{c: c}, nil }
func (c *eventChain) Len() int                                    { return 1 }

type eventStream struct {
	c    *eventChain
	last bool
}

func (s *eventStream) RequestHeaders(h *chain.Headers, _ bool) chain.Result {
	h.Set("x-plugin-saw", "yes")
	return chain.Result{}
}
func (s *eventStream) RequestBody(*[]byte, bool) chain.Result { return chain.Result{} }
func (s *eventStream) ResponseHeaders(h *chain.Headers, _ bool) chain.Result {
	h.Set("x-plugin-resp", "yes")
	return chain.Result{}
}
func (s *eventStream) ResponseBody(b *[]byte, end bool) chain.Result {
	if end {
		s.last = true
		return chain.Result{}
	}
	switch {
	case strings.Contains(string(*b), "data: drop"):
		*b = (*b)[:0]
	case strings.Contains(string(*b), "data: shout"):
		*b = []byte(strings.ToUpper(string(*b)))
	}
	return chain.Result{Plugin: "test"}
}
func (s *eventStream) Done() {
	if s.last {
		s.c.done.Add(1)
	}
}

func TestSSEThroughChain(t *testing.T) {
	verifyNone(t)
	var sawHeader atomic.Bool
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sawHeader.Store(r.Header.Get("X-Plugin-Saw") == "yes")
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: keep\n\ndata: drop\n\n: comment\n\ndata: shout\n\n")
	}))
	cfg := testConfig(t, []string{up.addr}, nil)
	ch := &eventChain{}
	g := startGatewayChains(t, cfg, map[string]chain.Chain{"r": ch})
	resp, c := openSSE(t, g.addr, "/s")
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if want := "data: keep\n\n: comment\n\nDATA: SHOUT\n\n"; string(body) != want {
		t.Fatalf("body %q, want %q", body, want)
	}
	if !sawHeader.Load() || resp.Header.Get("X-Plugin-Resp") != "yes" {
		t.Fatalf("chain header changes not applied: upstream %v, client %v", sawHeader.Load(), resp.Header)
	}
	deadline := time.Now().Add(2 * time.Second)
	for ch.done.Load() != 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if ch.done.Load() != 1 {
		t.Fatal("stream not ended with a final ResponseBody(endOfStream) + Done")
	}
	_ = context.Background
}

func TestSSEOnOrdinaryPoolOutlivesSilence(t *testing.T) {
	verifyNone(t)
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		time.Sleep(600 * time.Millisecond)
		io.WriteString(w, "data: two\n\n")
	}))
	g := startGateway(t, testConfig(t, []string{up.addr}, func(c *config.Config) {
		c.Upstreams[0].ResponseHeaderTimeout = config.Duration(200 * time.Millisecond)
	}), nil, nil)
	// No "Accept: text/event-stream": the request takes the ordinary pool,
	// whose per-read silence bound must not cut the stream.
	resp := rawRequest(t, g.addr, "GET /s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 5*time.Second)
	if !strings.Contains(resp, "data: one") || !strings.Contains(resp, "data: two") {
		t.Fatalf("stream cut during silence: %q", resp)
	}
}

func TestSSEFixedLengthBodyIsRelayedAndTracked(t *testing.T) {
	verifyNone(t)
	body := "id: 7\ndata: only\n\n"
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		io.WriteString(w, body)
	}))
	cfg := testConfig(t, []string{up.addr}, nil)
	sink := &memSink{}
	table := session.NewTable(cfg.Sessions, cfg.SSE, sink, testLogger(), prometheus.NewRegistry())
	defer table.Close()
	g := startGateway(t, cfg, tableSessions{table}, sink)
	resp, c := openSSE(t, g.addr, "/s", "Mcp-Session-Id: s9")
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(resp.Body)
	if err != nil || string(got) != body {
		t.Fatalf("body %q, %v", got, err)
	}
	if s, ok := table.Get("s9"); !ok || !s.KnowsEventID("r /s", "7") {
		t.Fatal("event id of a fixed-length SSE response not tracked")
	}
}

// The relay hijacks the client connection from fasthttp; it still counts
// against limits.max_conns until the stream ends.
func TestSSEStreamsCountAgainstMaxConns(t *testing.T) {
	verifyNone(t)
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: hello\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	g := startGateway(t, testConfig(t, []string{up.addr}, func(c *config.Config) {
		c.Limits.MaxConns = 2
		c.SSE.Heartbeat = config.Duration(50 * time.Millisecond)
	}), nil, nil)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < 2; i++ {
		resp, c := openSSE(t, g.addr, "/s")
		conns = append(conns, c)
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if ev, err := sse.NewParser(resp.Body, 0).Next(); err != nil || string(ev.Data) != "hello" {
			t.Fatalf("stream %d: %v", i, err)
		}
	}
	if got := statusOf(rawRequest(t, g.addr, "GET /x HTTP/1.1\r\nHost: x\r\n\r\n", 2*time.Second)); got != 503 {
		t.Fatalf("third connection with two streams open: status %d, want 503", got)
	}
	// Ending a stream frees its slot (the heartbeat notices the close).
	conns[0].Close()
	conns = conns[1:]
	deadline := time.Now().Add(3 * time.Second)
	for {
		resp, c := openSSE(t, g.addr, "/s")
		c.Close()
		if resp.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no slot after a stream ended: status %d", resp.StatusCode)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// An HTTP/1.0 client gets the events unframed, ended by the close.
func TestSSEHTTP10Client(t *testing.T) {
	verifyNone(t)
	up := startUpstream(t, sseHandler(3, 0, "e"))
	g := startGateway(t, testConfig(t, []string{up.addr}, nil), nil, nil)
	resp := rawRequest(t, g.addr, "GET /s HTTP/1.0\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n", 5*time.Second)
	head, body, _ := strings.Cut(resp, "\r\n\r\n")
	if strings.Contains(strings.ToLower(head), "transfer-encoding") || !strings.Contains(head, " 200 ") {
		t.Fatalf("response head %q", head)
	}
	if want := "id: 0\ndata: e-0\n\nid: 1\ndata: e-1\n\nid: 2\ndata: e-2\n\n"; body != want {
		t.Fatalf("body %q, want %q", body, want)
	}
}

// A chunked event stream read to its end leaves the upstream connection
// reusable: the next stream goes over the same connection.
func TestSSEUpstreamConnReusedAfterCleanEnd(t *testing.T) {
	verifyNone(t)
	var mu sync.Mutex
	var peers []string
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		peers = append(peers, r.RemoteAddr)
		mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "id: 1\ndata: one\n\n")
		w.(http.Flusher).Flush()
		io.WriteString(w, "id: 2\ndata: two\n\n")
	}))
	g := startGateway(t, testConfig(t, []string{up.addr}, nil), nil, nil)
	for i := 0; i < 2; i++ {
		resp, c := openSSE(t, g.addr, "/s")
		c.SetDeadline(time.Now().Add(5 * time.Second))
		body, err := io.ReadAll(resp.Body)
		c.Close()
		if err != nil || string(body) != "id: 1\ndata: one\n\nid: 2\ndata: two\n\n" {
			t.Fatalf("stream %d: %q, %v", i, body, err)
		}
		// The client may see the last chunk before the relay has handed
		// the upstream connection back to its pool.
		if n := metricValue(t, g, "wasmgate_upstream_streams_in_use"); n != 0 {
			t.Fatalf("stream %d: %v stream-pool connections still in use", i, n)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(peers) != 2 || peers[0] != peers[1] {
		t.Fatalf("upstream connections %v, want one reused", peers)
	}
}

// An MCP-style POST answered with an event stream: the request body
// reaches the upstream before the relay takes the connection over.
func TestSSEResponseToPost(t *testing.T) {
	verifyNone(t)
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprintf(w, "id: 1\ndata: %s\n\n", b)
	}))
	g := startGateway(t, testConfig(t, []string{up.addr}, nil), nil, nil)
	for _, body := range []string{`{"jsonrpc":"2.0","id":1,"method":"ping"}`, strings.Repeat("y", 20<<10)} {
		req := fmt.Sprintf("POST /mcp HTTP/1.1\r\nHost: x\r\nAccept: application/json, text/event-stream\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		resp := rawRequest(t, g.addr, req, 5*time.Second)
		if statusOf(resp) != 200 || !strings.Contains(resp, "data: "+body+"\n\n") || !strings.HasSuffix(resp, "0\r\n\r\n") {
			t.Fatalf("%d-byte body: response %.200q", len(body), resp)
		}
	}
}

// sse.max_event_bytes changed by a reload applies to streams that start
// afterwards (pooled parsers included); a stream in flight keeps its own.
func TestSSEReloadMaxEventBytes(t *testing.T) {
	verifyNone(t)
	big := strings.Repeat("b", 2<<10)
	release := make(chan struct{})
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: small\n\n")
		w.(http.Flusher).Flush()
		if r.URL.Query().Get("wait") != "" {
			<-release
		}
		io.WriteString(w, "data: "+big+"\n\n")
	}))
	cfg := testConfig(t, []string{up.addr}, nil)
	g := startGateway(t, cfg, nil, nil)
	events := func(resp *http.Response) []string {
		p := sse.NewParser(resp.Body, 0)
		var got []string
		for {
			ev, err := p.Next()
			if err != nil {
				return got
			}
			got = append(got, string(ev.Data))
		}
	}
	inFlight, c2 := openSSE(t, g.addr, "/s?wait=1")
	defer c2.Close()
	c2.SetDeadline(time.Now().Add(5 * time.Second))
	first, err := sse.NewParser(inFlight.Body, 0).Next()
	if err != nil || string(first.Data) != "small" {
		t.Fatalf("stream in flight: %v", err)
	}
	// A stream run to its end, so that its parser is pooled.
	resp, c := openSSE(t, g.addr, "/s")
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if got := events(resp); len(got) != 2 {
		t.Fatalf("before the reload: %d events", len(got))
	}
	c.Close()
	time.Sleep(50 * time.Millisecond) // the relay ends after its last write

	s := cfg.SSE
	s.MaxEventBytes = 1 << 10
	g.proxy.SetLive(s, cfg.Sessions)

	resp, c3 := openSSE(t, g.addr, "/s")
	defer c3.Close()
	c3.SetDeadline(time.Now().Add(5 * time.Second))
	if got := events(resp); len(got) != 1 || got[0] != "small" {
		t.Fatalf("after the reload: %d events, want only the small one", len(got))
	}
	close(release)
	rest, _ := io.ReadAll(inFlight.Body)
	if !strings.Contains(string(rest), big) {
		t.Fatalf("stream in flight lost its 2 KiB event after the reload (%d bytes)", len(rest))
	}
}
