package wasmhost

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wasmgate/wasmgate/gateway/chain"
	"github.com/wasmgate/wasmgate/gateway/config"
	"github.com/wasmgate/wasmgate/internal/wasmbuild"
)

// fullExchange drives every phase: request headers and body, response
// headers and body, Done. It returns the first Respond, if any.
func fullExchange(t *testing.T, c chain.Chain, hdr ...string) (chain.Result, chain.Headers) {
	t.Helper()
	s, err := c.NewStream(testInfo())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Done()
	req := reqHeaders("/", hdr...)
	if res := s.RequestHeaders(&req, false); res.Action == chain.Respond {
		return res, nil
	}
	body := []byte("body")
	if res := s.RequestBody(&body, true); res.Action == chain.Respond {
		return res, nil
	}
	resp := chain.Headers{{Name: ":status", Value: "200"}}
	if res := s.ResponseHeaders(&resp, false); res.Action == chain.Respond {
		return res, resp
	}
	body = []byte("data: x\n\n")
	res := s.ResponseBody(&body, true)
	return res, resp
}

func TestHostileGuests(t *testing.T) {
	hostile := guest(t, wasmbuild.C, "hostile.c")
	cfg := func(p *config.Plugin) {
		p.PoolSize = 1
		p.CPULimit = config.Duration(300 * time.Millisecond)
		p.MemoryLimit = 8 << 20
		p.RecycleMemory = 8 << 20
	}
	th := newHost(t, Options{}, plugin("h", hostile, cfg), plugin("good", guest(t, wasmbuild.WAT, "headers.wat")))
	c := th.chain(t, refs("h")...)
	good := th.chain(t, refs("good")...)
	cases := []struct {
		mode       string
		status     int    // 0: the request goes through
		kind       string // error kind counted
		doneFailed bool   // the failure happens in Done (nothing to answer)
	}{
		{"loop:req_headers", 500, "timeout", false},
		{"loop:req_body", 500, "timeout", false},
		{"loop:resp_headers", 500, "timeout", false},
		{"loop:resp_body", 500, "timeout", false},
		{"loop:done", 0, "timeout", true},
		{"loop:log", 0, "timeout", true},
		{"trap:req_headers", 500, "trap", false},
		{"trap:resp_body", 500, "trap", false},
		{"recurse:req_headers", 500, "trap", false},
		{"membomb:req_headers", 500, "oom", false},
		{"logspam", 0, "", false},
		{"status0", 0, "", false},
		{"status1000", 0, "", false},
	}
	for _, tc := range cases {
		t.Run(tc.mode, func(t *testing.T) {
			before := th.metric(t, "wasmgate_plugin_errors_total", map[string]string{"plugin": "h", "kind": tc.kind})
			var res chain.Result
			waitFor(t, func() bool { // a VM may still be being replaced
				res, _ = fullExchange(t, c, "x-hostile", tc.mode)
				return res.Action != chain.Respond || res.Response.Status != 503
			})
			if tc.status == 0 && res.Action == chain.Respond {
				t.Fatalf("want the request through, got %+v", res.Response)
			}
			if tc.status != 0 && (res.Action != chain.Respond || res.Response.Status != tc.status || !strings.Contains(res.Response.Details, `plugin "h"`)) {
				t.Fatalf("want %d naming the plugin, got %+v %+v", tc.status, res, res.Response)
			}
			if res.Response != nil {
				t.Logf("%s: %s", tc.mode, res.Response.Details)
			}
			if tc.kind != "" {
				if after := th.metric(t, "wasmgate_plugin_errors_total", map[string]string{"plugin": "h", "kind": tc.kind}); after != before+1 {
					t.Fatalf("%s errors %v -> %v", tc.kind, before, after)
				}
			}
			// Another plugin is unaffected meanwhile.
			if r, _, resp := exchange(t, good, reqHeaders("/", "x-in", "ok")); r.Action != chain.Continue || get(resp, "x-out") != "ok" {
				t.Fatalf("other plugin: %+v %v", r, resp)
			}
		})
	}
	if !strings.Contains(th.logs.String(), "dropped by rate limit") && th.metric(t, "wasmgate_plugin_log_dropped_total", nil) == 0 {
		t.Fatal("log spam was not rate limited")
	}
	if n := strings.Count(th.logs.String(), "spam spam spam"); n > logBurst+50 {
		t.Fatalf("%d spam lines reached the log", n)
	}
}

func TestTenThousandHeaders(t *testing.T) {
	th := newHost(t, Options{}, plugin("h", guest(t, wasmbuild.C, "hostile.c")))
	res, resp := fullExchange(t, th.chain(t, refs("h")...), "x-hostile", "headers10k")
	if res.Action != chain.Continue {
		t.Fatalf("%+v", res)
	}
	if n := len(resp); n > config.DefaultPluginLimits.HeaderMapFields+1 || n < 100 {
		t.Fatalf("%d response headers", n)
	}
}

func TestRecycleMemory(t *testing.T) {
	th := newHost(t, Options{}, plugin("h", guest(t, wasmbuild.C, "hostile.c"), func(p *config.Plugin) {
		p.PoolSize = 1
		p.MemoryLimit = 32 << 20
		p.RecycleMemory = 6 << 20
	}))
	c := th.chain(t, refs("h")...)
	for i := 0; i < 40; i++ {
		var res chain.Result
		waitFor(t, func() bool {
			res, _ = fullExchange(t, c, "x-hostile", "grow")
			return res.Action != chain.Respond || res.Response.Status != 503
		})
		if res.Action != chain.Continue {
			t.Fatalf("request %d: %+v", i, res.Response)
		}
	}
	if v := th.metric(t, "wasmgate_plugin_vm_recycled_total", nil); v < 2 {
		t.Fatalf("recycled %v times", v)
	}
	if v := th.metric(t, "wasmgate_plugin_errors_total", nil); v != 0 {
		t.Fatalf("errors %v", v)
	}
	if v := th.metric(t, "wasmgate_plugin_memory_pages", nil); v > 6<<20/65536+32 {
		t.Fatalf("memory pages %v", v)
	}
}

func TestCrashLoopBacksOff(t *testing.T) {
	// on_tick spins forever from the first tick: every VM dies, and the
	// replacements slow down instead of burning the CPU.
	th := newHost(t, Options{}, plugin("h", guest(t, wasmbuild.C, "hostile.c"), func(p *config.Plugin) {
		p.PoolSize = 1
		p.Config = "tick"
		p.CPULimit = config.Duration(10 * time.Millisecond)
	}))
	time.Sleep(1500 * time.Millisecond)
	n := th.metric(t, "wasmgate_plugin_timeouts_total", nil)
	if n < 3 || n > 25 {
		t.Fatalf("%v timeouts in 1.5s: want a few, backing off", n)
	}
}

func TestCPULimitMechanisms(t *testing.T) {
	hostile := guest(t, wasmbuild.C, "hostile.c")
	for _, tc := range []struct {
		name    string
		opts    Options
		metered bool
	}{{"metered", Options{}, true}, {"watchdog", Options{noMeter: true}, false}} {
		t.Run(tc.name, func(t *testing.T) {
			th := newHost(t, tc.opts, plugin("h", hostile, func(p *config.Plugin) {
				p.PoolSize = 1
				p.CPULimit = config.Duration(50 * time.Millisecond)
			}))
			if v := th.slots["h"].cur.Load(); v.metered != tc.metered {
				t.Fatalf("metered = %v", v.metered)
			}
			if got := th.Status()[0].CPULimit; got != map[bool]string{true: "meter", false: "watchdog"}[tc.metered] {
				t.Fatalf("status cpu_limit_mechanism %q", got)
			}
			start := time.Now()
			res, _ := fullExchange(t, th.chain(t, refs("h")...), "x-hostile", "loop:req_headers")
			if res.Action != chain.Respond || !strings.Contains(res.Response.Details, "exceeded cpu_limit") {
				t.Fatalf("%+v", res.Response)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("runaway guest stopped after %v", d)
			}
		})
	}
}

func TestTrapInAllocatorPoisonsTheVM(t *testing.T) {
	src := filepath.Join(t.TempDir(), "badalloc.wat")
	if err := writeFile(src, `(module
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) ":path")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) unreachable)
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $get (i32.const 0) (i32.const 16) (i32.const 5) (i32.const 64) (i32.const 68)))
    (i32.const 0)))`); err != nil {
		t.Fatal(err)
	}
	th := newHost(t, Options{}, plugin("p", wasmbuild.MustBuild(t, wasmbuild.WAT, src), func(p *config.Plugin) { p.PoolSize = 1 }))
	res, _, _ := exchange(t, th.chain(t, refs("p")...), reqHeaders("/"))
	if res.Action != chain.Respond || res.Response.Status != 500 {
		t.Fatalf("%+v", res)
	}
	if v := th.metric(t, "wasmgate_plugin_traps_total", nil); v != 1 {
		t.Fatalf("traps %v", v)
	}
	waitFor(t, func() bool {
		return th.Status()[0].VMs == 1 && th.metric(t, "wasmgate_plugin_vm_replacements_total", nil) == 1
	})
}
