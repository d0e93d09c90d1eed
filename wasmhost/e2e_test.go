package wasmhost_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wasmgate/wasmgate/gateway"
	"github.com/wasmgate/wasmgate/gateway/config"
	"github.com/wasmgate/wasmgate/gateway/event"
	"github.com/wasmgate/wasmgate/internal/wasmbuild"
)

// echoUpstream answers every request with "ok", echoing x-* request headers
// back as echo-* response headers; /callout answers a plugin's http_call.
func echoUpstream(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, v := range r.Header {
			if strings.HasPrefix(strings.ToLower(k), "x-") {
				w.Header().Set("Echo-"+k, strings.Join(v, ","))
			}
		}
		if r.URL.Path == "/callout" {
			io.WriteString(w, "callout-body")
			return
		}
		body, _ := io.ReadAll(r.Body)
		if len(body) > 0 {
			w.Write(body)
			return
		}
		io.WriteString(w, "ok")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

type gw struct {
	*gateway.Gateway
	base, admin string
	client      *http.Client
}

func startGateway(t *testing.T, yaml string) *gw { return startGatewayB(t, yaml) }

func startGatewayB(t testing.TB, yaml string) *gw {
	t.Helper()
	if !strings.Contains(yaml, "cache_dir") {
		// Never the default ./data/wasm-cache inside the source tree.
		if strings.Contains(yaml, "\nwasm: {") {
			yaml = strings.Replace(yaml, "\nwasm: {", fmt.Sprintf("\nwasm: {cache_dir: %q, ", t.TempDir()), 1)
		} else {
			yaml += fmt.Sprintf("wasm: {cache_dir: %q}\n", t.TempDir())
		}
	}
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, yaml)
	}
	g, err := gateway.New(cfg, gateway.Options{Logger: slog.New(slog.DiscardHandler), Sink: event.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := g.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	})
	return &gw{Gateway: g, base: "http://" + g.Addr(), admin: "http://" + g.AdminAddr(),
		client: &http.Client{Transport: tr, Timeout: 20 * time.Second}}
}

func (g *gw) do(t *testing.T, method, path string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, g.base+path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := g.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func build(t *testing.T, lang wasmbuild.Lang, name string) string {
	return wasmbuild.MustBuild(t, lang, filepath.Join("testdata", name))
}

func TestGatewayEndToEnd(t *testing.T) {
	up := echoUpstream(t)
	all := build(t, wasmbuild.C, "all.c")
	wat := build(t, wasmbuild.WAT, "headers.wat")
	g := startGateway(t, fmt.Sprintf(`
listen: 127.0.0.1:0
admin: {listen: 127.0.0.1:0, token: secret}
upstreams:
  - {name: up, targets: [%q]}
  - {name: backend, targets: [%q]}
routes:
  - {name: c, match: {path_prefix: /c}, upstream: up, plugins: [all]}
  - {name: wat, match: {path_prefix: /wat}, upstream: up, plugins: [wat]}
  - {name: both, match: {path_prefix: /both}, upstream: up, plugins: [wat, {name: all, config: {mode: override}}]}
  - {name: plain, match: {path_prefix: /}, upstream: up}
plugins:
  - {name: all, file: %q, pool_size: 2, config: {mode: default}}
  - {name: wat, file: %q, pool_size: 1}
storage: {enabled: false}
wasm: {cache_dir: %q}
`, up, up, all, wat, t.TempDir()))

	resp, body := g.do(t, "GET", "/c/x", "X-In", "hello")
	if resp.StatusCode != 200 || body != "ok" || resp.Header.Get("X-Out") != "hello" || resp.Header.Get("X-Plugin") != "all" {
		t.Fatalf("/c: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	resp, _ = g.do(t, "GET", "/wat", "X-In", "w")
	if resp.Header.Get("X-Out") != "w" {
		t.Fatalf("/wat: %v", resp.Header)
	}
	resp, _ = g.do(t, "GET", "/both", "X-In", "b")
	if got := resp.Header.Values("X-Out"); len(got) != 2 {
		t.Fatalf("/both: X-Out %v", got)
	}
	resp, body = g.do(t, "GET", "/c/deny", "X-Test", "deny")
	if resp.StatusCode != 403 || body != "denied\n" || resp.Header.Get("X-Deny") != "1" {
		t.Fatalf("deny: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	// http_call through the upstream pools, answered on the VM, resuming the request.
	resp, _ = g.do(t, "GET", "/c/call", "X-Test", "httpcall")
	if resp.StatusCode != 200 || resp.Header.Get("Echo-X-Call-Status") != "200" || resp.Header.Get("Echo-X-Call-Body") != "callout-body" {
		t.Fatalf("httpcall: %d %v", resp.StatusCode, resp.Header)
	}
	resp, _ = g.do(t, "GET", "/c/call", "X-Test", "httpcall-unknown")
	if resp.StatusCode != 200 || resp.Header.Get("Echo-X-Call-Ret") != "2" {
		t.Fatalf("httpcall to an unknown upstream: %d %v", resp.StatusCode, resp.Header)
	}
	// properties come from chain.Info and the request
	resp, _ = g.do(t, "GET", "/c/props?q=1", "X-Test", "props")
	if resp.Header.Get("Echo-X-P-Route") != "c" || resp.Header.Get("Echo-X-P-Upstream") != "up" ||
		resp.Header.Get("Echo-X-P-Path") != "/c/props?q=1" || resp.Header.Get("Echo-X-P-Plugin") != "all" {
		t.Fatalf("props: %v", resp.Header)
	}

	// The other host functions, through the gateway (the upstream echoes
	// the request headers the plugin set).
	for test, want := range map[string]map[string]string{
		"shared": {"Echo-X-Shared": "1"},
		"metric": {"Echo-X-Metric-Dec": "2"},
		"misc":   {"Echo-X-Grpc": "12", "Echo-X-Tcp": "12", "Echo-X-Env": "none", "Echo-X-File": "none", "Echo-X-Time-Ok": "1", "Echo-X-Foreign-Missing": "1"},
		"maps":   {"Echo-X-Size-Match": "1", "Echo-X-Replace": "new"},
		"queue":  {"Echo-X-Queue-Missing": "1"},
	} {
		resp, _ = g.do(t, "GET", "/c/"+test, "X-Test", test, "X-Replace", "old")
		for k, v := range want {
			if got := resp.Header.Get(k); got != v {
				t.Errorf("%s: %s = %q, want %q", test, k, got, v)
			}
		}
	}
	mresp, err := g.client.Get(g.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	mbody, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	for _, want := range []string{`wasmgate_plugin_counter{name="requests",plugin="all"}`, `wasmgate_plugin_calls_total{callback="proxy_on_request_headers",plugin="all"}`,
		`wasmgate_plugin_memory_pages{plugin="all"}`} {
		if !strings.Contains(string(mbody), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// admin: token required; status lists both plugins; reload swaps a version.
	req, _ := http.NewRequest("GET", g.admin+"/plugins", nil)
	r0, err := g.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r0.Body.Close()
	if r0.StatusCode != http.StatusUnauthorized && r0.StatusCode != http.StatusForbidden {
		t.Fatalf("/plugins without token: %d", r0.StatusCode)
	}
	var status []struct {
		Name    string `json:"name"`
		Version int    `json:"version"`
		VMs     int    `json:"vms"`
	}
	adminJSON(t, g, "GET", "/plugins", &status)
	if len(status) != 2 || status[0].Name != "all" || status[0].VMs != 2 || status[0].Version != 1 {
		t.Fatalf("status %+v", status)
	}
	var rel map[string]any
	if code := adminJSON(t, g, "POST", "/plugins/all/reload", &rel); code != 200 {
		t.Fatalf("reload: %d %v", code, rel)
	}
	adminJSON(t, g, "GET", "/plugins", &status)
	if status[0].Version != 2 {
		t.Fatalf("after reload: %+v", status)
	}
	if code := adminJSON(t, g, "POST", "/plugins/nope/reload", &rel); code != 404 {
		t.Fatalf("reload unknown: %d", code)
	}
	resp, _ = g.do(t, "GET", "/c/after", "X-In", "again")
	if resp.Header.Get("X-Out") != "again" {
		t.Fatalf("after reload: %v", resp.Header)
	}
	resp, body = g.do(t, "GET", "/plain")
	if resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("/plain %d %q", resp.StatusCode, body)
	}
	// the compilation cache was written
	entries, _ := os.ReadDir(g.Config().Wasm.CacheDir)
	if len(entries) == 0 {
		t.Fatal("compilation cache dir is empty")
	}
}

func adminJSON(t *testing.T, g *gw, method, path string, out any) int {
	t.Helper()
	req, _ := http.NewRequest(method, g.admin+path, nil)
	req.Header.Set("Authorization", "Bearer secret")
	resp, err := g.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, b, err)
	}
	return resp.StatusCode
}

func sseUpstream(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/sse/stream" {
			b, _ := io.ReadAll(r.Body)
			w.Write(append([]byte("echo:"), b...))
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		for _, e := range []string{"id: 1\ndata: one\n\n", "data: drop this\n\n", "data: secret\n\n", "id: 4\ndata: four\n\n"} {
			io.WriteString(w, e)
			w.(http.Flusher).Flush()
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func TestGatewayBodiesAndSSE(t *testing.T) {
	up := sseUpstream(t)
	g := startGateway(t, fmt.Sprintf(`
listen: 127.0.0.1:0
admin: {listen: 127.0.0.1:0}
upstreams: [{name: up, targets: [%q]}]
routes: [{name: sse, match: {path_prefix: /sse}, upstream: up, plugins: [all]}]
plugins: [{name: all, file: %q, pool_size: 1}]
storage: {enabled: false}
`, up, build(t, wasmbuild.C, "all.c")))
	req, _ := http.NewRequest("POST", g.base+"/sse/upload", strings.NewReader("hello body"))
	resp, err := g.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "echo:HELLO BODY!" {
		t.Fatalf("request body through the plugin: %d %q", resp.StatusCode, b)
	}
	resp, body := g.do(t, "GET", "/sse/stream")
	want := "id: 1\ndata: one\n\ndata: [redacted]\n\nid: 4\ndata: four\n\n"
	if resp.StatusCode != 200 || body != want {
		t.Fatalf("SSE through the plugin: %d\n%q\nwant\n%q", resp.StatusCode, body, want)
	}
}

// TestGatewayHostilePlugins: while hostile plugins misbehave on their
// routes, a route without plugins and a route with a good plugin keep
// answering every request, and the hostile routes answer per policy.
func TestGatewayHostilePlugins(t *testing.T) {
	up := echoUpstream(t)
	hostile := build(t, wasmbuild.C, "hostile.c")
	wat := build(t, wasmbuild.WAT, "headers.wat")
	g := startGateway(t, fmt.Sprintf(`
listen: 127.0.0.1:0
admin: {listen: 127.0.0.1:0}
upstreams: [{name: up, targets: [%q]}]
routes:
  - {name: closed, match: {path_prefix: /closed}, upstream: up, plugins: [hclosed]}
  - {name: open, match: {path_prefix: /open}, upstream: up, plugins: [hopen]}
  - {name: good, match: {path_prefix: /good}, upstream: up, plugins: [good]}
  - {name: plain, match: {path_prefix: /}, upstream: up}
plugins:
  - {name: hclosed, file: %q, pool_size: 2, cpu_limit: 200ms, memory_limit: 8MiB, queue_timeout: 2s}
  - {name: hopen, file: %q, pool_size: 2, cpu_limit: 200ms, memory_limit: 8MiB, failure_policy: fail_open, queue_timeout: 2s}
  - {name: good, file: %q, pool_size: 2}
storage: {enabled: false}
`, up, hostile, hostile, wat))

	modes := []string{"loop:req_headers", "loop:resp_headers", "loop:resp_body", "trap:req_headers", "recurse:req_headers",
		"membomb:req_headers", "logspam", "headers10k", "status0", "status1000", "loop:log", "loop:done"}
	stop := make(chan struct{})
	goodErrs := make(chan string, 100)
	var served, done = make(chan int, 2), make(chan struct{})
	for w := 0; w < 2; w++ {
		go func(w int) {
			n := 0
			defer func() { served <- n }()
			path := []string{"/plain", "/good"}[w]
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest("GET", g.base+path, nil)
				req.Header.Set("X-In", "v")
				resp, err := g.client.Do(req)
				if err != nil {
					goodErrs <- err.Error()
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || (path == "/good" && resp.Header.Get("X-Out") != "v") {
					goodErrs <- fmt.Sprintf("%s: %d", path, resp.StatusCode)
					return
				}
				n++
			}
		}(w)
	}
	go func() {
		defer close(done)
		for _, mode := range modes {
			for _, route := range []string{"/closed", "/open"} {
				req, _ := http.NewRequest("GET", g.base+route, nil)
				req.Header.Set("X-Hostile", mode)
				resp, err := g.client.Do(req)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err != nil {
					// A fail_closed failure after the response headers went
					// out can only end the stream (chain contract).
					if !(route == "/closed" && strings.HasSuffix(mode, ":resp_body")) {
						t.Errorf("%s %s: %v", route, mode, err)
					}
					continue
				}
				failing := !strings.HasPrefix(mode, "log") && !strings.HasPrefix(mode, "status") && mode != "headers10k" && !strings.HasSuffix(mode, ":log") && !strings.HasSuffix(mode, ":done")
				want := 200
				if failing && route == "/closed" {
					want = 500
				}
				if resp.StatusCode != want {
					t.Errorf("%s %s: %d, want %d", route, mode, resp.StatusCode, want)
				}
			}
		}
	}()
	<-done
	close(stop)
	total := <-served + <-served
	close(goodErrs)
	for e := range goodErrs {
		t.Errorf("healthy route failed while plugins misbehaved: %s", e)
	}
	if total < 10 {
		t.Fatalf("healthy routes served only %d requests", total)
	}
	t.Logf("healthy routes served %d requests meanwhile", total)
}

// TestGatewayReloadsChangedPluginFile: replacing the plugin file (rename
// into place) makes the gateway serve the new version; a corrupt file is
// refused and the previous version keeps serving.
func TestGatewayReloadsChangedPluginFile(t *testing.T) {
	up := echoUpstream(t)
	dir := t.TempDir()
	live := filepath.Join(dir, "plugin.wasm")
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
	replace(build(t, wasmbuild.WAT, "headers.wat"))
	g := startGateway(t, fmt.Sprintf(`
listen: 127.0.0.1:0
admin: {listen: 127.0.0.1:0}
upstreams: [{name: up, targets: [%q]}]
routes: [{name: r, match: {path_prefix: /}, upstream: up, plugins: [p]}]
plugins: [{name: p, file: %q, pool_size: 1}]
storage: {enabled: false}
wasm: {watch: true}
`, up, live))
	if resp, _ := g.do(t, "GET", "/", "X-In", "a"); resp.Header.Get("X-Plugin") != "" || resp.Header.Get("X-Out") != "a" {
		t.Fatalf("v1: %v", resp.Header)
	}
	replace(build(t, wasmbuild.C, "all.c"))
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, _ := g.do(t, "GET", "/", "X-In", "b")
		if resp.StatusCode != 200 {
			t.Fatalf("during reload: %d", resp.StatusCode)
		}
		if resp.Header.Get("X-Plugin") == "all" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("new plugin version never served")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := os.WriteFile(live, []byte("not wasm"), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if resp, _ := g.do(t, "GET", "/", "X-In", "c"); resp.StatusCode != 200 || resp.Header.Get("X-Plugin") != "all" {
		t.Fatalf("after a corrupt file: %d %v", resp.StatusCode, resp.Header)
	}
}
