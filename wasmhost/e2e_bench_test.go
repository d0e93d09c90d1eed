package wasmhost_test

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/wasmgate/wasmgate/internal/bench/cputime"
	"github.com/wasmgate/wasmgate/internal/wasmbuild"
)

// BenchmarkGatewayRPS measures requests per second through the real gateway
// over loopback (64 concurrent keep-alive connections, 100-byte answers)
// on a route without plugins and on routes with one plugin that reads a
// request header and adds a response header (WAT, C, Go). Compare the
// req/s figures of one run; the ratio to "none" is the plugin's cost.
// The "interleaved" sub-benchmark alternates the routes and reports the
// ratios themselves and the process CPU per request on each route (client,
// gateway and upstream together), which is what to read on a shared
// machine (its ns/op and allocs/op cover one request on each of the four
// routes).
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
	routes := []string{"none", "wat", "c", "go"}
	for _, route := range routes {
		b.Run(route, func(b *testing.B) {
			c := &fasthttp.HostClient{Addr: g.Addr(), MaxConns: 64}
			defer c.CloseIdleConnections()
			b.ResetTimer()
			elapsed, err := drive(c, g.Addr(), route, b.N)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
			if err != nil {
				b.Fatal(err)
			}
		})
	}
	// interleaved runs the routes in turns of 2,000 requests each, so that
	// a shared machine's load drift hits every route alike, and reports
	// each plugin route's throughput as a ratio to "none" (the targets:
	// >= 0.8 for WAT and C, >= 0.7 for Go) and the wall time per request.
	b.Run("interleaved", func(b *testing.B) {
		const turn = 2000
		c := &fasthttp.HostClient{Addr: g.Addr(), MaxConns: 64}
		defer c.CloseIdleConnections()
		total := make([]time.Duration, len(routes))
		cpu := make([]time.Duration, len(routes))
		count := make([]int, len(routes))
		b.ResetTimer()
		for done := 0; done < b.N; {
			for i, route := range routes {
				n := min(turn, b.N-done)
				if n <= 0 {
					n = turn // every route gets the same turns
				}
				cpu0 := cputime.Total()
				elapsed, err := drive(c, g.Addr(), route, n)
				if err != nil {
					b.Fatal(err)
				}
				cpu[i] += cputime.Total() - cpu0
				total[i] += elapsed
				count[i] += n
			}
			done += turn
		}
		rps := make([]float64, len(routes))
		for i := range routes {
			rps[i] = float64(count[i]) / total[i].Seconds()
			b.ReportMetric(1e6/rps[i], "µs/req-"+routes[i])
			b.ReportMetric(float64(cpu[i].Microseconds())/float64(count[i]), "cpu-µs/req-"+routes[i])
		}
		for i := 1; i < len(routes); i++ {
			b.ReportMetric(rps[i]/rps[0], routes[i]+"/none")
		}
	})
}

// drive sends n requests to route over 64 concurrent keep-alive
// connections and checks each answer (200, and X-Out from the plugins).
func drive(c *fasthttp.HostClient, addr, route string, n int) (time.Duration, error) {
	var next, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI("http://" + addr + "/" + route)
			req.Header.Set("X-In", "v")
			req.Header.Set("X-Api-Key", "k")
			for next.Add(1) <= int64(n) {
				if err := c.Do(req, resp); err != nil || resp.StatusCode() != 200 ||
					(route != "none" && string(resp.Header.Peek("X-Out")) != "v") {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%v %d %s", err, resp.StatusCode(), resp.Body()))
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if failed.Load() > 0 {
		return elapsed, fmt.Errorf("%s: %d failed requests (first: %v)", route, failed.Load(), firstErr.Load())
	}
	return elapsed, nil
}
