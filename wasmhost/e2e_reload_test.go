package wasmhost_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmgate/wasmgate/internal/wasmbuild"
)

// versionGuest is a WAT plugin that adds response header x-version: v.
func versionGuest(t *testing.T, v string) string {
	src := filepath.Join(t.TempDir(), v+".wat")
	wat := fmt.Sprintf(`(module
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "x-version")
  (data (i32.const 32) %q)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (drop (call $add (i32.const 2) (i32.const 16) (i32.const 9) (i32.const 32) (i32.const %d)))
    (i32.const 0)))`, v, len(v))
	if err := os.WriteFile(src, []byte(wat), 0o644); err != nil {
		t.Fatal(err)
	}
	return wasmbuild.MustBuild(t, wasmbuild.WAT, src)
}

// TestGatewayHotReloadUnderLoad: 64 clients keep requests in flight and 50
// SSE streams stay open while the plugin file is replaced 20 times,
// alternating two versions. No request fails, every response carries
// exactly one version, every stream keeps receiving events, and after the
// last replacement new responses carry the last version within a second.
func TestGatewayHotReloadUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stopSSE := make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/sse" {
			io.WriteString(w, "ok")
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		for i := 0; ; i++ {
			fmt.Fprintf(w, "id: %d\ndata: tick\n\n", i)
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-stopSSE:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	})}
	go srv.Serve(ln)
	defer srv.Close()
	defer close(stopSSE)

	v1, v2 := versionGuest(t, "v1"), versionGuest(t, "v2")
	live := filepath.Join(t.TempDir(), "plugin.wasm")
	replace := func(src string) {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(live+".tmp", b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(live+".tmp", live); err != nil {
			t.Fatal(err)
		}
	}
	replace(v1)
	g := startGateway(t, fmt.Sprintf(`
listen: 127.0.0.1:0
admin: {listen: 127.0.0.1:0, token: secret}
upstreams: [{name: up, targets: [%q], max_conns_per_target: 128, max_streams_per_target: 128}]
routes: [{name: r, match: {path_prefix: /}, upstream: up, plugins: [p]}]
plugins: [{name: p, file: %q, pool_size: 2, queue_timeout: 1s}]
storage: {enabled: false}
sessions: {max_sessions: 1000000}
wasm: {watch: true}
`, ln.Addr().String(), live))

	// 50 SSE streams.
	var sseWG sync.WaitGroup
	sseEvents := make([]atomic.Int64, 50)
	sseErr := make(chan string, 50)
	sseClient := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer sseClient.CloseIdleConnections()
	stopStreams := make(chan struct{})
	for i := range sseEvents {
		resp, err := sseClient.Get(g.base + "/sse")
		if err != nil {
			t.Fatal(err)
		}
		if v := resp.Header.Get("X-Version"); v != "v1" {
			t.Fatalf("SSE stream %d: x-version %q", i, v)
		}
		sseWG.Add(1)
		go func(i int, body io.ReadCloser) {
			defer sseWG.Done()
			defer body.Close()
			go func() { <-stopStreams; body.Close() }()
			sc := bufio.NewScanner(body)
			for sc.Scan() {
				if strings.HasPrefix(sc.Text(), "data: ") {
					sseEvents[i].Add(1)
				}
			}
			select {
			case <-stopStreams:
			default:
				sseErr <- fmt.Sprintf("stream %d ended early: %v", i, sc.Err())
			}
		}(i, resp.Body)
	}

	// 64 clients in a loop.
	var stop atomic.Bool
	var total, failed atomic.Int64
	var lastBad atomic.Value
	var wg sync.WaitGroup
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				resp, err := client.Get(g.base + "/x")
				if err != nil {
					failed.Add(1)
					lastBad.Store(err.Error())
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				vs := resp.Header.Values("X-Version")
				if resp.StatusCode != 200 || len(vs) != 1 || (vs[0] != "v1" && vs[0] != "v2") {
					failed.Add(1)
					lastBad.Store(fmt.Sprintf("%d %v", resp.StatusCode, vs))
				}
				total.Add(1)
			}
		}()
	}
	for i := 0; i < 20; i++ {
		time.Sleep(150 * time.Millisecond)
		if i%2 == 0 {
			replace(v2)
		} else {
			replace(v1)
		}
	}
	// The last replacement installed v1: within a second every new response says so.
	deadline := time.Now().Add(time.Second + 200*time.Millisecond) // + the watcher's debounce
	for {
		resp, err := client.Get(g.base + "/x")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.Header.Get("X-Version") == "v1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("last version not served within 1s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for total.Load() < 20000 {
		time.Sleep(50 * time.Millisecond)
	}
	before := make([]int64, len(sseEvents))
	for i := range sseEvents {
		before[i] = sseEvents[i].Load()
	}
	time.Sleep(200 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	for i := range sseEvents {
		if sseEvents[i].Load() <= before[i] {
			t.Errorf("SSE stream %d stopped receiving events (%d)", i, before[i])
		}
	}
	close(stopStreams)
	sseWG.Wait()
	close(sseErr)
	for e := range sseErr {
		t.Error(e)
	}
	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed (last: %v)", failed.Load(), total.Load(), lastBad.Load())
	}
	var st []struct {
		Version int `json:"version"`
	}
	// The watcher reports a file once it settles and differs from what it
	// last reported, so replacements made while a reload runs may merge.
	if code := adminJSON(t, g, "GET", "/plugins", &st); code != 200 || len(st) != 1 || st[0].Version < 6 {
		t.Fatalf("GET /plugins: %d %+v (want several reloads)", code, st)
	}
	t.Logf("%d requests, 20 file replacements (%d reloads), 50 SSE streams; 0 failures", total.Load(), st[0].Version-1)
}
