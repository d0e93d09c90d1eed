package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/wasmgate/wasmgate/gateway"
	"github.com/wasmgate/wasmgate/gateway/config"
	"github.com/wasmgate/wasmgate/internal/wasmbuild"
)

func versionWAT(v string) string {
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

// TestSIGHUPReloads: with the file watcher off, SIGHUP re-reads the
// configuration (the route moves to upstream b) and reloads the plugin
// whose file changed.
func TestSIGHUPReloads(t *testing.T) {
	leak := []goleak.Option{goleak.IgnoreCurrent(),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*TCPDialer).tcpAddrsClean"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1")}
	t.Cleanup(func() { goleak.VerifyNone(t, leak...) })
	upstream := func(name string) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) })}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
		return ln.Addr().String()
	}
	a, b := upstream("a"), upstream("b")
	dir := t.TempDir()
	var mods [2][]byte
	for i, v := range []string{"v1", "v2"} {
		src := filepath.Join(dir, v+".wat")
		if err := os.WriteFile(src, []byte(versionWAT(v)), 0o644); err != nil {
			t.Fatal(err)
		}
		mods[i] = wasmbuild.MustRead(t, wasmbuild.WAT, src)
	}
	live := filepath.Join(dir, "plugin.wasm")
	cfgPath := filepath.Join(dir, "gateway.yaml")
	write := func(path string, b []byte) {
		if err := os.WriteFile(path+".tmp", b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			t.Fatal(err)
		}
	}
	conf := func(up string) []byte {
		return []byte(fmt.Sprintf(`
listen: 127.0.0.1:0
admin: {listen: ""}
upstreams: [{name: up, targets: [%q]}]
routes: [{name: r, upstream: up, plugins: [p]}]
plugins: [{name: p, file: %q, pool_size: 1}]
storage: {enabled: false}
wasm: {watch: false, cache_dir: %q}
`, up, live, filepath.Join(dir, "cache")))
	}
	write(live, mods[0])
	write(cfgPath, conf(a))
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(cfg, gateway.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	defer g.Shutdown(context.Background())
	stop := reloadOnSIGHUP(g, slog.New(slog.DiscardHandler))
	defer stop()

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	get := func() string {
		resp, err := c.Get("http://" + g.Addr() + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return string(body) + " " + resp.Header.Get("X-Version")
	}
	if got := get(); got != "a v1" {
		t.Fatalf("before: %q", got)
	}
	write(live, mods[1])
	write(cfgPath, conf(b))
	time.Sleep(100 * time.Millisecond)
	if got := get(); got != "a v1" {
		t.Fatalf("reloaded without SIGHUP (watch is off): %q", got)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for get() != "b v2" {
		if time.Now().After(deadline) {
			t.Fatalf("after SIGHUP: %q", get())
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	tr.CloseIdleConnections()
	if err := g.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}
