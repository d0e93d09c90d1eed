package examples

import (
	"context"
	"log/slog"
	"os"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wasmgate/wasmgate/gateway/chain"
	"github.com/wasmgate/wasmgate/gateway/config"
	"github.com/wasmgate/wasmgate/internal/wasmbuild"
	"github.com/wasmgate/wasmgate/sdk/sdktest"
	"github.com/wasmgate/wasmgate/wasmhost"
)

// BenchmarkRequest is one request through the example in each language
// via the gateway's plugin host (wasmhost, chain.Stream): request headers
// with the right x-api-key, SSE response headers, a "shout" event, a
// "drop" event, a plain event, end of stream, Done. "none" is the same
// calls through the empty chain, the baseline.
func BenchmarkRequest(b *testing.B) {
	b.Run("none", func(b *testing.B) { benchStream(b, chain.Nop) })
	for _, l := range languages {
		b.Run(string(l.lang), func(b *testing.B) {
			file := wasmbuild.MustBuild(b, l.lang, l.src)
			cfg, err := config.Parse([]byte(`
upstreams: [{name: u, targets: ["127.0.0.1:1"]}]
routes: [{name: r, match: {path_prefix: /}, upstream: u, plugins: [p]}]
plugins: [{name: p, file: ` + file + `, pool_size: 1, config: ` + testConfig + `}]
`))
			if err != nil {
				b.Fatal(err)
			}
			h, err := wasmhost.New(context.Background(), cfg.Plugins, wasmhost.Options{
				Logger: slog.New(slog.DiscardHandler), Registerer: prometheus.NewRegistry()})
			if err != nil {
				b.Fatal(err)
			}
			defer h.Close(context.Background())
			c, err := h.Build("r", cfg.Routes[0].Plugins)
			if err != nil {
				b.Fatal(err)
			}
			benchStream(b, c)
		})
	}
}

var benchEvents = []string{
	"id: 1\nevent: shout\ndata: make me loud\n\n",
	"id: 2\nevent: drop\ndata: drop me\n\n",
	"id: 3\ndata: plain\n\n",
}

func benchStream(b *testing.B, c chain.Chain) {
	info := &chain.Info{RequestID: "r", SessionID: "s", Route: "r", Upstream: "u", ClientAddr: "127.0.0.1:1", Protocol: "HTTP/1.1"}
	req0 := chain.Headers{{Name: ":method", Value: "GET"}, {Name: ":path", Value: "/sse/mixed"},
		{Name: ":authority", Value: "x"}, {Name: "x-api-key", Value: "s3cret"}}
	resp0 := chain.Headers{{Name: ":status", Value: "200"}, {Name: "content-type", Value: "text/event-stream"}}
	req, resp := make(chain.Headers, 0, 8), make(chain.Headers, 0, 8)
	body := make([]byte, 0, 256)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req, resp = append(req[:0], req0...), append(resp[:0], resp0...)
		s, err := c.NewStream(info)
		if err != nil {
			b.Fatal(err)
		}
		if r := s.RequestHeaders(&req, true); r.Action != chain.Continue {
			b.Fatalf("request refused: %+v", r.Response)
		}
		s.ResponseHeaders(&resp, false)
		for _, ev := range benchEvents {
			body = append(body[:0], ev...)
			s.ResponseBody(&body, false)
		}
		body = body[:0]
		s.ResponseBody(&body, true)
		s.Done()
	}
}

// BenchmarkInstantiate is the cost of one more VM of each example from
// already-compiled code: instantiation, _initialize, proxy_on_vm_start and
// proxy_on_configure (sdktest host). It reports the VM's linear memory.
func BenchmarkInstantiate(b *testing.B) {
	for _, l := range languages {
		b.Run(string(l.lang), func(b *testing.B) {
			wasm, err := os.ReadFile(wasmbuild.MustBuild(b, l.lang, l.src))
			if err != nil {
				b.Fatal(err)
			}
			opts := sdktest.Options{Config: []byte(testConfig)}
			rt, err := sdktest.NewRuntime(context.Background(), wasm, opts)
			if err != nil {
				b.Fatal(err)
			}
			defer rt.Close()
			var pages uint32
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				h, err := rt.Instantiate(opts)
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				pages = h.MemoryPages()
				h.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(pages), "pages")
			b.ReportMetric(float64(len(wasm)), "bytes")
		})
	}
}

// BenchmarkCompile is the cost of compiling each example with wazero's
// compiler engine (no cache).
func BenchmarkCompile(b *testing.B) {
	for _, l := range languages {
		b.Run(string(l.lang), func(b *testing.B) {
			wasm, err := os.ReadFile(wasmbuild.MustBuild(b, l.lang, l.src))
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				rt, err := sdktest.NewRuntime(context.Background(), wasm, sdktest.Options{})
				if err != nil {
					b.Fatal(err)
				}
				rt.Close()
			}
		})
	}
}
