package gateway_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmgate/wasmgate/gateway"
	"github.com/wasmgate/wasmgate/gateway/chain"
	"github.com/wasmgate/wasmgate/gateway/config"
	"github.com/wasmgate/wasmgate/internal/bench/cputime"
)

// BenchmarkGatewayRecording compares proxied requests per second with
// session recording off and on (synced Pebble commits), side by side in one
// run. Every request carries a session id (1,000 sessions), so with
// recording on each one queues a request and a response event.
//
// On a shared 2-core box req/s moves with whatever else runs; cpu-µs/req
// (the process's user+system CPU per request, client and upstream
// included) moves far less, and its on−off difference is what recording
// costs per request.
func BenchmarkGatewayRecording(b *testing.B) {
	up := startBenchUpstream(b)
	for _, mode := range []string{"off", "on"} {
		b.Run("recording="+mode, func(b *testing.B) {
			y := fmt.Sprintf(`
listen: 127.0.0.1:0
admin: {listen: 127.0.0.1:0}
upstreams: [{name: up, targets: [%q]}]
routes: [{name: r, upstream: up}]
storage: {enabled: %v, path: %q}
log: {level: error}
`, up, mode == "on", b.TempDir())
			cfg, err := config.Parse([]byte(y))
			if err != nil {
				b.Fatal(err)
			}
			g, err := gateway.New(cfg, gateway.Options{Logger: slog.New(slog.DiscardHandler), Chains: chain.NopBuilder{}})
			if err != nil {
				b.Fatal(err)
			}
			if err := g.Start(); err != nil {
				b.Fatal(err)
			}
			defer g.Shutdown(context.Background())
			tr := &http.Transport{MaxIdleConnsPerHost: 256}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			url := "http://" + g.Addr() + "/json"
			var n, failed atomic.Int64
			b.SetParallelism(32) // 64 connections on 2 cores
			b.ReportAllocs()
			b.ResetTimer()
			start, cpu0 := time.Now(), cputime.Total()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := n.Add(1)
					req, _ := http.NewRequest("GET", url, nil)
					req.Header.Set("Mcp-Session-Id", fmt.Sprintf("bench-%04d", i%1000))
					resp, err := c.Do(req)
					if err != nil {
						failed.Add(1)
						continue
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						failed.Add(1)
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
			b.ReportMetric(float64((cputime.Total()-cpu0).Microseconds())/float64(b.N), "cpu-µs/req")
			b.StopTimer()
			if failed.Load() > 0 {
				b.Fatalf("%d of %d requests failed", failed.Load(), b.N)
			}
		})
	}
}

func startBenchUpstream(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{"ok":true}}`)
	})}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}
