package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseExampleAndDefault(t *testing.T) {
	for _, name := range []string{"../../examples/gateway.yaml", "default.yaml"} {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := Parse(data)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if cfg.Listen != "127.0.0.1:8080" || len(cfg.Routes) != 1 || cfg.Routes[0].Session.Header != "Mcp-Session-Id" {
			t.Fatalf("%s: unexpected %+v", name, cfg)
		}
		u := cfg.Upstreams[0]
		if u.ConnWaitTimeout.D() != 250*time.Millisecond || u.MaxConnsPerTarget != 256 {
			t.Fatalf("%s: upstream %+v", name, u)
		}
		if cfg.Limits.MaxHeaderBytes != 16<<10 || cfg.Limits.MaxBodyBytes != 8<<20 {
			t.Fatalf("%s: limits %+v", name, cfg.Limits)
		}
		if !cfg.Storage.Sync || cfg.Storage.BatchSize != 50 || cfg.Storage.EventPool != 4096 {
			t.Fatalf("%s: storage defaults lost: %+v", name, cfg.Storage)
		}
	}
}

func TestParseErrors(t *testing.T) {
	base := "upstreams: [{name: u, targets: [\"127.0.0.1:1\"]}]\nroutes: [{name: r, upstream: u}]\n"
	tests := []struct {
		name, doc, want string
	}{
		{"unknown key with line", base + "limits:\n  max_header_bytez: 1KiB\n", "[4:3] unknown field"},
		{"bad size", base + "limits: {max_body_bytes: 12XB}\n", "invalid size"},
		{"bad duration", base + "sessions: {idle_timeout: soon}\n", "invalid duration"},
		{"unknown upstream", "upstreams: [{name: u, targets: [\"127.0.0.1:1\"]}]\nroutes: [{name: r, upstream: v}]\n", `unknown upstream "v"`},
		{"unknown plugin", base + "plugins: []\n" + "x: 1\n", "unknown field"},
		{"route plugin missing", "upstreams: [{name: u, targets: [\"127.0.0.1:1\"]}]\nroutes: [{name: r, upstream: u, plugins: [nope]}]\n", `unknown plugin "nope"`},
		{"bad policy", base + "plugins: [{name: p, file: p.wasm, failure_policy: maybe}]\n", "failure_policy"},
		{"bad cpu fallback", base + "plugins: [{name: p, file: p.wasm, cpu_fallback: none}]\n", "cpu_fallback"},
		{"bad target", "upstreams: [{name: u, targets: [\"nohost\"]}]\nroutes: [{name: r, upstream: u}]\n", "want host:port"},
		{"two session keys", "upstreams: [{name: u, targets: [\"127.0.0.1:1\"]}]\nroutes: [{name: r, upstream: u, session: {header: a, cookie: b}}]\n", "only one"},
		{"unset env", base + "admin: {token: \"${WASMGATE_TEST_SURELY_UNSET}\"}\n", "WASMGATE_TEST_SURELY_UNSET is not set"},
		{"duplicate key", base + "listen: 127.0.0.1:1\nlisten: 127.0.0.1:2\n", "already defined"},
		{"zero sync depth", base + "storage: {sync_depth: 0}\n", "storage.sync_depth"},
		{"exchange window over 1s", base + "storage: {exchange_window: 2s}\n", "storage.exchange_window"},
		{"negative event pool", base + "storage: {event_pool: -1}\n", "storage.event_pool"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
		})
	}
}

func TestEnvAndPluginRefs(t *testing.T) {
	t.Setenv("WG_TOKEN", "s3cret")
	doc := `
admin: {token: "${WG_TOKEN}", listen: "${WG_ADMIN:-127.0.0.1:9999}"}
upstreams: [{name: u, targets: ["127.0.0.1:1"]}]
plugins:
  - {name: p, file: p.wasm, config: {header: x-a, value: "1"}, memory_limit: 32MiB}
routes:
  - name: r
    upstream: u
    plugins: [p, {name: p, config: {header: x-b}}]
`
	dir := t.TempDir()
	path := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Admin.Token != "s3cret" || cfg.Admin.Listen != "127.0.0.1:9999" {
		t.Fatalf("admin %+v", cfg.Admin)
	}
	p := cfg.Plugins[0]
	if p.File != filepath.Join(dir, "p.wasm") || p.MemoryLimit != 32<<20 || p.RecycleMemory != 16<<20 || p.FailurePolicy != FailClosed {
		t.Fatalf("plugin %+v", p)
	}
	js, _ := p.ConfigJSON()
	if string(js) != `{"header":"x-a","value":"1"}` {
		t.Fatalf("config json %s", js)
	}
	refs := cfg.Routes[0].Plugins
	if len(refs) != 2 || refs[0].Name != "p" || refs[0].Config != nil || refs[1].Name != "p" {
		t.Fatalf("refs %+v", refs)
	}
	js, _ = refs[1].ConfigJSON()
	if string(js) != `{"header":"x-b"}` {
		t.Fatalf("override json %s", js)
	}
}

func TestSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{{"512", 512}, {"16KiB", 16 << 10}, {"8MiB", 8 << 20}, {"1GiB", 1 << 30}, {"2MB", 2000000}, {"4k", 4096}, {"10B", 10}, {"1.5KiB", 1536}}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "-1", "KiB", "12XB", "1e30GiB"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) succeeded", bad)
		}
	}
}
