package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/wasmgate/wasmgate/gateway/chain"
	"github.com/wasmgate/wasmgate/gateway/config"
	"github.com/wasmgate/wasmgate/gateway/upstream"
	"github.com/wasmgate/wasmgate/wasmhost"
)

// maxCallResponseBytes bounds the body of a plugin's proxy_http_call answer.
const maxCallResponseBytes = 4 << 20

// newChains starts the Wasm plugin host for cfg.Plugins and registers the
// plugin admin endpoints. Without plugins there is nothing to host.
func newChains(cfg *config.Config, g *Gateway) (chain.Builder, io.Closer, error) {
	if len(cfg.Plugins) == 0 {
		return chain.NopBuilder{}, nil, nil
	}
	h, err := wasmhost.New(context.Background(), cfg.Plugins, wasmhost.Options{
		Logger:           g.Logger().With("component", "wasmhost"),
		Registerer:       g.Registry(),
		CacheDir:         cfg.Wasm.CacheDir,
		MaxCallsInFlight: cfg.Wasm.MaxCallsInFlight,
		HTTP:             upstreamCaller{pools: g.Upstreams()},
	})
	if err != nil {
		return nil, nil, err
	}
	g.Admin().Handle("GET /plugins", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, h.Status())
	}), true)
	g.Admin().Handle("POST /plugins/{name}/reload", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		if !knownPlugin(h, name) {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("unknown plugin %q", name)})
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 60*time.Second)
		defer cancel()
		start := time.Now()
		if err := g.reload.plugin(ctx, name); err != nil {
			writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"error": err.Error()})
			return
		}
		for _, st := range h.Status() {
			if st.Name == name {
				writeJSON(w, http.StatusOK, map[string]any{"reloaded": name, "version": st.Version,
					"sha256": st.SHA256, "took_ms": time.Since(start).Milliseconds()})
				return
			}
		}
	}), true)
	closer := hostCloser{h: h, timeout: cfg.Shutdown.DrainTimeout.D()}
	if cfg.Wasm.Watch {
		if closer.w, err = newPluginWatcher(cfg.Plugins, g.Logger(), g.reload.plugin); err != nil {
			_ = closer.Close()
			return nil, nil, err
		}
		g.reload.watcher = closer.w
	}
	return h, closer, nil
}

func knownPlugin(h *wasmhost.Host, name string) bool {
	for _, n := range h.Plugins() {
		if n == name {
			return true
		}
	}
	return false
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

type hostCloser struct {
	h       *wasmhost.Host
	w       *pluginWatcher
	timeout time.Duration
}

func (c hostCloser) Close() error {
	if c.w != nil {
		_ = c.w.Close()
	}
	if c.timeout <= 0 {
		c.timeout = 15 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	return c.h.Close(ctx)
}

// upstreamCaller serves proxy_http_call through the gateway's upstream
// pools, so a plugin's callouts obey the same connection limits as proxied
// traffic.
type upstreamCaller struct{ pools *upstream.Pools }

// HasUpstream implements wasmhost.UpstreamChecker.
func (c upstreamCaller) HasUpstream(name string) bool {
	_, ok := c.pools.Get(name)
	return ok
}

func (c upstreamCaller) Call(ctx context.Context, name string, headers chain.Headers, body []byte, timeout time.Duration) (int, chain.Headers, []byte, error) {
	if err := ctx.Err(); err != nil {
		return 0, nil, nil, err
	}
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	for _, f := range headers {
		switch f.Name {
		case ":method":
			req.Header.SetMethod(f.Value)
		case ":path":
			req.SetRequestURI(f.Value)
		case ":authority":
			req.Header.SetHost(f.Value)
		default:
			if strings.HasPrefix(f.Name, ":") {
				continue
			}
			req.Header.Add(f.Name, f.Value)
		}
	}
	if len(body) > 0 {
		req.SetBody(body)
	}
	if err := c.pools.Do(name, req, resp, timeout); err != nil {
		return 0, nil, nil, fmt.Errorf("http_call to upstream %q: %w", name, err)
	}
	if len(resp.Body()) > maxCallResponseBytes {
		return 0, nil, nil, errors.New("http_call response body over 4 MiB")
	}
	var out chain.Headers
	for k, v := range resp.Header.All() {
		out = append(out, chain.Header{Name: strings.ToLower(string(k)), Value: string(v)})
	}
	return resp.StatusCode(), out, append([]byte(nil), resp.Body()...), nil
}
