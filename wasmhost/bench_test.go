package wasmhost

import (
	"testing"

	"github.com/wasmgate/wasmgate/gateway/chain"
	"github.com/wasmgate/wasmgate/gateway/config"
	"github.com/wasmgate/wasmgate/internal/wasmbuild"
)

// BenchmarkRequest: one request (request headers, response headers, Done)
// through chain.Stream with no plugin and with a plugin that reads a request
// header and adds a response header, in WAT, C and Go (the examples with
// the same job: check x-api-key, add a configured response header).
// The default is the metered CPU limit; "-watchdog" is the fallback
// mechanism (WithCloseOnContextDone + one watchdog goroutine) and
// "-nolimit" runs without any CPU limit, to price both.
func BenchmarkRequest(b *testing.B) {
	exCfg := map[string]any{"header": "x-out", "value": "v", "api_key": "k"}
	guests := []struct {
		name string
		lang wasmbuild.Lang
		src  string
		cfg  any
	}{
		{"wat", wasmbuild.WAT, "wasmhost/testdata/headers.wat", nil},
		{"c", wasmbuild.C, "examples/c/interceptor.c", exCfg},
		{"go", wasmbuild.Go, "examples/go", exCfg},
	}
	b.Run("none", func(b *testing.B) { benchChain(b, chain.Nop) })
	modes := []struct {
		suffix string
		opts   Options
	}{
		{"", Options{}},                         // metered (the default)
		{"-watchdog", Options{noMeter: true}},   // WithCloseOnContextDone + watchdog
		{"-nolimit", Options{noCPULimit: true}}, // no CPU limit at all
	}
	for _, mode := range modes {
		for _, g := range guests {
			name := g.name + mode.suffix
			b.Run(name, func(b *testing.B) {
				file := wasmbuild.MustBuild(b, g.lang, wasmbuild.Path(g.src))
				th := newHost(b, mode.opts, plugin("p", file, func(p *config.Plugin) {
					p.PoolSize = 1
					p.Config = g.cfg
				}))
				benchChain(b, th.chain(b, refs("p")...))
			})
		}
	}
}

func benchChain(b *testing.B, c chain.Chain) {
	info := testInfo()
	req0 := reqHeaders("/bench", "x-in", "value", "x-api-key", "k", "user-agent", "bench")
	resp0 := chain.Headers{{Name: ":status", Value: "200"}, {Name: "content-type", Value: "text/plain"}}
	req := make(chain.Headers, 0, 16)
	resp := make(chain.Headers, 0, 16)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req = append(req[:0], req0...)
		resp = append(resp[:0], resp0...)
		s, err := c.NewStream(info)
		if err != nil {
			b.Fatal(err)
		}
		if res := s.RequestHeaders(&req, true); res.Action != chain.Continue {
			b.Fatalf("request: %+v", res.Response)
		}
		if res := s.ResponseHeaders(&resp, true); res.Action != chain.Continue {
			b.Fatalf("response: %+v", res.Response)
		}
		s.Done()
		if c.Len() > 0 && len(resp) != 3 {
			b.Fatalf("response headers %v", resp)
		}
	}
}

// BenchmarkReload: time for Reload (read, instrument, compile with a warm
// compilation cache, start and configure a pool of 2 VMs, swap) per guest.
func BenchmarkReload(b *testing.B) {
	for _, g := range []struct {
		name string
		lang wasmbuild.Lang
		src  string
	}{
		{"wat", wasmbuild.WAT, "wasmhost/testdata/headers.wat"},
		{"c", wasmbuild.C, "examples/c/interceptor.c"},
		{"go", wasmbuild.Go, "examples/go"},
	} {
		b.Run(g.name, func(b *testing.B) {
			file := wasmbuild.MustBuild(b, g.lang, wasmbuild.Path(g.src))
			th := newHost(b, Options{CacheDir: b.TempDir()}, plugin("p", file))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := th.Reload(b.Context(), "p"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
