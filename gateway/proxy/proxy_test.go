package proxy_test

import (
	"bufio"
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

// TestHeaderRewriteEachField sends each field the rewrite treats specially
// alone (and in odd case), so that every name is found by the single scan
// that decides whether the hop-by-hop fields must be stripped, in both
// directions.
func TestHeaderRewriteEachField(t *testing.T) {
	verifyNone(t)
	var mu sync.Mutex
	var got http.Header
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = r.Header.Clone()
		mu.Unlock()
		// The response fields to send come in the request's X-Send
		// ("Name=value;Name=value").
		for kv := range strings.SplitSeq(r.Header.Get("X-Send"), ";") {
			if k, v, ok := strings.Cut(kv, "="); ok {
				w.Header()[k] = append(w.Header()[k], v)
			}
		}
		io.WriteString(w, "ok")
	}))
	g := startGateway(t, testConfig(t, []string{up.addr}, nil), nil, nil)

	tests := []struct {
		name       string
		reqFields  string   // raw request header lines
		send       string   // response fields the upstream sends
		upGone     []string // request fields the upstream must not see
		upWant     map[string]string
		clientGone []string // response fields the client must not see
		clientWant map[string]string
	}{
		{name: "none", upWant: map[string]string{"Via": "1.1 wasmgate", "X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "http", "X-Forwarded-Host": "x"},
			clientWant: map[string]string{"Via": "1.1 wasmgate"}},
		{name: "Connection-listed", reqFields: "Connection: X-A, x-b\r\nX-A: 1\r\nX-B: 2\r\nX-C: 3\r\n",
			send: "Connection=X-R;X-R=1;X-S=2", upGone: []string{"X-A", "X-B", "Connection"}, upWant: map[string]string{"X-C": "3"},
			clientGone: []string{"X-R", "Connection"}, clientWant: map[string]string{"X-S": "2"}},
		{name: "Te", reqFields: "TE: trailers\r\n", upGone: []string{"Te"}},
		{name: "Expect", reqFields: "expect: something\r\n", upGone: []string{"Expect"}},
		{name: "Trailer", reqFields: "Trailer: X-T\r\n", send: "Trailer=X-T", upGone: []string{"Trailer"}, clientGone: []string{"Trailer"}},
		{name: "Upgrade", reqFields: "upgrade: websocket\r\n", send: "Upgrade=h2c", upGone: []string{"Upgrade"}, clientGone: []string{"Upgrade"}},
		{name: "Keep-Alive", reqFields: "KEEP-ALIVE: timeout=5\r\n", send: "Keep-Alive=timeout=5", upGone: []string{"Keep-Alive"}, clientGone: []string{"Keep-Alive"}},
		{name: "Proxy-Connection", reqFields: "Proxy-Connection: keep-alive\r\n", upGone: []string{"Proxy-Connection"}},
		{name: "Proxy-Authorization", reqFields: "proxy-authorization: Basic abc\r\n", upGone: []string{"Proxy-Authorization"}},
		{name: "Proxy-Authenticate", send: "Proxy-Authenticate=Basic", clientGone: []string{"Proxy-Authenticate"}},
		{name: "prior proxies", reqFields: "via: 1.0 edge\r\nx-forwarded-for: 10.0.0.1\r\nX-Request-Id: abc-123\r\n",
			send:       "Via=1.1 app;X-Request-Id=up-9",
			upWant:     map[string]string{"Via": "1.0 edge, 1.1 wasmgate", "X-Forwarded-For": "10.0.0.1, 127.0.0.1", "X-Request-Id": "abc-123"},
			clientWant: map[string]string{"Via": "1.1 app, 1.1 wasmgate", "X-Request-Id": "up-9"}},
		{name: "request id kept", reqFields: "X-Request-Id: abc-123\r\n", upWant: map[string]string{"X-Request-Id": "abc-123"}, clientWant: map[string]string{"X-Request-Id": "abc-123"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// No "Connection: close": a Connection field would send every
			// request down the stripping path.
			c := dialGateway(t, g.addr, 5*time.Second)
			if _, err := io.WriteString(c, "GET /h HTTP/1.1\r\nHost: x\r\n"+tt.reqFields+"X-Send: "+tt.send+"\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			mu.Lock()
			up := got
			mu.Unlock()
			for _, h := range tt.upGone {
				if v, ok := up[h]; ok {
					t.Errorf("upstream saw %s: %q", h, v)
				}
			}
			for k, v := range tt.upWant {
				if up.Get(k) != v {
					t.Errorf("upstream saw %s=%q, want %q", k, up.Get(k), v)
				}
			}
			if id := up.Get("X-Request-Id"); id == "" || (tt.upWant["X-Request-Id"] == "" && len(id) != 32) {
				t.Errorf("upstream X-Request-Id %q", id)
			}
			for _, h := range tt.clientGone {
				if v, ok := resp.Header[h]; ok {
					t.Errorf("client saw %s: %q", h, v)
				}
			}
			for k, v := range tt.clientWant {
				if resp.Header.Get(k) != v {
					t.Errorf("client saw %s=%q, want %q", k, resp.Header.Get(k), v)
				}
			}
			if tt.clientWant["X-Request-Id"] == "" && resp.Header.Get("X-Request-Id") != up.Get("X-Request-Id") {
				t.Errorf("client X-Request-Id %q, upstream's %q", resp.Header.Get("X-Request-Id"), up.Get("X-Request-Id"))
			}
		})
	}
}

// Request ids are handed out in blocks per pooled exchange: many requests
// over concurrent connections must still all get distinct ids.
func TestRequestIDsUnique(t *testing.T) {
	verifyNone(t)
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	g := startGateway(t, testConfig(t, []string{up.addr}, nil), nil, nil)
	c := newClient(t)
	const workers, each = 4, 150
	var mu sync.Mutex
	seen := map[string]bool{}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				resp, err := c.Get("http://" + g.addr + "/")
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				id := resp.Header.Get("X-Request-Id")
				mu.Lock()
				if len(id) != 32 || seen[id] {
					t.Errorf("request id %q: malformed or repeated", id)
				}
				seen[id] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(seen) != workers*each {
		t.Fatalf("%d distinct ids for %d requests", len(seen), workers*each)
	}
}

// TestForwardClientRequest covers what forwarding the client's own request
// (its header edited in place, no copy) must keep as the copy did: the
// request target byte for byte (not re-rendered from the parsed URI), small
// and streamed bodies, the Cookie field as it came, and the client
// connection's keep-alive decision,
// which the stripped Connection field no longer shows.
func TestForwardClientRequest(t *testing.T) {
	verifyNone(t)
	var mu sync.Mutex
	var seen []string
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, fmt.Sprintf("%s %s %s conn=%q cookie=%q", r.Method, r.RequestURI, body, r.Header.Get("Connection"), r.Header.Get("Cookie")))
		mu.Unlock()
		io.WriteString(w, "ok")
	}))
	g := startGateway(t, testConfig(t, []string{up.addr}, nil), nil, nil)

	c := dialGateway(t, g.addr, 10*time.Second)
	br := bufio.NewReader(c)
	// HTTP/1.0 with keep-alive: the connection must stay open although
	// the Connection field is stripped before the upstream sees it.
	if resp := get(t, c, br, "GET /a//b/./c/../d?q=%2f&x HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n"); resp.Close {
		t.Fatal("HTTP/1.0 keep-alive connection closed")
	}
	get(t, c, br, "POST /p%20q HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nsmall")
	// The Cookie field goes as it came, not parsed and written again.
	get(t, c, br, "GET /cookie HTTP/1.1\r\nHost: x\r\nCookie: a=1;b=2;  c\r\n\r\n")
	get(t, c, br, "POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
	// Connection: close ends the client connection after the response;
	// the upstream connection is not closed for it.
	if resp := get(t, c, br, "GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); !resp.Close {
		t.Fatal("Connection: close not honoured")
	}
	if n, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("connection still open after Connection: close (%v, %v)", n, err)
	}

	mu.Lock()
	defer mu.Unlock()
	want := []string{
		`GET /a//b/./c/../d?q=%2f&x  conn="" cookie=""`,
		`POST /p%20q small conn="" cookie=""`,
		`GET /cookie  conn="" cookie="a=1;b=2;  c"`,
		`POST /chunked abcde conn="" cookie=""`,
		`GET /last  conn="" cookie=""`,
	}
	if strings.Join(seen, "\n") != strings.Join(want, "\n") {
		t.Errorf("upstream saw\n%s\nwant\n%s", strings.Join(seen, "\n"), strings.Join(want, "\n"))
	}
}

// TestForwardedProtoHostNotSpoofed: X-Forwarded-Proto and X-Forwarded-Host
// are the gateway's to state. A client's own lines of them are replaced,
// never passed on beside the gateway's: an upstream reading the first value
// (Go's Header.Get, most frameworks) would trust the client's.
func TestForwardedProtoHostNotSpoofed(t *testing.T) {
	verifyNone(t)
	got := make(chan http.Header, 8)
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Clone()
		io.WriteString(w, "ok")
	}))
	g := startGateway(t, testConfig(t, []string{up.addr}, nil), nil, nil)
	for _, tc := range []struct{ name, extra string }{
		{"GET", ""},
		{"GET with a prior X-Forwarded-For", "X-Forwarded-For: 10.0.0.1\r\n"},
		{"POST", "Content-Length: 2\r\n"},
		{"GET, each twice", "X-Forwarded-Proto: https\r\nX-Forwarded-Host: evil2.test\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			method, body := "GET", ""
			if strings.Contains(tc.extra, "Content-Length") {
				method, body = "POST", "hi"
			}
			raw := method + " / HTTP/1.1\r\nHost: real.test\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.test\r\n" +
				tc.extra + "Connection: close\r\n\r\n" + body
			if resp := rawRequest(t, g.addr, raw, 5*time.Second); statusOf(resp) != 200 {
				t.Fatalf("response %q", resp)
			}
			h := <-got
			if v := h.Values("X-Forwarded-Proto"); len(v) != 1 || v[0] != "http" {
				t.Errorf("upstream saw X-Forwarded-Proto %q, want [http]", v)
			}
			if v := h.Values("X-Forwarded-Host"); len(v) != 1 || v[0] != "real.test" {
				t.Errorf("upstream saw X-Forwarded-Host %q, want [real.test]", v)
			}
		})
	}
}
