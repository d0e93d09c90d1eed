package wasmhost

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmgate/wasmgate/gateway/chain"
	"github.com/wasmgate/wasmgate/gateway/config"
	"github.com/wasmgate/wasmgate/internal/wasmbuild"
)

func TestRequestBodyBuffering(t *testing.T) {
	th := newHost(t, Options{}, plugin("all", guest(t, wasmbuild.C, "all.c")),
		plugin("wat", guest(t, wasmbuild.WAT, "headers.wat")))
	for _, chainRefs := range [][]config.PluginRef{refs("all"), refs("wat", "all")} {
		c := th.chain(t, chainRefs...)
		s, _ := c.NewStream(testInfo())
		h := reqHeaders("/upload")
		if res := s.RequestHeaders(&h, false); res.Action != chain.Continue {
			t.Fatalf("headers: %v", res.Action)
		}
		// The plugin pauses on the first chunk: the proxy buffers.
		body := []byte("abc")
		if res := s.RequestBody(&body, false); res.Action != chain.Buffer {
			t.Fatalf("first chunk: %v", res.Action)
		}
		// The proxy passes everything buffered with the last chunk.
		body = []byte("abcdef")
		if res := s.RequestBody(&body, true); res.Action != chain.Continue {
			t.Fatalf("last chunk: %v", res.Action)
		}
		if string(body) != "ABCDEF!" {
			t.Fatalf("body %q", body)
		}
		s.Done()
	}
}

func TestSSEOneEventPerCall(t *testing.T) {
	th := newHost(t, Options{}, plugin("all", guest(t, wasmbuild.C, "all.c")))
	c := th.chain(t, refs("all")...)
	s, _ := c.NewStream(testInfo())
	defer s.Done()
	h := reqHeaders("/sse")
	s.RequestHeaders(&h, true)
	resp := chain.Headers{{Name: ":status", Value: "200"}, {Name: "content-type", Value: "text/event-stream"}}
	s.ResponseHeaders(&resp, false)
	events := []struct{ in, out string }{
		{"id: 1\ndata: hello\n\n", "id: 1\ndata: hello\n\n"},
		{"data: please drop me\n\n", ""},
		{"event: x\ndata: secret stuff\n\n", "data: [redacted]\n\n"},
		{": comment\n\n", ": comment\n\n"},
	}
	for _, e := range events {
		b := []byte(e.in)
		if res := s.ResponseBody(&b, false); res.Action != chain.Continue {
			t.Fatalf("%q: %v", e.in, res.Action)
		}
		if string(b) != e.out {
			t.Fatalf("event %q became %q, want %q", e.in, b, e.out)
		}
	}
	var empty []byte
	if res := s.ResponseBody(&empty, true); res.Action != chain.Continue {
		t.Fatalf("end: %v", res.Action)
	}
}

func TestPauseResumedByTick(t *testing.T) {
	th := newHost(t, Options{}, plugin("all", guest(t, wasmbuild.C, "all.c"), func(p *config.Plugin) {
		p.Config = "tick"
	}))
	c := th.chain(t, refs("all")...)
	res, req, _ := exchange(t, c, reqHeaders("/", "x-test", "pause-tick"))
	if res.Action != chain.Continue || get(req, "x-resumed-by") != "tick" {
		t.Fatalf("%v %v", res.Action, req)
	}
	if v := th.metric(t, "wasmgate_plugin_calls_total", map[string]string{"plugin": "all", "callback": "proxy_on_tick"}); v < 1 {
		t.Fatalf("ticks %v", v)
	}
}

func TestPauseTimeoutAndClose(t *testing.T) {
	all := guest(t, wasmbuild.C, "all.c")
	short := func(p *config.Plugin) { p.PauseTimeout = config.Duration(50 * time.Millisecond) }
	open := func(p *config.Plugin) { p.FailurePolicy = config.FailOpen }
	th := newHost(t, Options{}, plugin("closed", all, short), plugin("open", all, short, open))
	res, _, _ := exchange(t, th.chain(t, refs("closed")...), reqHeaders("/", "x-test", "pause-forever"))
	if res.Action != chain.Respond || res.Response.Status != 504 || !strings.Contains(res.Response.Details, `"closed"`) {
		t.Fatalf("fail_closed pause timeout: %+v", res.Response)
	}
	res, _, resp := exchange(t, th.chain(t, refs("open")...), reqHeaders("/", "x-test", "pause-forever", "x-in", "v"))
	if res.Action != chain.Continue || get(resp, "x-out") != "" {
		t.Fatalf("fail_open pause timeout: %v %v", res.Action, resp)
	}
	res, _, _ = exchange(t, th.chain(t, refs("closed")...), reqHeaders("/", "x-test", "close"))
	if res.Action != chain.Respond || res.Response.Status != 502 {
		t.Fatalf("close_stream: %+v", res)
	}
}

func TestHTTPCallWithoutCaller(t *testing.T) {
	// No Options.HTTP: proxy_http_call fails and the guest continues.
	th := newHost(t, Options{}, plugin("all", guest(t, wasmbuild.C, "all.c")))
	res, req, _ := exchange(t, th.chain(t, refs("all")...), reqHeaders("/", "x-test", "httpcall"))
	if res.Action != chain.Continue || get(req, "x-call-status") != "" {
		t.Fatalf("%v %v", res.Action, req)
	}
}

func TestFailurePolicyOnTrap(t *testing.T) {
	all := guest(t, wasmbuild.C, "all.c")
	th := newHost(t, Options{},
		plugin("closed", all, func(p *config.Plugin) { p.PoolSize = 1 }),
		plugin("open", all, func(p *config.Plugin) { p.PoolSize = 1; p.FailurePolicy = config.FailOpen }))
	res, _, _ := exchange(t, th.chain(t, refs("closed")...), reqHeaders("/", "x-test", "trap"))
	if res.Action != chain.Respond || res.Response.Status != 500 || res.Plugin != "closed" ||
		!strings.Contains(res.Response.Details, `plugin "closed" failed`) || !strings.Contains(res.Response.Details, "trap") {
		t.Fatalf("fail_closed trap: %+v %+v", res, res.Response)
	}
	res, _, _ = exchange(t, th.chain(t, refs("open")...), reqHeaders("/", "x-test", "trap"))
	if res.Action != chain.Continue {
		t.Fatalf("fail_open trap: %+v", res)
	}
	// The poisoned VMs are replaced: the next requests are served normally.
	for _, name := range []string{"closed", "open"} {
		waitFor(t, func() bool {
			res, _, resp := exchange(t, th.chain(t, refs(name)...), reqHeaders("/", "x-in", "back"))
			return res.Action == chain.Continue && get(resp, "x-out") == "back"
		})
	}
	if v := th.metric(t, "wasmgate_plugin_traps_total", nil); v != 2 {
		t.Fatalf("traps %v", v)
	}
	if v := th.metric(t, "wasmgate_plugin_vm_replacements_total", nil); v != 2 {
		t.Fatalf("replacements %v", v)
	}
	if st := th.Status(); st[0].Failures != 1 || st[0].VMs != 1 {
		t.Fatalf("status %+v", st)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRequestKeepsItsVMAcrossPhases(t *testing.T) {
	// Many concurrent streams on a 2-VM pool: each stream's x-in must come
	// back on its own response, so contexts never mix between VMs.
	th := newHost(t, Options{}, plugin("all", guest(t, wasmbuild.C, "all.c")))
	c := th.chain(t, refs("all")...)
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for j := 0; j < 20; j++ {
				v := strings.Repeat("v", i+1) + string(rune('a'+j))
				s, _ := c.NewStream(testInfo())
				h := reqHeaders("/", "x-in", v)
				s.RequestHeaders(&h, true)
				time.Sleep(time.Duration(j%3) * time.Millisecond)
				resp := chain.Headers{{Name: ":status", Value: "200"}}
				res := s.ResponseHeaders(&resp, true)
				s.Done()
				if res.Action != chain.Continue || get(resp, "x-out") != v {
					errs <- v + " got " + get(resp, "x-out")
					return
				}
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func TestCapacity(t *testing.T) {
	hostile := guest(t, wasmbuild.C, "hostile.c")
	mk := func(name, policy string) config.Plugin {
		return plugin(name, hostile, func(p *config.Plugin) {
			p.PoolSize = 1
			p.FailurePolicy = policy
			p.QueueTimeout = config.Duration(20 * time.Millisecond)
			p.CPULimit = config.Duration(300 * time.Millisecond)
		})
	}
	th := newHost(t, Options{}, mk("closed", config.FailClosed), mk("open", config.FailOpen))
	for _, tc := range []struct {
		name string
		want chain.Action
	}{{"closed", chain.Respond}, {"open", chain.Continue}} {
		c := th.chain(t, refs(tc.name)...)
		// One stream spins in its only VM until cpu_limit...
		done := make(chan chain.Result)
		go func() {
			r, _, _ := exchange(t, c, reqHeaders("/", "x-hostile", "loop:req_headers"))
			done <- r
		}()
		time.Sleep(50 * time.Millisecond)
		// ...so another one cannot get a call slot within queue_timeout.
		res, _, _ := exchange(t, c, reqHeaders("/"))
		if res.Action != tc.want || (tc.want == chain.Respond && res.Response.Status != 503) {
			t.Fatalf("%s: %+v", tc.name, res)
		}
		<-done
	}
	if v := th.metric(t, "wasmgate_plugin_errors_total", map[string]string{"kind": "capacity"}); v < 2 {
		t.Fatalf("capacity errors %v", v)
	}
}

func TestPausedStreamFailsWhenItsVMDies(t *testing.T) {
	th := newHost(t, Options{}, plugin("all", guest(t, wasmbuild.C, "all.c"), func(p *config.Plugin) {
		p.PoolSize = 1
		p.PauseTimeout = config.Duration(10 * time.Second)
	}))
	c := th.chain(t, refs("all")...)
	done := make(chan chain.Result)
	go func() {
		r, _, _ := exchange(t, c, reqHeaders("/", "x-test", "pause-forever"))
		done <- r
	}()
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	exchange(t, c, reqHeaders("/", "x-test", "trap"))
	r := <-done
	if r.Action != chain.Respond || r.Response.Status != 500 || time.Since(start) > 2*time.Second {
		t.Fatalf("paused stream: %+v after %v", r.Response, time.Since(start))
	}
}

func TestDeferredDone(t *testing.T) {
	th := newHost(t, Options{}, plugin("all", guest(t, wasmbuild.C, "all.c"), func(p *config.Plugin) {
		p.PoolSize = 1
		p.Config = "tick"
	}))
	exchange(t, th.chain(t, refs("all")...), reqHeaders("/deferred", "x-test", "defer-done"))
	// on_done returned false: on_log runs only after the tick's proxy_done.
	waitFor(t, func() bool {
		d, _, _ := th.shared.get("all", "deferred-done")
		p, _, _ := th.shared.get("all", "last-log-path")
		return string(d) == "1" && string(p) == "/deferred"
	})
	v := th.slots["all"].cur.Load()
	v.mu.Lock()
	m := v.vms[0]
	v.mu.Unlock()
	if !m.tryLock(time.Now().Add(time.Second)) {
		t.Fatal("VM busy")
	}
	n := len(m.streams)
	m.unlock()
	if n != 0 {
		t.Fatalf("%d contexts left", n)
	}
}

// TestGoGuestUnderConcurrency: 64 goroutines share a 2-VM pool of the Go
// example (whose SDK runs the guest's GC every so often) with the default
// cpu_limit. Honest calls must never be stopped: cpu_limit counts guest
// work, not time spent waiting for a CPU on a loaded machine.
func TestGoGuestUnderConcurrency(t *testing.T) {
	file := wasmbuild.MustBuild(t, wasmbuild.Go, wasmbuild.Path("examples/go"))
	th := newHost(t, Options{}, plugin("p", file, func(p *config.Plugin) {
		p.Config = map[string]any{"header": "x-out", "value": "v", "api_key": "k"}
		p.QueueTimeout = config.Duration(5 * time.Second)
		p.CPULimit = config.Duration(100 * time.Millisecond)
	}))
	c := th.chain(t, refs("p")...)
	var n atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n.Add(1) <= 10000 {
				if res, _ := fullExchange(t, c, "x-api-key", "k"); res.Action != chain.Continue {
					t.Errorf("%s", res.Response.Details)
					return
				}
			}
		}()
	}
	wg.Wait()
	if v := th.metric(t, "wasmgate_plugin_errors_total", nil); v != 0 {
		t.Fatalf("%v plugin errors", v)
	}
}

func TestGlobalCallCap(t *testing.T) {
	hostile := guest(t, wasmbuild.C, "hostile.c")
	th := newHost(t, Options{MaxCallsInFlight: 1},
		plugin("spinner", hostile, func(p *config.Plugin) { p.CPULimit = config.Duration(300 * time.Millisecond) }),
		plugin("other", guest(t, wasmbuild.WAT, "headers.wat"), func(p *config.Plugin) {
			p.QueueTimeout = config.Duration(20 * time.Millisecond)
		}))
	done := make(chan struct{})
	go func() {
		defer close(done)
		exchange(t, th.chain(t, refs("spinner")...), reqHeaders("/", "x-hostile", "loop:req_headers"))
	}()
	waitFor(t, func() bool { return th.metric(t, "wasmgate_wasm_calls_in_flight", nil) == 1 })
	// The only call slot is taken by the spinning guest: another plugin's
	// call waits queue_timeout, then gets 503.
	res, _, _ := exchange(t, th.chain(t, refs("other")...), reqHeaders("/"))
	if res.Action != chain.Respond || res.Response.Status != 503 || !strings.Contains(res.Response.Details, "max_calls_in_flight") {
		t.Fatalf("%+v %+v", res, res.Response)
	}
	<-done
	if res, _, _ := exchange(t, th.chain(t, refs("other")...), reqHeaders("/")); res.Action != chain.Continue {
		t.Fatalf("after the slot freed: %+v", res.Response)
	}
}
