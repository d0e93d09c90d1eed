package proxy_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmgate/wasmgate/gateway/config"
)

func TestForwardHeaders(t *testing.T) {
	verifyNone(t)
	var mu sync.Mutex
	var got http.Header
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = r.Header.Clone()
		got.Set("Host", r.Host)
		got.Set("X-Path", r.URL.RequestURI())
		got.Set("X-Method", r.Method)
		mu.Unlock()
		w.Header().Set("Connection", "X-Up-Hop")
		w.Header().Set("X-Up-Hop", "secret")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("X-Up-End", "kept")
		io.WriteString(w, "hello")
	}))
	g := startGateway(t, testConfig(t, []string{up.addr}, nil), nil, nil)
	c := newClient(t)

	req, _ := http.NewRequest("PATCH", "http://"+g.addr+"/a/b?x=1&y=%2F", strings.NewReader("body"))
	req.Host = "example.test"
	req.Header.Set("Connection", "X-Hop-Field")
	req.Header.Set("X-Hop-Field", "must go")
	req.Header.Set("Proxy-Authorization", "Basic abc")
	req.Header.Set("Te", "trailers")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("X-End", "kept")
	req.Header.Set("X-Forwarded-For", "10.0.0.1")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "hello" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, h := range []string{"X-Hop-Field", "Proxy-Authorization", "Te", "Upgrade"} {
		if v := got.Get(h); v != "" {
			t.Errorf("request hop-by-hop %s reached upstream: %q", h, v)
		}
	}
	want := map[string]string{
		"X-End": "kept", "X-Forwarded-For": "10.0.0.1, 127.0.0.1", "X-Forwarded-Proto": "http",
		"X-Forwarded-Host": "example.test", "Via": "1.1 wasmgate", "Host": "example.test",
		"X-Path": "/a/b?x=1&y=%2F", "X-Method": "PATCH",
	}
	for k, v := range want {
		if got.Get(k) != v {
			t.Errorf("upstream saw %s=%q, want %q", k, got.Get(k), v)
		}
	}
	if len(got.Get("X-Request-Id")) != 32 {
		t.Errorf("X-Request-Id %q not generated", got.Get("X-Request-Id"))
	}
	if resp.Header.Get("X-Request-Id") != got.Get("X-Request-Id") {
		t.Errorf("response X-Request-Id %q != %q", resp.Header.Get("X-Request-Id"), got.Get("X-Request-Id"))
	}
	for _, h := range []string{"X-Up-Hop", "Keep-Alive"} {
		if v := resp.Header.Get(h); v != "" {
			t.Errorf("response hop-by-hop %s reached client: %q", h, v)
		}
	}
	if resp.Header.Get("X-Up-End") != "kept" || resp.Header.Get("Via") != "1.1 wasmgate" {
		t.Errorf("response headers: %v", resp.Header)
	}
}

func TestRouting(t *testing.T) {
	verifyNone(t)
	mk := func(name string) *testUpstream {
		return startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) }))
	}
	a, b, c := mk("a"), mk("b"), mk("c")
	cfg := testConfig(t, []string{a.addr}, func(cfg *config.Config) {
		u := cfg.Upstreams[0]
		u.Name, u.Targets = "b", []string{b.addr}
		cfg.Upstreams = append(cfg.Upstreams, u)
		u.Name, u.Targets = "c", []string{c.addr}
		cfg.Upstreams = append(cfg.Upstreams, u)
		cfg.Routes = append(cfg.Routes,
			config.Route{Name: "api", Match: config.Match{PathPrefix: "/api/"}, Upstream: "b", Session: config.SessionKey{Header: "Mcp-Session-Id"}, SSE: config.RouteSSE{Replay: "upstream"}},
			config.Route{Name: "host", Match: config.Match{Host: "c.test", PathPrefix: "/"}, Upstream: "c", Session: config.SessionKey{Header: "Mcp-Session-Id"}, SSE: config.RouteSSE{Replay: "upstream"}},
		)
	})
	g := startGateway(t, cfg, nil, nil)
	cl := newClient(t)
	for _, tc := range []struct{ host, path, want string }{
		{"x.test", "/", "a"}, {"x.test", "/api/v1", "b"}, {"x.test", "/apix", "a"},
		{"c.test", "/api/v1", "c"}, {"C.TEST:8080", "/", "c"},
	} {
		req, _ := http.NewRequest("GET", "http://"+g.addr+tc.path, nil)
		req.Host = tc.host
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != tc.want {
			t.Errorf("%s%s → %q, want %q", tc.host, tc.path, b, tc.want)
		}
	}
}

func TestStatusMapping(t *testing.T) {
	verifyNone(t)
	release := make(chan struct{})
	slow := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer close(release)

	t.Run("502 refused", func(t *testing.T) {
		g := startGateway(t, testConfig(t, []string{freeAddr(t)}, nil), nil, nil)
		resp := rawRequest(t, g.addr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 5*time.Second)
		if statusOf(resp) != 502 || !strings.Contains(resp, "upstream refused connection") {
			t.Fatalf("got %q", resp)
		}
	})
	t.Run("504 slow upstream", func(t *testing.T) {
		g := startGateway(t, testConfig(t, []string{slow.addr}, func(c *config.Config) {
			c.Upstreams[0].ResponseHeaderTimeout = config.Duration(200 * time.Millisecond)
		}), nil, nil)
		start := time.Now()
		resp := rawRequest(t, g.addr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 5*time.Second)
		if statusOf(resp) != 504 || !strings.Contains(resp, "upstream timed out") {
			t.Fatalf("got %q", resp)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("504 after %v", d)
		}
	})
	t.Run("503 pool full", func(t *testing.T) {
		wait := 150 * time.Millisecond
		g := startGateway(t, testConfig(t, []string{slow.addr}, func(c *config.Config) {
			c.Upstreams[0].MaxConnsPerTarget = 2
			c.Upstreams[0].ConnWaitTimeout = config.Duration(wait)
			c.Upstreams[0].ResponseHeaderTimeout = config.Duration(5 * time.Second)
		}), nil, nil)
		// Two requests hold both connections.
		var wg sync.WaitGroup
		for i := 0; i < 2; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rawRequest(t, g.addr, "GET /hold HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 3*time.Second)
			}()
		}
		time.Sleep(200 * time.Millisecond)
		start := time.Now()
		resp := rawRequest(t, g.addr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 5*time.Second)
		took := time.Since(start)
		if statusOf(resp) != 503 || !strings.Contains(resp, "pool full") {
			t.Fatalf("got %q", resp)
		}
		if took < wait || took > wait+time.Second {
			t.Errorf("503 after %v, want about conn_wait_timeout %v", took, wait)
		}
		wg.Wait()
	})
}

func TestRetryOnOtherTarget(t *testing.T) {
	verifyNone(t)
	var n int
	var mu sync.Mutex
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n++
		mu.Unlock()
		fmt.Fprint(w, "ok")
	}))
	dead := freeAddr(t)
	g := startGateway(t, testConfig(t, []string{dead, up.addr}, func(c *config.Config) {
		c.Upstreams[0].Retries = 1
		c.Upstreams[0].Passive.MaxFailures = 2
	}), nil, nil)
	cl := newClient(t)
	for i := 0; i < 6; i++ {
		resp, err := cl.Get("http://" + g.addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET %d: status %d", i, resp.StatusCode)
		}
	}
	// A POST is not retried: with the dead target first it fails.
	u, _ := g.pools.Get("up")
	if u.Targets()[0].Healthy() {
		t.Errorf("dead target not ejected after repeated refusals")
	}
}
