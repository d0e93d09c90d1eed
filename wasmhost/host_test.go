package wasmhost

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/wasmgate/wasmgate/gateway/chain"
	"github.com/wasmgate/wasmgate/gateway/config"
	"github.com/wasmgate/wasmgate/internal/wasmbuild"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*TCPDialer).tcpAddrsClean"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
	)
}

func guest(t testing.TB, lang wasmbuild.Lang, name string) string {
	t.Helper()
	return wasmbuild.MustBuild(t, lang, filepath.Join("testdata", name))
}

func plugin(name, file string, mods ...func(*config.Plugin)) config.Plugin {
	p := config.Plugin{
		Name: name, File: file, PoolSize: 2, MemoryLimit: 16 << 20,
		CPULimit: config.Duration(200 * time.Millisecond), QueueTimeout: config.Duration(200 * time.Millisecond),
		PauseTimeout: config.Duration(2 * time.Second), FailurePolicy: config.FailClosed,
	}
	for _, m := range mods {
		m(&p)
	}
	return p
}

type testHost struct {
	*Host
	reg  *prometheus.Registry
	logs *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newHost(t testing.TB, opts Options, plugins ...config.Plugin) *testHost {
	t.Helper()
	th := &testHost{reg: prometheus.NewRegistry(), logs: &syncBuffer{}}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(th.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	opts.Registerer = th.reg
	if opts.Foreign == nil {
		opts.Foreign = map[string]ForeignFunc{"echo": func(_ string, a []byte) ([]byte, error) {
			return append([]byte("echo:"), a...), nil
		}}
	}
	h, err := New(context.Background(), plugins, opts)
	if err != nil {
		t.Fatal(err)
	}
	th.Host = h
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := h.Close(ctx); err != nil {
			t.Error(err)
		}
	})
	return th
}

func (th *testHost) chain(t testing.TB, refs ...config.PluginRef) chain.Chain {
	t.Helper()
	c, err := th.Build("r1", refs)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func refs(names ...string) []config.PluginRef {
	out := make([]config.PluginRef, len(names))
	for i, n := range names {
		out[i] = config.PluginRef{Name: n}
	}
	return out
}

func reqHeaders(path string, extra ...string) chain.Headers {
	h := chain.Headers{{Name: ":method", Value: "GET"}, {Name: ":path", Value: path}, {Name: ":authority", Value: "example.test"}, {Name: ":scheme", Value: "http"}}
	for i := 0; i+1 < len(extra); i += 2 {
		h.Add(extra[i], extra[i+1])
	}
	return h
}

func testInfo() *chain.Info {
	return &chain.Info{RequestID: "req-1", SessionID: "sess-1", Route: "r1", Upstream: "up1",
		ClientAddr: "127.0.0.1:5555", LocalAddr: "127.0.0.1:8080", Scheme: "http", Protocol: "HTTP/1.1", StartTime: time.Now()}
}

// exchange runs one full request through a chain: request headers, then
// (unless the chain responded) response headers with status 200.
func exchange(t testing.TB, c chain.Chain, req chain.Headers) (chain.Result, chain.Headers, chain.Headers) {
	t.Helper()
	s, err := c.NewStream(testInfo())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Done()
	res := s.RequestHeaders(&req, true)
	if res.Action == chain.Respond {
		return res, req, nil
	}
	resp := chain.Headers{{Name: ":status", Value: "200"}, {Name: "content-type", Value: "text/plain"}}
	res = s.ResponseHeaders(&resp, false)
	return res, req, resp
}

func get(h chain.Headers, name string) string {
	v, _ := h.Get(name)
	return v
}

func TestHeadersWATAndC(t *testing.T) {
	th := newHost(t, Options{},
		plugin("wat", guest(t, wasmbuild.WAT, "headers.wat")),
		plugin("c", guest(t, wasmbuild.C, "all.c")))
	for _, name := range []string{"wat", "c"} {
		t.Run(name, func(t *testing.T) {
			c := th.chain(t, refs(name)...)
			res, _, resp := exchange(t, c, reqHeaders("/", "x-in", "hello-"+name))
			if res.Action != chain.Continue {
				t.Fatalf("action %v: %+v", res.Action, res.Response)
			}
			if got := get(resp, "x-out"); got != "hello-"+name {
				t.Fatalf("x-out = %q; response headers %v", got, resp)
			}
		})
	}
}

func TestLocalResponse(t *testing.T) {
	th := newHost(t, Options{}, plugin("all", guest(t, wasmbuild.C, "all.c")))
	c := th.chain(t, refs("all")...)
	res, _, _ := exchange(t, c, reqHeaders("/", "x-test", "deny"))
	if res.Action != chain.Respond || res.Response.Status != 403 || string(res.Response.Body) != "denied\n" ||
		get(res.Response.Headers, "x-deny") != "1" || res.Plugin != "all" || res.Response.Details != "denied by test" {
		t.Fatalf("got %+v %+v", res, res.Response)
	}
}

// metric sums every sample of a metric family whose labels include want.
func (th *testHost) metric(t testing.TB, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := th.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			case m.Histogram != nil:
				sum += float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return sum
}

var _ = errors.New
var _ = fmt.Sprint
var _ = os.Getpid

func writeFile(path, s string) error { return os.WriteFile(path, []byte(s), 0o644) }
