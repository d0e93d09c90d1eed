package wasmhost

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/wasmgate/wasmgate/gateway/chain"
	"github.com/wasmgate/wasmgate/gateway/config"
	"github.com/wasmgate/wasmgate/internal/wasmbuild"
)

func TestSerializedMapRoundTrip(t *testing.T) {
	// The spec's example: {{"a": "1"}, {"b": "22"}}.
	want := []byte{2, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 'a', 0, '1', 0, 'b', 0, '2', '2', 0}
	h := chain.Headers{{Name: "a", Value: "1"}, {Name: "b", Value: "22"}}
	got := appendSerialized(nil, h)
	if !bytes.Equal(got, want) || serializedSize(h) != len(want) {
		t.Fatalf("serialized %v, want %v", got, want)
	}
	back, err := parseSerialized(got, 1024)
	if err != nil || len(back) != 2 || back[1].Value != "22" {
		t.Fatalf("parse: %v %v", back, err)
	}
	for _, empty := range [][]byte{nil, {0}} {
		if h, err := parseSerialized(empty, 1024); err != nil || len(h) != 0 {
			t.Fatalf("empty map %v: %v %v", empty, h, err)
		}
	}
	for _, bad := range [][]byte{{1, 0}, {5, 0, 0, 0}, {1, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 'a', 0}} {
		if _, err := parseSerialized(bad, 1024); err == nil {
			t.Fatalf("malformed %v accepted", bad)
		}
	}
	if _, err := parseSerialized(got, 1); err != errTooManyFields {
		t.Fatalf("2 pairs under a 1-field limit: %v", err)
	}
}

// run sends one request with x-test set through the "all" plugin and
// returns the request headers the upstream would see and the result.
func runAll(t *testing.T, th *testHost, test string, extra ...string) (chain.Result, chain.Headers, chain.Headers) {
	t.Helper()
	c := th.chain(t, refs("all")...)
	return exchange(t, c, reqHeaders("/p?x=1", append([]string{"x-test", test, "user-agent", "ua/1"}, extra...)...))
}

func TestHostFunctions(t *testing.T) {
	th := newHost(t, Options{}, plugin("all", guest(t, wasmbuild.C, "all.c"), func(p *config.Plugin) {
		p.Config = map[string]any{"mode": "x"}
		p.VMConfig = "vmcfg"
	}))
	t.Run("properties", func(t *testing.T) {
		_, req, _ := runAll(t, th, "props")
		want := map[string]string{"x-p-path": "/p?x=1", "x-p-method": "GET", "x-p-host": "example.test", "x-p-id": "req-1",
			"x-p-plugin": "all", "x-p-vm": "all", "x-p-route": "r1", "x-p-session": "sess-1", "x-p-upstream": "up1",
			"x-p-source": "127.0.0.1:5555", "x-p-dest": "127.0.0.1:8080", "x-p-proto": "HTTP/1.1", "x-p-ua": "ua/1",
			"x-p-time": "1", "x-p-missing": "notfound", "x-p-mine": "mine"}
		for k, v := range want {
			if got := get(req, k); got != v {
				t.Errorf("%s = %q, want %q", k, got, v)
			}
		}
	})
	t.Run("shared data CAS", func(t *testing.T) {
		for i := 1; i <= 3; i++ {
			_, req, _ := runAll(t, th, "shared")
			if got := get(req, "x-shared"); got != string(rune('0'+i)) {
				t.Fatalf("request %d: x-shared %q", i, got)
			}
		}
		lim := config.DefaultPluginLimits
		if st, _ := th.shared.set("all", "count", []byte("x"), 12345, &lim); st != statusCASMismatch {
			t.Fatalf("stale cas: status %d", st)
		}
	})
	t.Run("metrics", func(t *testing.T) {
		_, req, _ := runAll(t, th, "metric")
		if get(req, "x-metric") == "" || get(req, "x-metric") == "0" || get(req, "x-metric-dec") != "2" {
			t.Fatalf("metric headers %v", req)
		}
		if v := th.metric(t, "wasmgate_plugin_gauge", map[string]string{"plugin": "all", "name": "last_len"}); v != 42 {
			t.Fatalf("gauge %v", v)
		}
		if v := th.metric(t, "wasmgate_plugin_counter", map[string]string{"plugin": "all", "name": "requests"}); v < 2 {
			t.Fatalf("counter %v", v)
		}
		if v := th.metric(t, "wasmgate_plugin_histogram", map[string]string{"plugin": "all", "name": "sizes"}); v != 1 {
			t.Fatalf("histogram count %v", v)
		}
	})
	t.Run("misc", func(t *testing.T) {
		_, req, _ := runAll(t, th, "misc")
		want := map[string]string{"x-loglevel": "1", "x-time-ok": "1", "x-foreign": "echo:ping",
			"x-foreign-missing": "1", "x-grpc": "12", "x-tcp": "12", "x-env": "none", "x-file": "none"}
		for k, v := range want {
			if got := get(req, k); got != v {
				t.Errorf("%s = %q, want %q", k, got, v)
			}
		}
		logs := th.logs.String()
		if !strings.Contains(logs, "misc done") || !strings.Contains(logs, "stdout line from guest") || !strings.Contains(logs, "plugin=all") {
			t.Errorf("guest log lines missing:\n%s", logs)
		}
	})
	t.Run("header maps", func(t *testing.T) {
		_, req, _ := runAll(t, th, "maps", "x-replace", "old", "x-remove", "gone")
		if get(req, "x-size-match") != "1" || get(req, "x-replace") != "new" || get(req, "x-remove") != "" || get(req, ":path") != "/p?x=1" {
			t.Fatalf("maps: %v", req)
		}
	})
	t.Run("shared queue", func(t *testing.T) {
		_, req, _ := runAll(t, th, "queue")
		if get(req, "x-queue-missing") != "1" {
			t.Fatalf("queue: %v", req)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			if v, _, ok := th.shared.get("all", "dequeued"); ok && string(v) == "job-1" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("proxy_on_queue_ready never dequeued the item")
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	t.Run("configuration buffers and on_log", func(t *testing.T) {
		v, _, ok := th.shared.get("all", "cfg-1")
		if !ok || string(v) != `{"mode":"x"}` {
			t.Fatalf("plugin configuration seen by on_configure: %q", v)
		}
		if v, _, _ := th.shared.get("all", "last-log-path"); string(v) != "/p?x=1" {
			t.Fatalf("on_log read request headers: %q", v)
		}
	})
	t.Run("send_local_response with a bad status", func(t *testing.T) {
		res, req, _ := runAll(t, th, "bad-status")
		if res.Action != chain.Continue || get(req, "x-status-0") != "2" || get(req, "x-status-1000") != "2" {
			t.Fatalf("bad status: %v %v", res.Action, req)
		}
	})
	if v := th.metric(t, "wasmgate_plugin_calls_total", map[string]string{"plugin": "all", "callback": "proxy_on_request_headers"}); v < 8 {
		t.Fatalf("calls metric %v", v)
	}
	if v := th.metric(t, "wasmgate_plugin_cpu_units_total", map[string]string{"plugin": "all"}); v <= 0 {
		t.Fatalf("cpu units %v", v)
	}
	if v := th.metric(t, "wasmgate_plugin_shared_data_bytes", map[string]string{"plugin": "all"}); v <= 0 {
		t.Fatalf("shared data bytes %v", v)
	}
}

func TestRouteConfigurationOverride(t *testing.T) {
	th := newHost(t, Options{}, plugin("all", guest(t, wasmbuild.C, "all.c"), func(p *config.Plugin) {
		p.Config = map[string]any{"mode": "default"}
	}))
	if _, err := th.Build("r2", []config.PluginRef{{Name: "all", Config: map[string]any{"mode": "route"}}}); err != nil {
		t.Fatal(err)
	}
	// root ids: 1 is the default configuration, 2 the route's, in every VM.
	if v, _, _ := th.shared.get("all", "cfg-2"); string(v) != `{"mode":"route"}` {
		t.Fatalf("route root context configuration %q", v)
	}
	_, err := th.Build("r3", []config.PluginRef{{Name: "all", Config: "refuse"}})
	if err == nil || !strings.Contains(err.Error(), "proxy_on_configure returned false") || !strings.Contains(err.Error(), `"all"`) {
		t.Fatalf("refused override: %v", err)
	}
	if _, err := th.Build("r4", []config.PluginRef{{Name: "nope"}}); err == nil {
		t.Fatal("unknown plugin accepted")
	}
}

func TestLoadRefusals(t *testing.T) {
	all := guest(t, wasmbuild.C, "all.c")
	hostile := guest(t, wasmbuild.C, "hostile.c")
	dir := t.TempDir()
	write := func(name, wat string) string {
		p := dir + "/" + name + ".wat"
		if err := writeFile(p, wat); err != nil {
			t.Fatal(err)
		}
		return wasmbuild.MustBuild(t, wasmbuild.WAT, p)
	}
	noABI := write("noabi", `(module (memory (export "memory") 1) (func (export "malloc") (param i32) (result i32) i32.const 0))`)
	badImport := write("badimport", `(module (import "env" "proxy_not_a_thing" (func (param i32) (result i32)))
		(memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
		(func (export "malloc") (param i32) (result i32) i32.const 0))`)
	otherModule := write("othermod", `(module (import "evil" "f" (func))
		(memory (export "memory") 1) (func (export "proxy_abi_version_0_2_0"))
		(func (export "malloc") (param i32) (result i32) i32.const 0))`)
	cases := []struct {
		name string
		p    config.Plugin
		want string
	}{
		{"no abi marker", plugin("p", noABI), "no proxy-wasm ABI marker"},
		{"unknown import", plugin("p", badImport), "import env.proxy_not_a_thing is not provided"},
		{"other import module", plugin("p", otherModule), `module "evil" is not provided`},
		{"missing file", plugin("p", dir+"/missing.wasm"), "no such file"},
		{"configure false", plugin("p", all, func(p *config.Plugin) { p.Config = "refuse" }), "proxy_on_configure returned false"},
		{"vm_start false", plugin("p", all, func(p *config.Plugin) { p.VMConfig = "refuse" }), "proxy_on_vm_start returned false"},
		{"trap in on_vm_start", plugin("p", hostile, func(p *config.Plugin) { p.VMConfig = "trap" }), "proxy_on_vm_start: trap"},
		{"trap in on_configure", plugin("p", hostile, func(p *config.Plugin) { p.Config = "trap" }), "proxy_on_configure: trap"},
		{"loop in on_vm_start", plugin("p", hostile, func(p *config.Plugin) { p.VMConfig = "loop" }), "proxy_on_vm_start exceeded cpu_limit"},
		{"loop in on_configure", plugin("p", hostile, func(p *config.Plugin) { p.Config = "loop" }), "proxy_on_configure exceeded cpu_limit"},
		{"memory limit below module minimum", plugin("p", all, func(p *config.Plugin) { p.MemoryLimit = 64 << 10 }), "plugin \"p\""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.p.CPULimit = config.Duration(50 * time.Millisecond)
			_, err := New(t.Context(), []config.Plugin{tc.p}, Options{})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), `plugin "p"`) {
				t.Fatalf("got %v, want an error naming the plugin and containing %q", err, tc.want)
			}
		})
	}
	var out bytes.Buffer
	if err := CheckFile(&out, badImport); err == nil || !strings.Contains(out.String(), "verdict: BAD") {
		t.Fatalf("CheckFile bad: %v\n%s", err, out.String())
	}
	out.Reset()
	if err := CheckFile(&out, all); err != nil || !strings.Contains(out.String(), "abi: v0.2.1") || !strings.Contains(out.String(), "verdict: OK") ||
		!strings.Contains(out.String(), "env.proxy_http_call") || !strings.Contains(out.String(), "cpu_limit: meter") {
		t.Fatalf("CheckFile good: %v\n%s", err, out.String())
	}
}
