package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/wasmgate/wasmgate/gateway"
	"github.com/wasmgate/wasmgate/gateway/chain"
	"github.com/wasmgate/wasmgate/gateway/config"
	"github.com/wasmgate/wasmgate/gateway/store"
)

// sseUpstream serves /json, and /sse: the first stream sends ids 1–5, each
// later one (after a pause, so replay runs first) the next two ids.
func sseUpstream(t *testing.T) string {
	var streams atomic.Int32
	return startUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/sse" {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"ok":true}`)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		first, last := 1, 5
		if n := streams.Add(1); n > 1 {
			time.Sleep(300 * time.Millisecond)
			first = 6 + 2*int(n-2)
			last = first + 1
		}
		for i := first; i <= last; i++ {
			fmt.Fprintf(w, "id: %d\nevent: tick\ndata: event %d\n\n", i, i)
			w.(http.Flusher).Flush()
		}
	})
}

func recordingGateway(t *testing.T, target, dir string, opts gateway.Options) *gateway.Gateway {
	y := fmt.Sprintf(`
listen: 127.0.0.1:0
admin: {listen: 127.0.0.1:0, token: secret}
upstreams: [{name: up, targets: [%q]}]
routes: [{name: r, upstream: up, sse: {replay: gateway}}]
storage: {enabled: true, path: %q}
shutdown: {drain_timeout: 5s}
`, target, dir)
	cfg, err := config.Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	opts.Logger = slog.New(slog.DiscardHandler)
	opts.Chains = chain.NopBuilder{}
	g, err := gateway.New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	return g
}

func adminGet(t *testing.T, c *http.Client, g *gateway.Gateway, path string, v any) int {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+g.AdminAddr()+path, nil)
	req.Header.Set("Authorization", "Bearer secret")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == 200 && v != nil {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode
}

// readSSE returns the ids of the events of one stream, to its end.
func readSSE(t *testing.T, c *http.Client, url, session, lastID string) []string {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Mcp-Session-Id", session)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ids []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if id, ok := strings.CutPrefix(sc.Text(), "id:"); ok {
			ids = append(ids, strings.TrimSpace(id))
		}
	}
	return ids
}

// TestRecordingEndToEnd: requests through the gateway are recorded, read
// back through the admin API, and an SSE client reconnecting with
// Last-Event-ID gets exactly the missed events from the store, then live.
func TestRecordingEndToEnd(t *testing.T) {
	opts := leakOpts()
	t.Cleanup(func() { goleak.VerifyNone(t, opts...) })
	up := sseUpstream(t)
	g := recordingGateway(t, up, t.TempDir(), gateway.Options{})
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}

	req, _ := http.NewRequest("POST", "http://"+g.Addr()+"/json", strings.NewReader(`{"q":1}`))
	req.Header.Set("Mcp-Session-Id", "sess-e2e")
	req.Header.Set("Authorization", "Bearer hunter2")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if got := readSSE(t, c, "http://"+g.Addr()+"/sse", "sess-e2e", ""); fmt.Sprint(got) != "[1 2 3 4 5]" {
		t.Fatalf("first stream ids %v", got)
	}

	// Wait until the five SSE events are committed.
	var page store.EventsPage
	deadline := time.Now().Add(5 * time.Second)
	for {
		page = store.EventsPage{}
		adminGet(t, c, g, "/sessions/sess-e2e/events", &page)
		n := 0
		for _, e := range page.Events {
			if e.Type == "sse_event" {
				n++
			}
		}
		if n == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("SSE events not recorded: %+v", page.Events)
		}
		time.Sleep(20 * time.Millisecond)
	}
	types := map[string]int{}
	for i, e := range page.Events {
		types[e.Type]++
		if e.Seq != uint64(i+1) || e.Session != "sess-e2e" {
			t.Errorf("event %d: session %q seq %d", i, e.Session, e.Seq)
		}
		if e.Type == "request" && e.Method == "POST" {
			for _, h := range e.Headers {
				if strings.EqualFold(h.Name, "Authorization") && h.Value != store.Redacted {
					t.Errorf("Authorization recorded as %q", h.Value)
				}
			}
			if e.Body != `{"q":1}` {
				t.Errorf("request body recorded as %q", e.Body)
			}
		}
	}
	if types["session_start"] != 1 || types["request"] != 2 || types["response"] < 1 {
		t.Errorf("recorded types %v", types)
	}
	var sp store.SessionsPage
	if code := adminGet(t, c, g, "/sessions", &sp); code != 200 || len(sp.Sessions) != 1 || sp.Sessions[0].ID != "sess-e2e" {
		t.Fatalf("GET /sessions: %d %+v", code, sp)
	}

	// Reconnect after id 3: 4 and 5 come from the store, 6 and 7 live.
	if got := readSSE(t, c, "http://"+g.Addr()+"/sse", "sess-e2e", "3"); fmt.Sprint(got) != "[4 5 6 7]" {
		t.Fatalf("resumed stream ids %v, want [4 5 6 7]", got)
	}
	tr.CloseIdleConnections()
	if err := g.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// failingCommitter makes every commit fail, as a dead disk would.
type failingCommitter struct{ calls atomic.Int64 }

func (f *failingCommitter) Apply(*pebble.Batch, *pebble.WriteOptions) error {
	f.calls.Add(1)
	return fmt.Errorf("injected: no space left on device")
}

// TestRecordingFailingStoreKeepsServing: with every commit failing, the
// proxy keeps answering; the recorder retries, then counts exhausted and
// shed events.
func TestRecordingFailingStoreKeepsServing(t *testing.T) {
	up := sseUpstream(t)
	dir := t.TempDir()
	s, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	reg := prometheus.NewRegistry()
	fc := &failingCommitter{}
	// Retries wait longer than the test runs: the 50 slots fill with events
	// waiting for their next attempt, then Record sheds; Close gives each
	// a last attempt and counts it exhausted.
	w, err := store.NewWorker(s, store.WorkerOptions{QueueSize: 50, BatchSize: 10, MaxAttempts: 3,
		RetryBase: time.Minute, RetryCap: time.Minute, Committer: fc, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	g := recordingGateway(t, up, t.TempDir(), gateway.Options{Registry: reg, Sink: w, Replayer: s})
	tr := &http.Transport{MaxIdleConnsPerHost: 8}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 5 * time.Second}

	var wg sync.WaitGroup
	var ok, slow atomic.Int64
	for p := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				req, _ := http.NewRequest("GET", "http://"+g.Addr()+"/json", nil)
				req.Header.Set("Mcp-Session-Id", fmt.Sprintf("s-%d-%d", p, i%5))
				start := time.Now()
				resp, err := c.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					ok.Add(1)
				}
				if time.Since(start) > time.Second {
					slow.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 400 || slow.Load() != 0 {
		t.Fatalf("%d of 400 answered 200, %d took over a second, with a failing store", ok.Load(), slow.Load())
	}
	tr.CloseIdleConnections()
	if err := g.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	w.Close()
	mfs, _ := reg.Gather()
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if m.Counter != nil {
				got[mf.GetName()] += m.Counter.GetValue()
			}
		}
	}
	if fc.calls.Load() == 0 || got["wasmgate_store_retries_total"] == 0 || got["wasmgate_store_exhausted_total"] == 0 ||
		got["wasmgate_store_shed_total"] == 0 || got["wasmgate_store_events_written_total"] != 0 {
		t.Fatalf("commits %d, counters %v", fc.calls.Load(), got)
	}
}
