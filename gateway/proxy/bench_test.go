package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/wasmgate/wasmgate/gateway/config"
	"github.com/wasmgate/wasmgate/gateway/sse"
	"github.com/wasmgate/wasmgate/internal/bench/cputime"
)

// startFastUpstream serves a fixed body with fasthttp (a fast upstream, so
// the benchmark measures the proxy, not net/http).
func startFastUpstream(b testing.TB, body []byte) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &fasthttp.Server{CloseOnShutdown: true, Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("text/plain")
		ctx.SetBody(body)
	}}
	go srv.Serve(ln)
	b.Cleanup(func() { shutdown(srv); ln.Close() })
	return ln.Addr().String()
}

// shutdown stops srv, cutting connections a peer keeps open after 2s.
func shutdown(srv *fasthttp.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if srv.ShutdownWithContext(ctx) != nil {
		srv.CloseOnShutdown = true
	}
}

// startBareProxy is the baseline the issue sets: HostClient.Do in a
// fasthttp handler, nothing else.
func startBareProxy(b testing.TB, target string) string {
	hc := &fasthttp.HostClient{Addr: target, MaxConns: 512}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &fasthttp.Server{CloseOnShutdown: true, Handler: func(ctx *fasthttp.RequestCtx) {
		if err := hc.Do(&ctx.Request, &ctx.Response); err != nil {
			ctx.Error(err.Error(), fasthttp.StatusBadGateway)
		}
	}}
	go srv.Serve(ln)
	b.Cleanup(func() {
		shutdown(srv)
		ln.Close()
		hc.CloseIdleConnections()
	})
	return ln.Addr().String()
}

func benchGet(b *testing.B, addr string, size int) { benchGetPath(b, addr, "/bench", size) }

func benchGetPath(b *testing.B, addr, path string, size int) {
	hc := &fasthttp.HostClient{Addr: addr, MaxConns: 64}
	b.ReportAllocs()
	b.SetParallelism(32) // × GOMAXPROCS client goroutines
	cpu0 := cputime.Total()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req := fasthttp.AcquireRequest()
		resp := fasthttp.AcquireResponse()
		// The client keeps its body buffer: only the proxy's use of
		// fasthttp's shared body pool shows in B/op.
		resp.KeepBodyBuffer = true
		req.SetRequestURI("http://" + addr + path)
		for pb.Next() {
			if err := hc.DoTimeout(req, resp, 15*time.Second); err != nil {
				b.Error(err)
				return
			}
			if resp.StatusCode() != 200 || len(resp.Body()) != size {
				b.Errorf("status %d, %d bytes", resp.StatusCode(), len(resp.Body()))
				return
			}
		}
		fasthttp.ReleaseRequest(req)
		fasthttp.ReleaseResponse(resp)
	})
	b.StopTimer()
	// CPU time of the whole process (client, upstream, proxy) per request:
	// steadier than ns/op on a shared machine.
	b.ReportMetric(float64((cputime.Total()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
	hc.CloseIdleConnections()
}

// BenchmarkProxy compares, in one run, a client talking to the upstream
// directly, through a bare fasthttp proxy loop, and through the gateway
// (no plugins). allocs/op counts the whole process: client, upstream and
// proxy; the difference to "direct" is the proxy's share.
func BenchmarkProxy(b *testing.B) {
	for _, size := range []int{100, 16 << 10} {
		body := bytes.Repeat([]byte("x"), size)
		up := startFastUpstream(b, body)
		bare := startBareProxy(b, up)
		cfg := testConfig(b, []string{up}, func(c *config.Config) {
			// Generous timeouts: the shared machine can stall for seconds.
			c.Upstreams[0].MaxConnsPerTarget = 512
			c.Upstreams[0].ConnWaitTimeout = config.Duration(2 * time.Second)
			c.Upstreams[0].DialTimeout = config.Duration(5 * time.Second)
			c.Upstreams[0].ResponseHeaderTimeout = config.Duration(10 * time.Second)
		})
		g := startGateway(b, cfg, nil, nil)
		name := map[int]string{100: "100B", 16 << 10: "16KiB"}[size]
		b.Run(name+"/direct", func(b *testing.B) { benchGet(b, up, size) })
		b.Run(name+"/bare-fasthttp-proxy", func(b *testing.B) { benchGet(b, bare, size) })
		b.Run(name+"/gateway", func(b *testing.B) { benchGet(b, g.addr, size) })
	}
}

// BenchmarkProxyAfterSizeChange sends 16 KiB responses through a proxy
// that has just served 50,000 responses of 100 bytes, as a mixed workload
// does. fasthttp's shared body pool then drops buffers larger than what it
// saw most, so a proxy that cycles response bodies through it allocates a
// buffer per request (B/op ~16 KiB) until the pool recalibrates.
func BenchmarkProxyAfterSizeChange(b *testing.B) {
	up := startSizedUpstream(b)
	bare := startBareProxy(b, up)
	cfg := testConfig(b, []string{up}, func(c *config.Config) {
		c.Upstreams[0].MaxConnsPerTarget = 512
		c.Upstreams[0].ConnWaitTimeout = config.Duration(2 * time.Second)
		c.Upstreams[0].ResponseHeaderTimeout = config.Duration(10 * time.Second)
	})
	g := startGateway(b, cfg, nil, nil)
	for _, target := range []struct{ name, addr string }{{"bare-fasthttp-proxy", bare}, {"gateway", g.addr}} {
		b.Run(target.name, func(b *testing.B) {
			sendN(b, target.addr, "/100", 100, 50000)
			benchGetPath(b, target.addr, "/16384", 16<<10)
		})
	}
}

// startSizedUpstream serves GET /N with an N-byte body.
func startSizedUpstream(b testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	bodies := map[string][]byte{}
	for _, n := range []int{100, 16 << 10} {
		bodies["/"+strconv.Itoa(n)] = bytes.Repeat([]byte("x"), n)
	}
	srv := &fasthttp.Server{CloseOnShutdown: true, Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("text/plain")
		ctx.SetBody(bodies[string(ctx.Path())])
	}}
	go srv.Serve(ln)
	b.Cleanup(func() { shutdown(srv); ln.Close() })
	return ln.Addr().String()
}

// sendN sends n GET requests for path over 64 connections and checks each
// body is size bytes long.
func sendN(b *testing.B, addr, path string, size, n int) {
	hc := &fasthttp.HostClient{Addr: addr, MaxConns: 64}
	defer hc.CloseIdleConnections()
	var wg sync.WaitGroup
	var mu sync.Mutex
	left := n
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := fasthttp.AcquireRequest()
			resp := fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			resp.KeepBodyBuffer = true
			req.SetRequestURI("http://" + addr + path)
			for {
				mu.Lock()
				if left == 0 {
					mu.Unlock()
					return
				}
				left--
				mu.Unlock()
				if err := hc.DoTimeout(req, resp, 15*time.Second); err != nil {
					b.Error(err)
					return
				}
				if len(resp.Body()) != size {
					b.Errorf("%d bytes, want %d", len(resp.Body()), size)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// BenchmarkProxySSE relays b.N events over 100 concurrent streams, direct
// and through the gateway (no plugins); events/s and allocations per
// event compare the relay's cost.
func BenchmarkProxySSE(b *testing.B) {
	const streams = 100
	payload := bytes.Repeat([]byte("x"), 200)
	up := startUpstream(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		w.Header().Set("Content-Type", "text/event-stream")
		bw := bufio.NewWriterSize(w, 32<<10)
		for i := 0; i < n; i++ {
			fmt.Fprintf(bw, "id: %d\ndata: %s\n\n", i, payload)
		}
		bw.Flush()
	}))
	cfg := testConfig(b, []string{up.addr}, func(c *config.Config) { c.Upstreams[0].MaxStreamsPerTarget = streams })
	g := startGateway(b, cfg, nil, nil)
	for _, target := range []struct{ name, addr string }{{"direct", up.addr}, {"gateway", g.addr}} {
		b.Run(target.name, func(b *testing.B) {
			b.ReportAllocs()
			per := b.N/streams + 1
			cpu0 := cputime.Total()
			start := time.Now()
			var wg sync.WaitGroup
			for s := 0; s < streams; s++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c, err := net.Dial("tcp", target.addr)
					if err != nil {
						b.Error(err)
						return
					}
					defer c.Close()
					fmt.Fprintf(c, "GET /s?n=%d HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n", per)
					resp, err := http.ReadResponse(bufio.NewReader(c), nil)
					if err != nil {
						b.Error(err)
						return
					}
					p := sse.NewParser(resp.Body, 0)
					for i := 0; i < per; i++ {
						if _, err := p.Next(); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			total := float64(per * streams)
			b.ReportMetric(total/time.Since(start).Seconds(), "events/s")
			b.ReportMetric(float64((cputime.Total()-cpu0).Nanoseconds())/total, "cpu-ns/event")
		})
	}
}
