package gateway_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"strconv"
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

// scrape returns the value of each unlabelled metric in names from the
// admin /metrics, failing the test if one is missing.
func scrape(t *testing.T, c *http.Client, g *gateway.Gateway, names ...string) map[string]float64 {
	t.Helper()
	code, body := get(t, c, "http://"+g.AdminAddr()+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	vals := make(map[string]float64, len(names))
	for _, line := range strings.Split(body, "\n") {
		name, value, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(name, "#") {
			continue
		}
		for _, n := range names {
			if name == n {
				v, err := strconv.ParseFloat(value, 64)
				if err != nil {
					t.Fatalf("%s: %v", line, err)
				}
				vals[n] = v
			}
		}
	}
	for _, n := range names {
		if _, ok := vals[n]; !ok {
			t.Fatalf("/metrics lacks %s", n)
		}
	}
	return vals
}

// TestEventPoolMetrics checks that storage.event_pool reaches the event
// pool, that its metrics are on the admin /metrics, and that once warm a
// steady small load allocates no events, even with two collections
// between rounds (which empty a sync.Pool).
func TestEventPoolMetrics(t *testing.T) {
	opts := leakOpts()
	t.Cleanup(func() { goleak.VerifyNone(t, opts...) })
	t.Cleanup(func() { event.SetPoolLimit(-1) })
	if d := config.Default().Storage.EventPool; d != event.DefaultPoolLimit {
		t.Errorf("storage.event_pool defaults to %d, the event package to %d", d, event.DefaultPoolLimit)
	}
	up := startUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{}}`)
	})
	cfg, err := config.Parse(fmt.Appendf(nil, `
listen: 127.0.0.1:0
admin: {listen: 127.0.0.1:0}
upstreams: [{name: up, targets: [%q]}]
routes: [{name: r, upstream: up}]
storage: {enabled: true, path: %q, event_pool: 1500}
shutdown: {drain_timeout: 5s}
`, up, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(cfg, gateway.Options{Logger: slog.New(slog.DiscardHandler), Chains: chain.NopBuilder{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	if n := event.PoolLimit(); n != 1500 {
		t.Errorf("storage.event_pool 1500 set the pool's limit to %d", n)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	t.Cleanup(func() { // before goleak's, also when the test fails
		tr.CloseIdleConnections()
		if err := g.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	})

	// round sends n requests over conns connections, each in one of 20
	// sessions: a request and a response event each.
	round := func(n, conns int) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make(chan error, conns)
		for w := range conns {
			wg.Go(func() {
				for i := w; i < n; i += conns {
					req, _ := http.NewRequest("POST", "http://"+g.Addr()+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
					req.Header.Set("Mcp-Session-Id", "pool-"+strconv.Itoa(i%20))
					resp, err := c.Do(req)
					if err != nil {
						errs <- err
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						errs <- fmt.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
	const (
		free      = "wasmgate_event_pool_free"
		allocated = "wasmgate_event_pool_allocated_total"
		discarded = "wasmgate_event_pool_discarded_total"
	)
	// Events allocated and neither free nor discarded are held: queued in
	// the store, or kept by an earlier test's sink that never releases.
	held := func(m map[string]float64) float64 { return m[allocated] - m[discarded] - m[free] }
	before := scrape(t, c, g, free, allocated, discarded)
	// settle waits until the store has released every event sent.
	settle := func() map[string]float64 {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			m := scrape(t, c, g, free, allocated, discarded)
			if held(m) <= held(before) {
				return m
			}
			if time.Now().After(deadline) {
				t.Fatalf("%v events still held after 10s: %v (before the test %v)", held(m)-held(before), m, before)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	// A burst fills the pool with what it had in flight; the rounds after
	// it each record at most half as many events (two per request, the
	// sessions already started), so once warm none may allocate.
	round(1000, 16)
	warm := settle()
	roundRequests := int(warm[free]) / 4
	if roundRequests < 10 {
		t.Fatalf("after 1000 requests over 16 connections only %v events are free: %v", warm[free], warm)
	}
	for range 3 {
		runtime.GC()
		runtime.GC()
		round(roundRequests, 4)
		settle()
	}
	after := settle()
	t.Logf("before %v, warm %v, after 3 more rounds %v", before, warm, after)
	if grown := after[allocated] - warm[allocated]; grown != 0 {
		t.Errorf("%v events allocated in %d requests once warm (%v free when warm)", grown, 3*roundRequests, warm[free])
	}
	if after[free] > 1500 {
		t.Errorf("%v events free, over storage.event_pool 1500", after[free])
	}
}
