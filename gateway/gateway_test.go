package gateway_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/wasmgate/wasmgate/gateway"
	"github.com/wasmgate/wasmgate/gateway/chain"
	"github.com/wasmgate/wasmgate/gateway/config"
	"github.com/wasmgate/wasmgate/gateway/event"
)

func leakOpts() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreCurrent(),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*TCPDialer).tcpAddrsClean"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
	}
}

func startUpstream(t *testing.T, h http.HandlerFunc) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func newGateway(t *testing.T, target string) *gateway.Gateway {
	y := fmt.Sprintf(`
listen: 127.0.0.1:0
admin: {listen: 127.0.0.1:0}
upstreams: [{name: up, targets: [%q]}]
routes: [{name: r, upstream: up}]
storage: {enabled: false}
shutdown: {drain_timeout: 5s}
`, target)
	cfg, err := config.Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(cfg, gateway.Options{
		Logger: slog.New(slog.DiscardHandler), Chains: chain.NopBuilder{}, Sink: event.Discard,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	return g
}

func get(t *testing.T, c *http.Client, url string) (int, string) {
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestGatewayServesAndReportsMetrics(t *testing.T) {
	opts := leakOpts()
	t.Cleanup(func() { goleak.VerifyNone(t, opts...) })
	up := startUpstream(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hi") })
	g := newGateway(t, up)
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 5 * time.Second}

	if code, body := get(t, c, "http://"+g.Addr()+"/x"); code != 200 || body != "hi" {
		t.Fatalf("proxy: %d %q", code, body)
	}
	if code, _ := get(t, c, "http://"+g.AdminAddr()+"/readyz"); code != 200 {
		t.Fatalf("readyz %d", code)
	}
	_, metrics := get(t, c, "http://"+g.AdminAddr()+"/metrics")
	for _, want := range []string{
		`wasmgate_requests_total{code="200",route="r"} 1`,
		`wasmgate_request_duration_seconds_bucket{route="r"`,
		`wasmgate_upstream_conns_in_use{target="` + up + `",upstream="up"} 0`,
		`wasmgate_upstream_target_healthy{target="` + up + `",upstream="up"} 1`,
		`wasmgate_sse_streams_open 0`,
		`go_goroutines`, `process_resident_memory_bytes`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	tr.CloseIdleConnections()
	if err := g.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestGracefulShutdownFinishesInFlight(t *testing.T) {
	opts := leakOpts()
	t.Cleanup(func() { goleak.VerifyNone(t, opts...) })
	started := make(chan struct{})
	up := startUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		close(started)
		time.Sleep(500 * time.Millisecond)
		io.WriteString(w, "finished")
	})
	g := newGateway(t, up)
	addr := g.Addr()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	type result struct {
		code int
		body string
	}
	res := make(chan result, 1)
	go func() {
		resp, err := c.Get("http://" + addr + "/slow")
		if err != nil {
			res <- result{0, err.Error()}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		res <- result{resp.StatusCode, string(b)}
	}()
	<-started
	done := make(chan error, 1)
	go func() { done <- g.Shutdown(context.Background()) }()
	r := <-res
	if r.code != 200 || r.body != "finished" {
		t.Fatalf("in-flight request during shutdown: %d %q", r.code, r.body)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Fatal("listener still accepting after shutdown")
	}
}

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

func TestShutdownEndsSSECleanly(t *testing.T) {
	opts := leakOpts()
	t.Cleanup(func() { goleak.VerifyNone(t, opts...) })
	up := startUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "id: 1\ndata: first\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
listen: 127.0.0.1:0
admin: {listen: ""}
upstreams: [{name: up, targets: [%q]}]
routes: [{name: r, upstream: up}]
storage: {enabled: false}
`, up)))
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	g, err := gateway.New(cfg, gateway.Options{Logger: slog.New(slog.DiscardHandler), Chains: chain.NopBuilder{}, Sink: sink})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", g.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET /s HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\nMcp-Session-Id: s1\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	first := make([]byte, len("id: 1\ndata: first\n\n"))
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- g.Shutdown(context.Background()) }()
	// The stream ends with the terminating chunk: a clean EOF, not a reset.
	rest, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("stream did not end cleanly on shutdown: %v (read %q)", err, rest)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	var got []string
	for _, e := range sink.events {
		got = append(got, e.Type.String())
	}
	if want := "session_start,request,response,sse_event,session_end"; strings.Join(got, ",") != want {
		t.Fatalf("events %v, want %s", got, want)
	}
}
