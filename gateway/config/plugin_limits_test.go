package config

import (
	"strings"
	"testing"
)

func TestPluginLimits(t *testing.T) {
	base := "upstreams: [{name: u, targets: [\"127.0.0.1:1\"]}]\nroutes: [{name: r, upstream: u}]\n"
	cfg, err := Parse([]byte(base + "plugins: [{name: p, file: p.wasm}, {name: q, file: q.wasm, limits: {header_map_bytes: 8KiB, header_map_fields: 20, shared_data_bytes: 1MiB, shared_data_keys: 5, queue_items: 3, http_calls: 2}}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Plugins[0].Limits; got != DefaultPluginLimits {
		t.Fatalf("defaults %+v, want %+v", got, DefaultPluginLimits)
	}
	want := PluginLimits{HeaderMapBytes: 8 << 10, HeaderMapFields: 20, SharedDataBytes: 1 << 20, SharedDataKeys: 5, QueueItems: 3, HTTPCalls: 2}
	if got := cfg.Plugins[1].Limits; got != want {
		t.Fatalf("limits %+v, want %+v", got, want)
	}
	for _, tt := range []struct{ limits, want string }{
		{"{header_map_bytes: 10}", "limits.header_map_bytes"},
		{"{header_map_fields: -1}", "limits.header_map_fields"},
		{"{shared_data_keys: -1}", "limits.shared_data_keys"},
		{"{queue_items: -5}", "limits.queue_items"},
		{"{http_calls: -1}", "limits.http_calls"},
		{"{http_cals: 1}", "unknown field"},
	} {
		_, err := Parse([]byte(base + "plugins: [{name: p, file: p.wasm, limits: " + tt.limits + "}]\n"))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want %q", tt.limits, err, tt.want)
		}
	}
}
