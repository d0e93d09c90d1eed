package wasmhost

import (
	"testing"
	"time"

	"github.com/wasmgate/wasmgate/gateway/chain"
	"github.com/wasmgate/wasmgate/gateway/config"
	"github.com/wasmgate/wasmgate/internal/wasmbuild"
)

// TestExamplesOnTheRealHost loads the example interceptor of every guest
// language (built with the repo's SDKs) into this host and checks what it
// does: a configured response header, 401 without the API key, SSE events
// rewritten one per call.
func TestExamplesOnTheRealHost(t *testing.T) {
	examples := []struct {
		name string
		lang wasmbuild.Lang
		src  string
	}{
		{"wat", wasmbuild.WAT, "examples/wat/interceptor.wat"},
		{"c", wasmbuild.C, "examples/c"},
		{"go", wasmbuild.Go, "examples/go"},
		{"rust", wasmbuild.Rust, "examples/rust"},
		{"assemblyscript", wasmbuild.AssemblyScript, "examples/assemblyscript"},
	}
	cfg := map[string]any{"header": "x-example", "value": "wasmgate", "api_key": "s3cret"}
	for _, ex := range examples {
		t.Run(ex.name, func(t *testing.T) {
			file := wasmbuild.MustBuild(t, ex.lang, wasmbuild.Path(ex.src))
			th := newHost(t, Options{}, plugin("ex", file, func(p *config.Plugin) {
				p.Config = cfg
				p.CPULimit = config.Duration(time.Second)
			}))
			if !th.slots["ex"].cur.Load().metered {
				t.Error("example is not metered")
			}
			c := th.chain(t, refs("ex")...)
			res, _, resp := exchange(t, c, reqHeaders("/", "x-api-key", "s3cret"))
			if res.Action != chain.Continue || get(resp, "x-example") != "wasmgate" {
				t.Fatalf("with key: %v %v", res.Action, resp)
			}
			res, _, _ = exchange(t, c, reqHeaders("/"))
			if res.Action != chain.Respond || res.Response.Status != 401 {
				t.Fatalf("without key: %+v", res)
			}
			s, _ := c.NewStream(testInfo())
			defer s.Done()
			h := reqHeaders("/sse", "x-api-key", "s3cret")
			s.RequestHeaders(&h, true)
			rh := chain.Headers{{Name: ":status", Value: "200"}, {Name: "content-type", Value: "text/event-stream"}}
			s.ResponseHeaders(&rh, false)
			for in, want := range map[string]string{
				"event: shout\ndata: hello\n\n": "event: shout\ndata: HELLO\n\n",
				"event: drop\ndata: x\n\n":      "",
				"data: keep\n\n":                "data: keep\n\n",
			} {
				b := []byte(in)
				if res := s.ResponseBody(&b, false); res.Action != chain.Continue || string(b) != want {
					t.Fatalf("SSE %q -> %q (%v), want %q", in, b, res.Action, want)
				}
			}
		})
	}
}
