// Package examples holds the end-to-end test and benchmarks of the example
// interceptor written in five languages (wat, c, go, rust, assemblyscript).
package examples

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wasmgate/wasmgate/examples/upstream/demo"
	"github.com/wasmgate/wasmgate/gateway"
	"github.com/wasmgate/wasmgate/gateway/config"
	"github.com/wasmgate/wasmgate/gateway/event"
	"github.com/wasmgate/wasmgate/gateway/sse"
	"github.com/wasmgate/wasmgate/internal/wasmbuild"
)

// gatewayConfig routes each language by Host header to the demo upstream
// through its own build of the example, all with the same configuration.
func gatewayConfig(t testing.TB, upstream string) string {
	t.Helper()
	var routes, plugins strings.Builder
	for _, l := range languages {
		wasm := wasmbuild.MustBuild(t, l.lang, l.src)
		fmt.Fprintf(&routes, "  - {name: %s, match: {host: %s.example, path_prefix: /}, upstream: demo, plugins: [%s]}\n", l.lang, l.lang, l.lang)
		fmt.Fprintf(&plugins, "  - {name: %s, file: %q, pool_size: 1, config: %s}\n", l.lang, wasm, testConfig)
	}
	return fmt.Sprintf(`
listen: 127.0.0.1:0
admin: {listen: 127.0.0.1:0}
storage: {path: %q}
sse: {heartbeat: 0s}
upstreams:
  - {name: demo, targets: [%q]}
routes:
%splugins:
%s`, t.TempDir(), upstream, routes.String(), plugins.String())
}

func startGateway(t testing.TB) (base string, upstream string) {
	up, err := demo.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { up.Close() })
	yaml := gatewayConfig(t, up.Addr())
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
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := g.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	})
	return "http://" + g.Addr(), "http://" + up.Addr()
}

type reply struct {
	status int
	header http.Header
	body   string
}

func fetch(t testing.TB, client *http.Client, url, host, key string) reply {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	if key != "" {
		req.Header.Set("X-Api-Key", key)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s (host %s): %v", url, host, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s (host %s): read body: %v", url, host, err)
	}
	return reply{resp.StatusCode, resp.Header, string(b)}
}

// wantMixed is what a client must receive from /sse/mixed through the
// example: shout data upper-cased, drop events gone, the rest as sent.
func wantMixed() string {
	var b []byte
	for _, e := range demo.Mixed {
		switch e.Name {
		case "drop":
			continue
		case "shout":
			e.Data = strings.ToUpper(e.Data)
		}
		b = e.AppendWire(b)
	}
	return string(b)
}

// TestExamplesThroughGateway runs each language's example through the real
// gateway (wasmhost plugin host) against the demo upstream and checks the
// same three behaviours, byte for byte, for all five. A language whose
// toolchain is missing fails here: wasmbuild never skips.
func TestExamplesThroughGateway(t *testing.T) {
	base, upstream := startGateway(t)
	client := &http.Client{Timeout: 20 * time.Second}
	defer client.CloseIdleConnections()

	direct := fetch(t, client, upstream+"/json", "demo", "")
	if direct.status != 200 {
		t.Fatalf("demo upstream /json: %d", direct.status)
	}
	mixed := wantMixed()
	if !strings.Contains(mixed, "MAKE ME LOUD") || strings.Contains(mixed, "drop me") {
		t.Fatalf("expected stream is wrong: %q", mixed)
	}

	results := map[wasmbuild.Lang][]reply{}
	for _, l := range languages {
		t.Run(string(l.lang), func(t *testing.T) {
			host := string(l.lang) + ".example"
			var got []reply

			// (b) missing and wrong keys: 401 with a JSON body.
			for _, key := range []string{"", "wrong"} {
				r := fetch(t, client, base+"/json", host, key)
				if r.status != 401 || r.header.Get("Content-Type") != "application/json" ||
					r.body != `{"error":"invalid or missing x-api-key"}` {
					t.Errorf("key %q: got %d %q %q, want 401 application/json error", key, r.status, r.header.Get("Content-Type"), r.body)
				}
				if v := r.header.Get("X-Example"); v != "wasmgate" {
					t.Errorf("key %q: 401 lacks x-example (%q)", key, v)
				}
				got = append(got, r)
			}

			// (a) the right key: the upstream's answer plus the header.
			r := fetch(t, client, base+"/json", host, "s3cret")
			if r.status != 200 || r.body != direct.body {
				t.Errorf("/json: got %d %q, want 200 %q", r.status, r.body, direct.body)
			}
			if v := r.header.Values("X-Example"); len(v) != 1 || v[0] != "wasmgate" {
				t.Errorf("/json: x-example = %q, want [wasmgate]", v)
			}
			got = append(got, r)

			// (c) the SSE stream, one event per plugin call.
			r = fetch(t, client, base+"/sse/mixed", host, "s3cret")
			if r.status != 200 || r.header.Get("X-Example") != "wasmgate" {
				t.Errorf("/sse/mixed: %d, x-example %q", r.status, r.header.Get("X-Example"))
			}
			if r.body != mixed {
				t.Errorf("/sse/mixed body:\n got %q\nwant %q", r.body, mixed)
			}
			// and the stream still parses event by event
			p := sse.NewParser(bytes.NewReader([]byte(r.body)), 1<<16)
			for {
				ev, err := p.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Errorf("/sse/mixed: unparseable stream: %v", err)
					break
				}
				if ev.Name == "drop" {
					t.Errorf("/sse/mixed: a drop event got through: %q", ev.Raw)
				}
			}
			got = append(got, r)
			results[l.lang] = got
		})
	}

	// The five answer identically (status, x-example, content type, body).
	var ref []reply
	var refLang wasmbuild.Lang
	for _, l := range languages {
		rs, ok := results[l.lang]
		if !ok {
			continue
		}
		if ref == nil {
			ref, refLang = rs, l.lang
			continue
		}
		for i := range rs {
			a, b := ref[i], rs[i]
			if a.status != b.status || a.body != b.body || a.header.Get("X-Example") != b.header.Get("X-Example") ||
				a.header.Get("Content-Type") != b.header.Get("Content-Type") {
				t.Errorf("%s and %s differ on request %d: %d %q vs %d %q", refLang, l.lang, i, a.status, a.body, b.status, b.body)
			}
		}
	}
}

// TestPluginsYAML keeps examples/plugins.yaml (the `make examples` demo
// config) valid and in step with the five languages and their paths.
func TestPluginsYAML(t *testing.T) {
	cfg, err := config.Load("plugins.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range languages {
		p, ok := cfg.Plugin(string(l.lang))
		if !ok {
			t.Fatalf("plugins.yaml lacks plugin %s", l.lang)
		}
		got, err := filepath.Abs(p.File)
		if err != nil {
			t.Fatal(err)
		}
		if want := wasmbuild.Path("bin", "examples", string(l.lang)+".wasm"); got != want {
			t.Errorf("%s: file %s, want %s (where make examples writes it)", l.lang, got, want)
		}
		if string(mustJSON(t, p)) != string(mustJSON(t, &cfg.Plugins[0])) {
			t.Errorf("%s: configuration differs from the others", l.lang)
		}
	}
}

func mustJSON(t *testing.T, p *config.Plugin) []byte {
	b, err := p.ConfigJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}
