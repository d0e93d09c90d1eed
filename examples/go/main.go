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
	cfg config
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

func (r *root) NewHTTPContext(uint32) sdk.HTTPContext { return &stream{cfg: &r.cfg} }

type stream struct {
	sdk.DefaultHTTPContext
	cfg *config
	sse bool
}

const unauthorized = `{"error":"invalid or missing x-api-key"}`

func (s *stream) OnRequestHeaders(int, bool) sdk.Action {
	if s.cfg.APIKey == "" {
		return sdk.Continue
	}
	if key, _ := sdk.RequestHeader("x-api-key"); key == s.cfg.APIKey {
		return sdk.Continue
	}
	headers := []sdk.Header{{"content-type", "application/json"}}
	if s.cfg.Header != "" {
		headers = append(headers, sdk.Header{s.cfg.Header, s.cfg.Value})
	}
	if err := sdk.SendLocalResponse(401, headers, []byte(unauthorized), "api_key_mismatch"); err != nil {
		sdk.Errorf("send 401: %v", err)
	}
	return sdk.Pause
}

func (s *stream) OnResponseHeaders(int, bool) sdk.Action {
	if s.cfg.Header != "" {
		sdk.SetResponseHeader(s.cfg.Header, s.cfg.Value)
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
