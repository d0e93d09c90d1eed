package wasmhost

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/wasmgate/wasmgate/gateway/chain"
	"github.com/wasmgate/wasmgate/gateway/config"
	"github.com/wasmgate/wasmgate/internal/wasmbuild"
)

// TestPluginLimits: each plugins[].limits key refuses what passes it with
// the host function's error status (the request goes on), counts the
// refusal in wasmgate_plugin_limit_refusals_total{limit} and logs the key.
func TestPluginLimits(t *testing.T) {
	refused := func(t *testing.T, th *testHost, plugin, limit string) {
		t.Helper()
		if v := th.metric(t, "wasmgate_plugin_limit_refusals_total", map[string]string{"plugin": plugin, "limit": limit}); v < 1 {
			t.Errorf("wasmgate_plugin_limit_refusals_total{limit=%q} = %v", limit, v)
		}
		if !strings.Contains(th.logs.String(), "limit=limits."+limit) {
			t.Errorf("no log line names limits.%s:\n%s", limit, th.logs.String())
		}
	}
	withLimits := func(l config.PluginLimits) func(*config.Plugin) {
		return func(p *config.Plugin) {
			p.Limits = l
			p.Config = map[string]any{"mode": "x"}
		}
	}

	t.Run("header map", func(t *testing.T) {
		for _, tc := range []struct {
			limit string
			l     config.PluginLimits
			check func(resp chain.Headers) bool
		}{
			{limitHeaderMapFields, config.PluginLimits{HeaderMapFields: 50}, func(h chain.Headers) bool { return len(h) <= 50 }},
			{limitHeaderMapBytes, config.PluginLimits{HeaderMapBytes: 4 << 10}, func(h chain.Headers) bool { return serializedSize(h) <= 4<<10 }},
		} {
			t.Run(tc.limit, func(t *testing.T) {
				th := newHost(t, Options{}, plugin("h", guest(t, wasmbuild.C, "hostile.c"), withLimits(tc.l)))
				res, resp := fullExchange(t, th.chain(t, refs("h")...), "x-hostile", "headers10k")
				if res.Action != chain.Continue || !tc.check(resp) || len(resp) < 10 {
					t.Fatalf("%v: %d response headers (%d bytes)", res.Action, len(resp), serializedSize(resp))
				}
				refused(t, th, "h", tc.limit)
			})
		}
	})

	t.Run("shared data", func(t *testing.T) {
		// on_configure stores "cfg-1" = {"mode":"x"} (1 key, 17 bytes);
		// x-test: shared then tries to add "count" = "1" (6 bytes).
		for _, tc := range []struct {
			limit string
			l     config.PluginLimits
		}{
			{limitSharedDataKeys, config.PluginLimits{SharedDataKeys: 1}},
			{limitSharedDataBytes, config.PluginLimits{SharedDataBytes: 20}},
		} {
			t.Run(tc.limit, func(t *testing.T) {
				th := newHost(t, Options{}, plugin("all", guest(t, wasmbuild.C, "all.c"), withLimits(tc.l)))
				res, req, _ := runAll(t, th, "shared")
				if res.Action != chain.Continue || get(req, "x-shared") != "" {
					t.Fatalf("%v: x-shared %q, want the set refused", res.Action, get(req, "x-shared"))
				}
				if _, _, ok := th.shared.get("all", "count"); ok {
					t.Fatal("count stored past the limit")
				}
				refused(t, th, "all", tc.limit)
			})
		}
	})

	t.Run(limitQueueItems, func(t *testing.T) {
		th := newHost(t, Options{}, plugin("all", guest(t, wasmbuild.C, "all.c"), withLimits(config.PluginLimits{QueueItems: 2})))
		id, ok := th.shared.resolve("all", "jobs") // registered by on_configure
		if !ok {
			t.Fatal("queue jobs not registered")
		}
		v := th.slots["all"].cur.Load()
		v.mu.Lock()
		vms := append([]*vm(nil), v.vms...)
		v.mu.Unlock()
		for _, m := range vms { // hold every VM so proxy_on_queue_ready cannot drain
			if !m.tryLock(time.Now().Add(5 * time.Second)) {
				t.Fatal("VM busy")
			}
		}
		var got []uint32
		for range 3 {
			got = append(got, hEnqueue(vms[0], []uint64{uint64(id), 0, 5}))
		}
		for _, m := range vms {
			m.lock.unlock()
		}
		if got[0] != statusOK || got[1] != statusOK || got[2] != statusInternalFailure {
			t.Fatalf("enqueue statuses %v, want ok, ok, internal failure", got)
		}
		refused(t, th, "all", limitQueueItems)
	})

	t.Run(limitHTTPCalls, func(t *testing.T) {
		caller := &heldCaller{entered: make(chan struct{}, 4), release: make(chan struct{})}
		th := newHost(t, Options{HTTP: caller}, plugin("all", guest(t, wasmbuild.C, "all.c"), withLimits(config.PluginLimits{HTTPCalls: 1}), func(p *config.Plugin) {
			p.PoolSize = 1
		}))
		c := th.chain(t, refs("all")...)
		first := make(chan chain.Result, 1)
		s, err := c.NewStream(testInfo())
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			h := reqHeaders("/p", "x-test", "httpcall")
			first <- s.RequestHeaders(&h, true)
		}()
		select {
		case <-caller.entered:
		case <-time.After(5 * time.Second):
			t.Fatal("the first http_call never reached the caller")
		}
		_, req, _ := runAll(t, th, "httpcall") // same VM: its one call slot is taken
		close(caller.release)
		if res := <-first; res.Action != chain.Continue {
			t.Fatalf("first request: %+v", res)
		}
		s.Done()
		if got := get(req, "x-call-ret"); got != "10" {
			t.Fatalf("second http_call: x-call-ret %q, want 10 (INTERNAL_FAILURE)", got)
		}
		refused(t, th, "all", limitHTTPCalls)
	})
}

// heldCaller answers proxy_http_call once released.
type heldCaller struct {
	entered chan struct{}
	release chan struct{}
}

func (c *heldCaller) Call(ctx context.Context, _ string, _ chain.Headers, _ []byte, _ time.Duration) (int, chain.Headers, []byte, error) {
	c.entered <- struct{}{}
	select {
	case <-c.release:
	case <-ctx.Done():
	}
	return 200, chain.Headers{{Name: "content-type", Value: "text/plain"}}, []byte("ok"), nil
}
