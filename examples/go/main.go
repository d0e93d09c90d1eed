// Command go is the example interceptor written with the Go SDK (see
// examples/README.md): it adds a response header, checks x-api-key, and
// rewrites SSE events named "shout" and "drop".
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o go.wasm ./examples/go
package main

import (
	"strings"

	"github.com/wasmgate/wasmgate/sdk"
)

func init() { sdk.SetPlugin(plugin{}) }

func main() {}

type plugin struct{ sdk.DefaultPlugin }

func (plugin) NewRootContext(uint32) sdk.RootContext { return &root{} }

type config struct {
	Header string `json:"header"`
	Value  string `json:"value"`
	APIKey string `json:"api_key"`
}

type root struct {
	sdk.DefaultRootContext
	cfg  config
	free []*stream
}

func (r *root) OnConfigure(int) bool {
	r.cfg = config{}
	if err := sdk.UnmarshalPluginConfig(&r.cfg); err != nil {
		sdk.Errorf("%v", err)
		return false
	}
	r.cfg.Header = strings.ToLower(r.cfg.Header)
	return true
}

// NewHTTPContext reuses a stream the host deleted: an allocation per
// request costs more guest instructions than the rest of the request.
func (r *root) NewHTTPContext(uint32) sdk.HTTPContext {
	if n := len(r.free); n > 0 {
		s := r.free[n-1]
		r.free = r.free[:n-1]
		*s = stream{root: r}
		return s
	}
	return &stream{root: r}
}

// maxFree bounds the streams kept for reuse (a VM serves few at once).
const maxFree = 64

type stream struct {
	sdk.DefaultHTTPContext
	root *root
	sse  bool
}

func (s *stream) OnDelete() {
	if r := s.root; len(r.free) < maxFree {
		r.free = append(r.free, s)
	}
}

const unauthorized = `{"error":"invalid or missing x-api-key"}`

func (s *stream) OnRequestHeaders(int, bool) sdk.Action {
	if s.root.cfg.APIKey == "" {
		return sdk.Continue
	}
	if key, _ := sdk.RequestHeader("x-api-key"); key == s.root.cfg.APIKey {
		return sdk.Continue
	}
	headers := []sdk.Header{{"content-type", "application/json"}}
	if s.root.cfg.Header != "" {
		headers = append(headers, sdk.Header{s.root.cfg.Header, s.root.cfg.Value})
	}
	if err := sdk.SendLocalResponse(401, headers, []byte(unauthorized), "api_key_mismatch"); err != nil {
		sdk.Errorf("send 401: %v", err)
	}
	return sdk.Pause
}

func (s *stream) OnResponseHeaders(int, bool) sdk.Action {
	if s.root.cfg.Header != "" {
		sdk.SetResponseHeader(s.root.cfg.Header, s.root.cfg.Value)
	}
	ct, _ := sdk.ResponseHeader("content-type")
	s.sse = sdk.IsEventStream(ct)
	return sdk.Continue
}

func (s *stream) OnResponseBody(size int, _ bool) sdk.Action {
	if !s.sse || size == 0 {
		return sdk.Continue
	}
	ev, err := sdk.ResponseEvent(size)
	if err != nil || ev == nil {
		return sdk.Continue
	}
	switch ev.Name() {
	case "drop":
		sdk.DropResponseEvent(size)
	case "shout":
		ev.MapData(upper)
		sdk.SetResponseEvent(size, ev)
	}
	return sdk.Continue
}

func upper(b []byte) {
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
}
