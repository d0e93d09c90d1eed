package wasmhost

import (
	"fmt"
	"testing"
	"time"

	"github.com/wasmgate/wasmgate/gateway/chain"
	"github.com/wasmgate/wasmgate/gateway/config"
	"github.com/wasmgate/wasmgate/internal/wasmbuild"
)

// BenchmarkRequest: one request (request headers, response headers, the
// whole 100-byte response body in one call, Done)
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
				if mode.suffix == "" {
					// Guest work as the meter counts it: steady where
					// ns/op is not on a shared machine.
					b.ReportMetric(th.metric(b, "wasmgate_plugin_cpu_units_total", map[string]string{"plugin": "p"})/float64(b.N), "units/req")
				}
			})
		}
	}
}

// BenchmarkRequestParallel is BenchmarkRequest from 64 goroutines on a
// pool of 2 VMs, as the gateway runs it: requests pinned to few VMs
// contend for each VM's call lock at every callback.
func BenchmarkRequestParallel(b *testing.B) {
	exCfg := map[string]any{"header": "x-out", "value": "v", "api_key": "k"}
	for _, g := range []struct {
		name string
		lang wasmbuild.Lang
		src  string
		cfg  any
	}{
		{"wat", wasmbuild.WAT, "wasmhost/testdata/headers.wat", nil},
		{"c", wasmbuild.C, "examples/c/interceptor.c", exCfg},
		{"go", wasmbuild.Go, "examples/go", exCfg},
	} {
		b.Run(g.name, func(b *testing.B) {
			file := wasmbuild.MustBuild(b, g.lang, wasmbuild.Path(g.src))
			th := newHost(b, Options{}, plugin("p", file, func(p *config.Plugin) {
				p.PoolSize = 2
				p.Config = g.cfg
				p.QueueTimeout = config.Duration(5 * time.Second)
			}))
			c := th.chain(b, refs("p")...)
			b.SetParallelism(32) // x GOMAXPROCS goroutines
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				r := newBenchRequest()
				for pb.Next() {
					if err := r.run(c); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// benchRequest is one request's reusable header maps and body.
type benchRequest struct {
	info        *chain.Info
	req0, resp0 chain.Headers
	req, resp   chain.Headers
	body0, body []byte
}

func newBenchRequest() *benchRequest {
	return &benchRequest{
		info:  testInfo(),
		req0:  reqHeaders("/bench", "x-in", "value", "x-api-key", "k", "user-agent", "bench"),
		resp0: chain.Headers{{Name: ":status", Value: "200"}, {Name: "content-type", Value: "text/plain"}},
		req:   make(chain.Headers, 0, 16),
		resp:  make(chain.Headers, 0, 16),
		body0: make([]byte, 100),
	}
}

// run sends one request through c: request headers, response headers,
// the whole 100-byte body in one call, Done.
func (r *benchRequest) run(c chain.Chain) error {
	r.req = append(r.req[:0], r.req0...)
	r.resp = append(r.resp[:0], r.resp0...)
	s, err := c.NewStream(r.info)
	if err != nil {
		return err
	}
	defer s.Done()
	if res := s.RequestHeaders(&r.req, true); res.Action != chain.Continue {
		return fmt.Errorf("request: %+v", res.Response)
	}
	if res := s.ResponseHeaders(&r.resp, false); res.Action != chain.Continue {
		return fmt.Errorf("response: %+v", res.Response)
	}
	r.body = append(r.body[:0], r.body0...)
	if res := s.ResponseBody(&r.body, true); res.Action != chain.Continue {
		return fmt.Errorf("response body: %+v", res.Response)
	}
	if c.Len() > 0 && len(r.resp) != 3 {
		return fmt.Errorf("response headers %v", r.resp)
	}
	return nil
}

func benchChain(b *testing.B, c chain.Chain) {
	r := newBenchRequest()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := r.run(c); err != nil {
			b.Fatal(err)
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
