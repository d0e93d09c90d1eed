package wasmhost

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmgate/wasmgate/gateway/chain"
	"github.com/wasmgate/wasmgate/gateway/config"
	"github.com/wasmgate/wasmgate/internal/wasmbuild"
)

// versionWAT is a guest that adds response header x-version: <v>.
func versionWAT(v string) string {
	return `(module
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "x-version")
  (data (i32.const 32) "` + v + `")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (drop (call $add (i32.const 2) (i32.const 16) (i32.const 9) (i32.const 32) (i32.const ` + string(rune('0'+len(v))) + `)))
    (i32.const 0)))`
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	tmp := dst + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
}

func TestReloadSwapsVersionsUnderLoad(t *testing.T) {
	dir := t.TempDir()
	var files [2]string
	for i, v := range []string{"v1", "v2"} {
		src := filepath.Join(dir, v+".wat")
		if err := os.WriteFile(src, []byte(versionWAT(v)), 0o644); err != nil {
			t.Fatal(err)
		}
		files[i] = wasmbuild.MustBuild(t, wasmbuild.WAT, src)
	}
	live := filepath.Join(dir, "plugin.wasm")
	copyFile(t, files[0], live)
	th := newHost(t, Options{}, plugin("p", live, func(p *config.Plugin) { p.PoolSize = 2 }))
	c := th.chain(t, refs("p")...)

	// A stream that started on v1 finishes on v1 even after the swap.
	held, _ := c.NewStream(testInfo())
	hreq := reqHeaders("/")
	held.RequestHeaders(&hreq, true)

	var stop atomic.Bool
	var wg sync.WaitGroup
	var failures, seen atomic.Int64
	versions := sync.Map{}
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				res, _, resp := exchange(t, c, reqHeaders("/"))
				v := resp
				got := []string{}
				for _, f := range v {
					if f.Name == "x-version" {
						got = append(got, f.Value)
					}
				}
				if res.Action != chain.Continue || len(got) != 1 {
					failures.Add(1)
					continue
				}
				versions.Store(got[0], true)
				seen.Add(1)
			}
		}()
	}
	for i := 0; i < 10; i++ {
		copyFile(t, files[(i+1)%2], live)
		if err := th.Reload(t.Context(), "p"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A corrupt file and a module with a missing import are refused; the
	// current version keeps serving.
	if err := os.WriteFile(live, []byte("\x00asm garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := th.Reload(t.Context(), "p"); err == nil {
		t.Fatal("corrupt module accepted")
	}
	time.Sleep(20 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	if failures.Load() != 0 || seen.Load() < 50 {
		t.Fatalf("%d failed requests, %d served", failures.Load(), seen.Load())
	}
	for _, v := range []string{"v1", "v2"} {
		if _, ok := versions.Load(v); !ok {
			t.Fatalf("never served %s", v)
		}
	}
	// Last good version: v1 (10 reloads alternate v2, v1, ...).
	_, _, resp := exchange(t, c, reqHeaders("/"))
	if get(resp, "x-version") != "v1" {
		t.Fatalf("after reloads: %v", resp)
	}
	resp = chain.Headers{{Name: ":status", Value: "200"}}
	held.ResponseHeaders(&resp, true)
	held.Done()
	if get(resp, "x-version") != "v1" {
		t.Fatalf("held stream: %v", resp)
	}
	st := th.Status()[0]
	if st.Version != 11 || !strings.Contains(st.LastError, "compile") || st.VMs != 2 {
		t.Fatalf("status %+v", st)
	}
	// Old versions drained and closed: only the current pool remains.
	waitFor(t, func() bool { return len(th.slots["p"].versions()) == 1 })
	if v := th.metric(t, "wasmgate_plugin_reloads_total", map[string]string{"result": "ok"}); v != 10 {
		t.Fatalf("reloads ok %v", v)
	}
}
