package upstream

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// TestResponseHeaderSizes checks the ordinary pool's bound on an upstream
// response header block (upstreamHeaderBytes): blocks past the first read
// buffer still arrive whole, with a small or a streamed body, and a block
// over the bound is an error, not a truncated header.
func TestResponseHeaderSizes(t *testing.T) {
	verifyNone(t)
	addr := upstreamServer(t, func(w http.ResponseWriter, r *http.Request) {
		var n, body int
		fmt.Sscanf(r.URL.Path, "/%d/%d", &n, &body)
		w.Header().Set("X-Big", strings.Repeat("h", n))
		io.WriteString(w, strings.Repeat("b", body))
	})
	p, _ := newPools(t, upCfg(addr))
	u, _ := p.Get("u")
	for _, tc := range []struct {
		header, body int
		ok           bool
	}{
		{100, 10, true},
		{3 << 10, 10, true},
		{6 << 10, 10, true},
		{6 << 10, 20 << 10, true},
		{6 << 10, BufferedBody + 1, true},
		{upstreamHeaderBytes - 1024, 100, true},
		{upstreamHeaderBytes + 1024, 100, false},
	} {
		code, body, err := get(t, u, fmt.Sprintf("/%d/%d", tc.header, tc.body))
		if !tc.ok {
			if err == nil {
				t.Errorf("%d-byte header: status %d, want an error", tc.header, code)
			}
			continue
		}
		if err != nil || code != 200 || len(body) != tc.body {
			t.Errorf("%d-byte header, %d-byte body: %d, %d bytes, %v", tc.header, tc.body, code, len(body), err)
		}
	}
	// Do (plugin callouts, health checks) reads through the HostClient:
	// the same bound.
	for _, tc := range []struct {
		header int
		ok     bool
	}{{6 << 10, true}, {upstreamHeaderBytes + 1024, false}} {
		req := fasthttp.AcquireRequest()
		resp := fasthttp.AcquireResponse()
		req.SetRequestURI(fmt.Sprintf("http://x/%d/10", tc.header))
		err := p.Do("u", req, resp, 5*time.Second)
		if got := len(resp.Header.Peek("X-Big")); tc.ok && (err != nil || got != tc.header) {
			t.Errorf("Do, %d-byte header: %d bytes of it, %v", tc.header, got, err)
		} else if !tc.ok && err == nil {
			t.Errorf("Do, %d-byte header: no error", tc.header)
		}
		fasthttp.ReleaseRequest(req)
		fasthttp.ReleaseResponse(resp)
	}
	for _, tg := range u.Targets() {
		if tg.inFlight.Load() != 0 {
			t.Errorf("%d in flight after all responses ended", tg.inFlight.Load())
		}
	}
}
