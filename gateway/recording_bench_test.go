package gateway_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/wasmgate/wasmgate/gateway"
	"github.com/wasmgate/wasmgate/gateway/chain"
	"github.com/wasmgate/wasmgate/gateway/config"
	"github.com/wasmgate/wasmgate/internal/bench/cputime"
)

// BenchmarkGatewayRecording compares proxied requests per second with
// session recording off and on (the default storage settings: synced
// Pebble commits of up to 50 events), side by side: two gateways in front
// of one upstream take turns of 2,000 requests each over 64 keep-alive
// connections, so that a shared machine's load drift hits both alike.
// Every request carries one of 1,000 session ids, so with recording on
// each one queues a request and a response event.
//
// It reports req/s of each gateway, their ratio (on/off; the target is
// >= 0.9), and the process CPU and heap allocations per request (client,
// gateway and upstream together), whose on−off differences are what
// recording costs. Each turn
// ends with a garbage collection, timed with it, so that neither mode's
// garbage is collected on the other's account. Pebble's background work
// (memtable flushes, about one per 100,000 requests here) still runs into
// whichever turn follows, so the "on" figures miss some of it.
//
// sys-µs/req is the kernel's part of the CPU figure: about a third of
// what recording costs is kernel time (log writes and syncs, memtable
// flushes, more wake-ups).
//
// WASMGATE_BENCH_ONLY=on (or off) runs that mode's turns alone, so that a
// -cpuprofile holds one mode: compare two with pprof -diff_base.
//
// WASMGATE_BENCH_STORAGE adds YAML keys to the "on" gateway's storage
// section (for example "sync: false" or "batch_size: 200") to measure
// what a setting changes.
//
// It runs with the 45-byte JSON answer of an MCP call and with 16 KiB
// answers: what recording costs is per event, not per byte (response
// bodies are not captured), so the larger answer shows the same cost
// against more proxy work.
func BenchmarkGatewayRecording(b *testing.B) {
	for _, size := range []int{45, 16 << 10} {
		name := fmt.Sprintf("resp=%dB", size)
		if size >= 1<<10 {
			name = fmt.Sprintf("resp=%dKiB", size>>10)
		}
		b.Run(name, func(b *testing.B) { benchRecording(b, size) })
	}
}

func benchRecording(b *testing.B, size int) {
	up := startBenchUpstream(b, size)
	modes := []string{"off", "on"}
	extra := os.Getenv("WASMGATE_BENCH_STORAGE")
	if extra != "" {
		extra = ", " + extra
	}
	gws := make([]*gateway.Gateway, len(modes))
	for i, mode := range modes {
		storage := "enabled: false"
		if mode == "on" {
			storage = fmt.Sprintf("enabled: true, path: %q%s", b.TempDir(), extra)
		}
		cfg, err := config.Parse([]byte(fmt.Sprintf(`
listen: 127.0.0.1:0
admin: {listen: ""}
upstreams: [{name: up, targets: [%q], max_conns_per_target: 128}]
routes: [{name: r, upstream: up}]
storage: {%s}
log: {level: error}
`, up, storage)))
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
		gws[i] = g
	}
	const turn = 2000
	clients := make([]*fasthttp.HostClient, len(modes))
	for i, g := range gws {
		clients[i] = &fasthttp.HostClient{Addr: g.Addr(), MaxConns: 64}
		defer clients[i].CloseIdleConnections()
	}
	total := make([]time.Duration, len(modes))
	cpu := make([]time.Duration, len(modes))
	count := make([]int, len(modes))
	allocs := make([]uint64, len(modes))
	sys := make([]time.Duration, len(modes))
	only := os.Getenv("WASMGATE_BENCH_ONLY")
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; done += turn {
		for i := range modes {
			if only != "" && modes[i] != only {
				continue
			}
			n := max(min(turn, b.N-done), 1)
			usr0, sys0 := cputime.Process()
			allocs0 := heapAllocs()
			start := time.Now()
			if _, err := driveSessions(clients[i], n); err != nil {
				b.Fatal(err)
			}
			// Each turn collects its own garbage, in its own time: left to
			// the next turn, a mode's garbage was collected on the other's
			// account.
			runtime.GC()
			elapsed := time.Since(start)
			usr1, sys1 := cputime.Process()
			cpu[i] += usr1 + sys1 - usr0 - sys0
			sys[i] += sys1 - sys0
			allocs[i] += heapAllocs() - allocs0
			total[i] += elapsed
			count[i] += n
		}
	}
	b.StopTimer()
	rps := make([]float64, len(modes))
	for i, mode := range modes {
		if count[i] == 0 {
			continue // WASMGATE_BENCH_ONLY
		}
		rps[i] = float64(count[i]) / total[i].Seconds()
		b.ReportMetric(rps[i], "req/s-"+mode)
		b.ReportMetric(float64(cpu[i].Microseconds())/float64(count[i]), "cpu-µs/req-"+mode)
		b.ReportMetric(float64(allocs[i])/float64(count[i]), "allocs/req-"+mode)
		b.ReportMetric(float64(sys[i].Microseconds())/float64(count[i]), "sys-µs/req-"+mode)
	}
	if rps[0] > 0 && rps[1] > 0 {
		b.ReportMetric(rps[1]/rps[0], "on/off")
	}
	written, syncs := counterValue(b, gws[1], "wasmgate_store_events_written_total"), counterValue(b, gws[1], "wasmgate_store_wal_syncs_total")
	if syncs > 0 {
		b.ReportMetric(written/syncs, "events/sync")
	}
	// Pebble keys per event written: 1 without runs or coalescing, 0.5
	// when each request shares a run with its response.
	if written > 0 {
		b.ReportMetric(2*(1-gaugeValue(b, gws[1], "wasmgate_store_coalesce_ratio")), "keys/event")
	}
}

// heapAllocs is the number of heap objects the process allocated so far
// (client, gateway and upstream, as the CPU figures).
func heapAllocs() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:objects"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// gaugeValue reads a gauge from g's registry (0 if absent).
func gaugeValue(b *testing.B, g *gateway.Gateway, name string) float64 {
	mfs, err := g.Registry().Gather()
	if err != nil {
		b.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) > 0 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return 0
}

// counterValue reads a counter from g's registry (0 if absent).
func counterValue(b *testing.B, g *gateway.Gateway, name string) float64 {
	mfs, err := g.Registry().Gather()
	if err != nil {
		b.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) > 0 {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}

// driveSessions sends n GETs over c's 64 connections, each with one of
// 1,000 session ids, and fails on any answer but 200.
func driveSessions(c *fasthttp.HostClient, n int) (time.Duration, error) {
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI("http://" + c.Addr + "/json")
			var id []byte
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				id = strconv.AppendInt(append(id[:0], "bench-"...), i%1000, 10)
				req.Header.SetBytesV("Mcp-Session-Id", id)
				if err := c.Do(req, resp); err != nil || resp.StatusCode() != 200 {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		return 0, fmt.Errorf("%d of %d requests failed", f, n)
	}
	return time.Since(start), nil
}

// startBenchUpstream serves a JSON-RPC answer padded to size bytes.
func startBenchUpstream(b *testing.B, size int) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	body := []byte(`{"jsonrpc":"2.0","id":1,"result":{"ok":true,"pad":""}}`)
	if pad := size - len(body); pad > 0 {
		body = fmt.Appendf(nil, `{"jsonrpc":"2.0","id":1,"result":{"ok":true,"pad":"%s"}}`, bytes.Repeat([]byte("x"), pad))
	} else {
		body = []byte(`{"jsonrpc":"2.0","id":1,"result":{"ok":true}}`)
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/json")
		ctx.SetBody(body)
	}}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Shutdown() })
	return ln.Addr().String()
}
