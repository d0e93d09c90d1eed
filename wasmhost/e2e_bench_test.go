package wasmhost_test

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/wasmgate/wasmgate/internal/wasmbuild"
)

// BenchmarkGatewayRPS measures requests per second through the real gateway
// over loopback (64 concurrent keep-alive connections, 100-byte answers)
// on a route without plugins and on routes with one plugin that reads a
// request header and adds a response header (WAT, C, Go). Compare the
// req/s figures of one run; the ratio to "none" is the plugin's cost.
// queue_timeout is raised to 2s so that a loaded machine measures
// throughput rather than the 503s of the default 100ms bound.
func BenchmarkGatewayRPS(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	body := make([]byte, 100)
	for i := range body {
		body[i] = 'x'
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBody(body) }}
	go srv.Serve(ln)
	defer srv.Shutdown()
	exCfg := `{header: x-out, value: v, api_key: k}`
	g := startGatewayB(b, fmt.Sprintf(`
listen: 127.0.0.1:0
admin: {listen: ""}
upstreams: [{name: up, targets: [%q], max_conns_per_target: 128}]
routes:
  - {name: wat, match: {path_prefix: /wat}, upstream: up, plugins: [wat]}
  - {name: c, match: {path_prefix: /c}, upstream: up, plugins: [c]}
  - {name: go, match: {path_prefix: /go}, upstream: up, plugins: [go]}
  - {name: none, match: {path_prefix: /}, upstream: up}
plugins:
  - {name: wat, file: %q, queue_timeout: 2s}
  - {name: c, file: %q, config: %s, queue_timeout: 2s}
  - {name: go, file: %q, config: %s, queue_timeout: 2s}
storage: {enabled: false}
sessions: {max_sessions: 1000000}
`, ln.Addr().String(),
		wasmbuild.MustBuild(b, wasmbuild.WAT, wasmbuild.Path("wasmhost/testdata/headers.wat")),
		wasmbuild.MustBuild(b, wasmbuild.C, wasmbuild.Path("examples/c/interceptor.c")), exCfg,
		wasmbuild.MustBuild(b, wasmbuild.Go, wasmbuild.Path("examples/go")), exCfg))
	for _, route := range []string{"none", "wat", "c", "go"} {
		b.Run(route, func(b *testing.B) {
			c := &fasthttp.HostClient{Addr: g.Addr(), MaxConns: 64}
			var next atomic.Int64
			var failed atomic.Int64
			var firstErr atomic.Value
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for w := 0; w < 64; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
					defer fasthttp.ReleaseRequest(req)
					defer fasthttp.ReleaseResponse(resp)
					req.SetRequestURI("http://" + g.Addr() + "/" + route)
					req.Header.Set("X-In", "v")
					req.Header.Set("X-Api-Key", "k")
					for next.Add(1) <= int64(b.N) {
						if err := c.Do(req, resp); err != nil || resp.StatusCode() != 200 ||
							(route != "none" && string(resp.Header.Peek("X-Out")) != "v") {
							failed.Add(1)
							firstErr.CompareAndSwap(nil, fmt.Sprintf("%v %d %s", err, resp.StatusCode(), resp.Body()))
						}
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
			if failed.Load() > 0 {
				b.Fatalf("%d failed requests (first: %v)", failed.Load(), firstErr.Load())
			}
			c.CloseIdleConnections()
		})
	}
}
