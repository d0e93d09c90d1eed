package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/goleak"

	"github.com/wasmgate/wasmgate/examples/upstream/demo"
	"github.com/wasmgate/wasmgate/gateway"
	"github.com/wasmgate/wasmgate/gateway/config"
	"github.com/wasmgate/wasmgate/gateway/event"
	"github.com/wasmgate/wasmgate/internal/wasmbuild"
)

const adminToken = "reload-test-token"

// versionPlugin is a WAT plugin that adds "x-version: <v>" to every
// response. One template, so two versions differ only in the value.
func versionPlugin(v string) string {
	return fmt.Sprintf(`(module
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "x-version")
  (data (i32.const 32) %q)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (drop (call $add (i32.const 2) (i32.const 16) (i32.const 9) (i32.const 32) (i32.const %d)))
    (i32.const 0)))`, v, len(v))
}

// Modules a reload must refuse.
const (
	missingImportPlugin = `(module
  (import "env" "proxy_no_such_host_function" (func (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024)))`
	refusesConfigPlugin = `(module
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 0)))`
)

func buildWAT(t testing.TB, dir, name, src string) []byte {
	t.Helper()
	path := filepath.Join(dir, name+".wat")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return wasmbuild.MustRead(t, wasmbuild.WAT, path)
}

// replaceFile writes b beside path and renames it into place, as deploy
// tools do.
func replaceFile(t testing.TB, path string, b []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// reloadGateway starts a gateway from the YAML file at path.
func reloadGateway(t testing.TB, path string) *gateway.Gateway {
	t.Helper()
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(cfg, gateway.Options{Logger: slog.New(slog.DiscardHandler), Sink: event.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	return g
}

type adminClient struct {
	c    *http.Client
	base string
}

func (a adminClient) do(t testing.TB, method, path string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, a.base+path, nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := a.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

type pluginStatus struct {
	Name      string    `json:"name"`
	SHA256    string    `json:"sha256"`
	Version   int       `json:"version"`
	LastError string    `json:"last_error"`
	ErrorAt   time.Time `json:"last_error_at"`
	VMs       int       `json:"vms"`
}

func (a adminClient) plugin(t testing.TB) pluginStatus {
	t.Helper()
	code, b := a.do(t, "GET", "/plugins")
	var st []pluginStatus
	if code != 200 || json.Unmarshal(b, &st) != nil || len(st) != 1 {
		t.Fatalf("GET /plugins: %d %s", code, b)
	}
	return st[0]
}

func (a adminClient) metric(t testing.TB, series string) string {
	t.Helper()
	_, b := a.do(t, "GET", "/metrics")
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, series+" ") {
			return strings.TrimPrefix(line, series+" ")
		}
	}
	return ""
}

func waitUntil(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// loadClient keeps workers requests in flight until stopped and checks
// every response with check (which returns "" when it is good).
type loadClient struct {
	total, failed atomic.Int64
	stop          atomic.Bool
	wg            sync.WaitGroup
	mu            sync.Mutex
	errs          []string
	samples       []sample
}

type sample struct {
	start time.Time
	value string
}

func startLoad(t *testing.T, url string, workers int, value func(*http.Response) (string, string)) *loadClient {
	tr := &http.Transport{MaxIdleConnsPerHost: workers * 2, MaxIdleConns: workers * 2}
	t.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	l := &loadClient{}
	for w := 0; w < workers; w++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			var local []sample
			defer func() {
				l.mu.Lock()
				l.samples = append(l.samples, local...)
				l.mu.Unlock()
			}()
			for !l.stop.Load() {
				start := time.Now()
				resp, err := c.Get(url)
				bad := ""
				v := ""
				if err != nil {
					bad = err.Error()
				} else {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					switch {
					case err != nil:
						bad = "body: " + err.Error()
					case resp.StatusCode != 200:
						bad = fmt.Sprintf("status %d", resp.StatusCode)
					default:
						v, bad = value(resp)
					}
				}
				l.total.Add(1)
				if bad != "" {
					l.failed.Add(1)
					l.mu.Lock()
					if len(l.errs) < 10 {
						l.errs = append(l.errs, bad)
					}
					l.mu.Unlock()
					continue
				}
				local = append(local, sample{start, v})
			}
		}()
	}
	return l
}

func (l *loadClient) finish(t *testing.T, minTotal int64) {
	t.Helper()
	for l.total.Load() < minTotal {
		time.Sleep(10 * time.Millisecond)
	}
	l.stop.Store(true)
	l.wg.Wait()
	if n := l.failed.Load(); n != 0 {
		t.Errorf("%d of %d requests failed, first: %q", n, l.total.Load(), l.errs)
	}
}

// sseStreams opens n endless event streams through the gateway and counts
// the events each receives.
type sseStreams struct {
	counts []atomic.Int64
	broken atomic.Int64 // streams that ended or skipped an event id
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func openStreams(t *testing.T, url string, n int) *sseStreams {
	ctx, cancel := context.WithCancel(context.Background())
	tr := &http.Transport{MaxIdleConnsPerHost: n}
	c := &http.Client{Transport: tr}
	s := &sseStreams{counts: make([]atomic.Int64, n), cancel: cancel}
	for i := 0; i < n; i++ {
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		req.Header.Set("Accept", "text/event-stream")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 {
			t.Fatalf("SSE: %d", resp.StatusCode)
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer resp.Body.Close()
			sc := bufio.NewScanner(resp.Body)
			last := 0
			for sc.Scan() {
				if id, ok := bytes.CutPrefix(sc.Bytes(), []byte("id:")); ok {
					n, err := strconv.Atoi(strings.TrimSpace(string(id)))
					if err != nil || n != last+1 {
						s.broken.Add(1) // an event lost or out of order
						return
					}
					last = n
					s.counts[i].Add(1)
				}
			}
			if ctx.Err() == nil {
				s.broken.Add(1)
			}
		}()
	}
	t.Cleanup(func() {
		cancel()
		s.wg.Wait()
		tr.CloseIdleConnections()
	})
	return s
}

func (s *sseStreams) snapshot() []int64 {
	out := make([]int64, len(s.counts))
	for i := range s.counts {
		out[i] = s.counts[i].Load()
	}
	return out
}

// expectProgress fails unless every stream received an event since before.
func (s *sseStreams) expectProgress(t *testing.T, before []int64) {
	t.Helper()
	waitUntil(t, "every SSE stream to receive new events", 5*time.Second, func() bool {
		for i, n := range s.snapshot() {
			if n <= before[i] {
				return false
			}
		}
		return true
	})
	if n := s.broken.Load(); n != 0 {
		t.Errorf("%d SSE streams ended or lost an event during reloads", n)
	}
}

// TestPluginHotReloadUnderLoad: the plugin file is replaced 20 times,
// alternating two versions, while 64 requests are in flight and 50 SSE
// streams are open; then a corrupt module, a module with a missing import
// and one whose proxy_on_configure refuses are each rejected. No request
// fails, every response carries exactly one version's header, every stream
// keeps receiving events, and new requests see the last version within 1 s.
func TestPluginHotReloadUnderLoad(t *testing.T) {
	opts := leakOpts()
	t.Cleanup(func() { goleak.VerifyNone(t, opts...) })
	up, err := demo.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { up.Kill() })
	dir := t.TempDir()
	versions := [2][]byte{buildWAT(t, dir, "v1", versionPlugin("v1")), buildWAT(t, dir, "v2", versionPlugin("v2"))}
	bad := []struct {
		name string
		wasm []byte
		err  string
	}{
		{"corrupt", []byte("\x00asm\x01\x00\x00\x00 this is not a module"), "compile"},
		{"missing import", buildWAT(t, dir, "missing", missingImportPlugin), "proxy_no_such_host_function"},
		{"on_configure false", buildWAT(t, dir, "refuses", refusesConfigPlugin), "proxy_on_configure returned false"},
	}
	live := filepath.Join(dir, "plugin.wasm")
	replaceFile(t, live, versions[0])
	cfgPath := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
listen: 127.0.0.1:0
admin: {listen: 127.0.0.1:0, token: %s}
upstreams: [{name: demo, targets: [%q]}]
routes: [{name: r, match: {path_prefix: /}, upstream: demo, plugins: [p]}]
plugins: [{name: p, file: %q, pool_size: 4, queue_timeout: 5s}]
storage: {enabled: false}
shutdown: {drain_timeout: 5s}
wasm: {cache_dir: %q}
`, adminToken, up.Addr(), live, filepath.Join(dir, "cache"))), 0o644); err != nil {
		t.Fatal(err)
	}
	g := reloadGateway(t, cfgPath)
	t.Cleanup(func() { g.Shutdown(context.Background()) })
	atr := &http.Transport{}
	t.Cleanup(atr.CloseIdleConnections)
	admin := adminClient{c: &http.Client{Transport: atr, Timeout: 10 * time.Second}, base: "http://" + g.AdminAddr()}

	streams := openStreams(t, "http://"+g.Addr()+"/sse?n=0&interval=20ms", 50)
	load := startLoad(t, "http://"+g.Addr()+"/json", 64, func(resp *http.Response) (string, string) {
		vs := resp.Header.Values("X-Version")
		if len(vs) != 1 || (vs[0] != "v1" && vs[0] != "v2") {
			return "", fmt.Sprintf("x-version %q", vs)
		}
		return vs[0], ""
	})

	var lastSwap time.Time
	begin := streams.snapshot()
	for i := 1; i <= 20; i++ {
		next := versions[i%2]
		before := admin.plugin(t).Version
		replaceFile(t, live, next)
		lastSwap = time.Now()
		waitUntil(t, fmt.Sprintf("reload %d", i), 10*time.Second, func() bool {
			st := admin.plugin(t)
			return st.Version > before && st.SHA256 == sha(next)
		})
		// Spread the swaps over the run: ~900 requests per version.
		waitUntil(t, "traffic on this version", time.Minute, func() bool { return load.total.Load() >= int64(i)*900 })
	}
	last := "v1" // the 20th replacement installs versions[0]
	streams.expectProgress(t, begin)
	mid := streams.snapshot()
	for _, b := range bad {
		before := admin.plugin(t)
		replaceFile(t, live, b.wasm)
		waitUntil(t, b.name+" to be rejected", 10*time.Second, func() bool {
			return admin.plugin(t).ErrorAt.After(before.ErrorAt)
		})
		st := admin.plugin(t)
		if st.Version != before.Version || st.SHA256 != before.SHA256 || !strings.Contains(st.LastError, b.err) {
			t.Errorf("%s: status after rejection %+v, want version %d and an error with %q", b.name, st, before.Version, b.err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	streams.expectProgress(t, mid)
	time.Sleep(max(0, time.Until(lastSwap.Add(1100*time.Millisecond))))
	load.finish(t, 20000)

	total := load.total.Load()
	seen := map[string]int{}
	late := 0
	for _, s := range load.samples {
		seen[s.value]++
		if s.start.After(lastSwap.Add(time.Second)) {
			late++
			if s.value != last {
				t.Fatalf("request started %v after the last reload got %s, want %s", s.start.Sub(lastSwap), s.value, last)
			}
		}
	}
	if seen["v1"] == 0 || seen["v2"] == 0 || late == 0 {
		t.Fatalf("versions served %v, %d requests after the last reload", seen, late)
	}
	if ok := admin.metric(t, `wasmgate_reloads_total{kind="plugin",result="ok"}`); ok != "20" {
		t.Errorf("plugin reloads ok = %q, want 20", ok)
	}
	if e := admin.metric(t, `wasmgate_reloads_total{kind="plugin",result="error"}`); e != "3" {
		t.Errorf("plugin reloads error = %q, want 3", e)
	}
	t.Logf("%d requests (%v), 50 SSE streams, 20 reloads + 3 rejected modules, 0 failures", total, seen)

	streams.cancel()
	streams.wg.Wait()
	if err := g.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// taggedUpstream serves the demo upstream's endpoints and marks every
// response with X-Upstream: name, so a test sees which upstream answered.
func taggedUpstream(t *testing.T, name string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := demo.New(demo.Options{})
	srv := &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			d.Handler(ctx)
			ctx.Response.Header.Set("X-Upstream", name)
		},
		CloseOnShutdown:       true,
		MaxIdleWorkerDuration: 200 * time.Millisecond,
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		_ = srv.Shutdown()
	})
	return ln.Addr().String()
}

// TestConfigHotReloadUnderLoad: rewriting the configuration file to move a
// route to another upstream and POST /config/reload switch traffic with no
// failed request while 64 requests are in flight and SSE streams stay
// open; an invalid file and a plugin that refuses its configuration change
// nothing; keys that need a restart are reported.
func TestConfigHotReloadUnderLoad(t *testing.T) {
	opts := leakOpts()
	t.Cleanup(func() { goleak.VerifyNone(t, opts...) })
	a, b := taggedUpstream(t, "a"), taggedUpstream(t, "b")
	dir := t.TempDir()
	plugin := filepath.Join(dir, "plugin.wasm")
	replaceFile(t, plugin, buildWAT(t, dir, "v1", versionPlugin("v1")))
	refuses := filepath.Join(dir, "refuses.wasm")
	replaceFile(t, refuses, buildWAT(t, dir, "refuses", refusesConfigPlugin))
	cfgPath := filepath.Join(dir, "gateway.yaml")
	write := func(route, pluginFile, extra string) {
		replaceFile(t, cfgPath, []byte(fmt.Sprintf(`
listen: 127.0.0.1:0
admin: {listen: 127.0.0.1:0, token: %s}
upstreams:
  - {name: a, targets: [%q]}
  - {name: b, targets: [%q]}
routes: [{name: r, match: {path_prefix: /}, upstream: %s, plugins: [p]}]
plugins: [{name: p, file: %q, pool_size: 4, queue_timeout: 5s}]
storage: {enabled: false}
shutdown: {drain_timeout: 5s}
wasm: {cache_dir: %q}
%s`, adminToken, a, b, route, pluginFile, filepath.Join(dir, "cache"), extra)))
	}
	write("a", plugin, "")
	g := reloadGateway(t, cfgPath)
	t.Cleanup(func() { g.Shutdown(context.Background()) })
	atr := &http.Transport{}
	t.Cleanup(atr.CloseIdleConnections)
	admin := adminClient{c: &http.Client{Transport: atr, Timeout: 30 * time.Second}, base: "http://" + g.AdminAddr()}

	streams := openStreams(t, "http://"+g.Addr()+"/sse?n=0&interval=20ms", 20)
	load := startLoad(t, "http://"+g.Addr()+"/json", 64, func(resp *http.Response) (string, string) {
		u := resp.Header.Values("X-Upstream")
		if len(u) != 1 || resp.Header.Get("X-Version") != "v1" {
			return "", fmt.Sprintf("x-upstream %q x-version %q", u, resp.Header.Values("X-Version"))
		}
		return u[0], ""
	})
	waitUntil(t, "traffic", 10*time.Second, func() bool { return load.total.Load() > 500 })

	// An invalid file changes nothing and says why in one line.
	replaceFile(t, cfgPath, []byte("listen: [\n"))
	code, body := admin.do(t, "POST", "/config/reload")
	var e struct{ Error string }
	if code != 422 || json.Unmarshal(body, &e) != nil || e.Error == "" || strings.Contains(e.Error, "\n") {
		t.Fatalf("invalid file: %d %s", code, body)
	}
	// A plugin that refuses its configuration changes nothing either.
	write("b", refuses, "")
	if code, body = admin.do(t, "POST", "/config/reload"); code != 422 || !bytes.Contains(body, []byte("proxy_on_configure returned false")) {
		t.Fatalf("refusing plugin: %d %s", code, body)
	}
	time.Sleep(100 * time.Millisecond)

	// Move the route to upstream b; a restart-only key is reported.
	write("b", plugin, "limits: {max_body_bytes: 1MiB}\nsessions: {max_sessions: 500}\nsse: {heartbeat: 50ms}\n")
	mid := streams.snapshot()
	code, body = admin.do(t, "POST", "/config/reload")
	swapped := time.Now()
	var rep gateway.ReloadReport
	if code != 200 || json.Unmarshal(body, &rep) != nil {
		t.Fatalf("reload: %d %s", code, body)
	}
	if fmt.Sprint(rep.Routes.Changed) != "[r]" || fmt.Sprint(rep.NeedsRestart) != "[limits.max_body_bytes]" ||
		fmt.Sprint(rep.Applied) != "[sessions.max_sessions sse.heartbeat]" || len(rep.Plugins.Changed) != 0 {
		t.Fatalf("reload report %s", body)
	}
	streams.expectProgress(t, mid)
	// A stream started after the reload gets the new heartbeat (the default
	// is 15s): comments while the upstream is silent between its events.
	req, _ := http.NewRequest("GET", "http://"+g.Addr()+"/sse?n=2&interval=500ms", nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := admin.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	beats := 0
	for sc := bufio.NewScanner(resp.Body); sc.Scan() && sc.Text() != "id: 2"; {
		if strings.HasPrefix(sc.Text(), ":") {
			beats++
		}
	}
	resp.Body.Close()
	if beats < 2 {
		t.Errorf("%d heartbeats in 500ms with sse.heartbeat 50ms", beats)
	}
	waitUntil(t, "requests after the reload", 2*time.Minute, func() bool { return load.total.Load() > 20000 })
	load.finish(t, 20000)
	after := map[string]int{}
	for _, s := range load.samples {
		if s.start.After(swapped) {
			after[s.value]++
		}
	}
	if after["a"] != 0 || after["b"] == 0 {
		t.Fatalf("upstreams that answered requests started after the reload: %v", after)
	}
	if ok := admin.metric(t, `wasmgate_reloads_total{kind="config",result="ok"}`); ok != "1" {
		t.Errorf("config reloads ok = %q", ok)
	}
	if e := admin.metric(t, `wasmgate_reloads_total{kind="config",result="error"}`); e != "2" {
		t.Errorf("config reloads error = %q", e)
	}
	t.Logf("%d requests, %d after the reload (all on b), took %.1f ms", load.total.Load(), after["b"], rep.TookMS)

	streams.cancel()
	streams.wg.Wait()
	if err := g.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestConfigReloadReplacesPlugins: a configuration reload that changes a
// plugin's file and adds another starts them before the swap; the replaced
// plugin's VMs stay while an SSE stream that started before the reload is
// open (it keeps receiving events) and close once it ends; a later reload
// removes the added plugin.
func TestConfigReloadReplacesPlugins(t *testing.T) {
	opts := leakOpts()
	t.Cleanup(func() { goleak.VerifyNone(t, opts...) })
	up, err := demo.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { up.Kill() })
	dir := t.TempDir()
	v1, v2, q1 := filepath.Join(dir, "v1.wasm"), filepath.Join(dir, "v2.wasm"), filepath.Join(dir, "q1.wasm")
	replaceFile(t, v1, buildWAT(t, dir, "v1", versionPlugin("v1")))
	replaceFile(t, v2, buildWAT(t, dir, "v2", versionPlugin("v2")))
	replaceFile(t, q1, buildWAT(t, dir, "q1", versionPlugin("q1")))
	cfgPath := filepath.Join(dir, "gateway.yaml")
	write := func(routes, plugins string) {
		replaceFile(t, cfgPath, []byte(fmt.Sprintf(`
listen: 127.0.0.1:0
admin: {listen: 127.0.0.1:0, token: %s}
upstreams: [{name: demo, targets: [%q]}]
routes: [%s]
plugins: [%s]
storage: {enabled: false}
shutdown: {drain_timeout: 5s}
wasm: {cache_dir: %q}
`, adminToken, up.Addr(), routes, plugins, filepath.Join(dir, "cache"))))
	}
	write(`{name: r, match: {path_prefix: /}, upstream: demo, plugins: [p]}`,
		fmt.Sprintf(`{name: p, file: %q, pool_size: 2}`, v1))
	g := reloadGateway(t, cfgPath)
	t.Cleanup(func() { g.Shutdown(context.Background()) })
	atr := &http.Transport{}
	t.Cleanup(atr.CloseIdleConnections)
	c := &http.Client{Transport: atr, Timeout: 10 * time.Second}
	admin := adminClient{c: c, base: "http://" + g.AdminAddr()}
	version := func(path string) string {
		resp, err := c.Get("http://" + g.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d", path, resp.StatusCode)
		}
		return resp.Header.Get("X-Version")
	}
	vms := func() string { return admin.metric(t, `wasmgate_plugin_vms{plugin="p"}`) }
	if v := version("/json"); v != "v1" {
		t.Fatalf("before: %q", v)
	}
	streams := openStreams(t, "http://"+g.Addr()+"/sse?n=0&interval=10ms", 1)

	write(`{name: r, match: {path_prefix: /}, upstream: demo, plugins: [p]},
  {name: r2, match: {path_prefix: /headers}, upstream: demo, plugins: [q]}`,
		fmt.Sprintf(`{name: p, file: %q, pool_size: 2}, {name: q, file: %q, pool_size: 1}`, v2, q1))
	mid := streams.snapshot()
	code, body := admin.do(t, "POST", "/config/reload")
	var rep gateway.ReloadReport
	if code != 200 || json.Unmarshal(body, &rep) != nil {
		t.Fatalf("reload: %d %s", code, body)
	}
	if fmt.Sprint(rep.Plugins.Changed, rep.Plugins.Added, rep.Routes.Added, rep.Routes.Changed) != "[p] [q] [r2] []" {
		t.Fatalf("report %s", body)
	}
	if v, q := version("/json"), version("/headers"); v != "v2" || q != "q1" {
		t.Fatalf("after reload: / %q, /headers %q", v, q)
	}
	streams.expectProgress(t, mid)
	if n := vms(); n != "4" {
		t.Fatalf("VMs of p while a stream holds the old routes: %s, want 4 (old pool kept)", n)
	}
	streams.cancel()
	streams.wg.Wait()
	waitUntil(t, "the replaced plugin to close", 5*time.Second, func() bool { return vms() == "2" })

	write(`{name: r, match: {path_prefix: /}, upstream: demo, plugins: [p]}`,
		fmt.Sprintf(`{name: p, file: %q, pool_size: 2}`, v2))
	if code, body = admin.do(t, "POST", "/config/reload"); code != 200 || json.Unmarshal(body, &rep) != nil ||
		fmt.Sprint(rep.Plugins.Removed, rep.Routes.Removed, rep.Plugins.Changed) != "[q] [r2] []" {
		t.Fatalf("second reload: %d %s", code, body)
	}
	if _, b := admin.do(t, "GET", "/plugins"); bytes.Contains(b, []byte(`"q"`)) {
		t.Fatalf("removed plugin still listed: %s", b)
	}
	waitUntil(t, "the removed plugin to close", 5*time.Second, func() bool {
		return admin.metric(t, `wasmgate_plugin_vms{plugin="q"}`) == "0"
	})
	if err := g.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}
