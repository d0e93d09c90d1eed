package gateway_test

// End-to-end hardening suite: a real gateway (gateway.New from a YAML
// configuration) in front of a real loopback upstream, attacked over raw
// TCP with what HTTP clients cannot be made to send. Every refusal must be
// a status plus a one-line reason, and nothing refused may reach the
// upstream.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/wasmgate/wasmgate/gateway"
	"github.com/wasmgate/wasmgate/gateway/chain"
	"github.com/wasmgate/wasmgate/gateway/config"
	"github.com/wasmgate/wasmgate/gateway/event"
)

// hardUpstream is a loopback upstream that records every request it gets.
type hardUpstream struct {
	addr    string
	mu      sync.Mutex
	seen    []string // "METHOD PATH BODYLEN"
	headers []http.Header
}

func (u *hardUpstream) header(i int) http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.headers[i]
}

func (u *hardUpstream) requests() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.seen...)
}

func startHardUpstream(t *testing.T) *hardUpstream {
	t.Helper()
	u := &hardUpstream{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u.addr = ln.Addr().String()
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			u.mu.Lock()
			u.seen = append(u.seen, fmt.Sprintf("%s %s %d", r.Method, r.URL.Path, len(b)))
			u.headers = append(u.headers, r.Header.Clone())
			u.mu.Unlock()
			io.WriteString(w, "upstream ok")
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return u
}

// startHardGateway runs a gateway with the given limits (small enough to
// test quickly); extra lines are appended to the YAML and may set top-level
// keys the base leaves out (sessions, sse).
func startHardGateway(t *testing.T, upstream, limits string, extra ...string) *gateway.Gateway {
	t.Helper()
	y := fmt.Sprintf(`
listen: 127.0.0.1:0
admin: {listen: ""}
limits: {%s}
upstreams: [{name: up, targets: [%q]}]
routes: [{name: r, upstream: up}]
storage: {enabled: false}
shutdown: {drain_timeout: 2s}
%s
`, limits, upstream, strings.Join(extra, "\n"))
	cfg, err := config.Parse([]byte(y))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, y)
	}
	g, err := gateway.New(cfg, gateway.Options{
		Logger: slog.New(slog.DiscardHandler), Chains: chain.NopBuilder{}, Sink: event.Discard,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := g.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return g
}

func hardLeakCheck(t *testing.T) {
	opts := []goleak.Option{
		goleak.IgnoreCurrent(),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*TCPDialer).tcpAddrsClean"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
	}
	// Registered first, so it runs after the gateway's and upstream's
	// cleanups have stopped them.
	t.Cleanup(func() { goleak.VerifyNone(t, opts...) })
}

// hardReply is what came back on one raw connection.
type hardReply struct {
	status int
	body   string
	header http.Header
	rest   string // bytes after the first response (a second response = smuggling)
	err    error  // the connection closed or failed before a response
}

// hardExchange writes raw on a new connection, reads one response, then
// everything else the server sends until it closes the connection or
// linger passes.
func hardExchange(t *testing.T, addr, raw string, linger time.Duration) hardReply {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		return hardReply{err: err}
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return hardReply{err: err}
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return hardReply{err: err}
	}
	r := hardReply{status: resp.StatusCode, body: string(body), header: resp.Header}
	c.SetReadDeadline(time.Now().Add(linger))
	rest, _ := io.ReadAll(br)
	r.rest = string(rest)
	return r
}

// oneLine reports whether body is a single non-empty line of text (a
// final newline optional).
func oneLine(body string) bool {
	line := strings.TrimSuffix(body, "\n")
	return strings.TrimSpace(line) != "" && !strings.ContainsAny(line, "\r\n")
}

func TestHardeningFraming(t *testing.T) {
	hardLeakCheck(t)
	up := startHardUpstream(t)
	g := startHardGateway(t, up.addr, "max_header_bytes: 4KiB, max_body_bytes: 1KiB, read_header_timeout: 5s")

	smuggled := "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
	// 300 short fields, 2.6 KiB: under the byte limit, three times the
	// field count Envoy and HAProxy accept (100, 101).
	manyHeaders := ""
	for i := range 300 {
		manyHeaders += fmt.Sprintf("h%d: v\r\n", i)
	}
	if len(manyHeaders) > 3<<10 {
		t.Fatalf("too-many-headers case is %d bytes, over the byte limit", len(manyHeaders))
	}
	fewHeaders := manyHeaders[:strings.Index(manyHeaders, "h50:")] // 50 fields
	for _, tc := range []struct {
		name  string
		raw   string
		codes []int // acceptable statuses
	}{
		{"CL then TE", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, []int{400}},
		{"TE then CL", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n" + smuggled, []int{400}},
		{"TE identity with CL", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\nContent-Length: 5\r\n\r\nhello" + smuggled, []int{400, 501}},
		{"TE with other coding", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n" + smuggled, []int{400, 501}},
		{"two CLs differing", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 41\r\n\r\nhello" + smuggled, []int{400}},
		{"CL list differing", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 41\r\n\r\nhello" + smuggled, []int{400}},
		{"CL not a number", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5x\r\n\r\nhello" + smuggled, []int{400}},
		{"CL negative", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\nhello" + smuggled, []int{400}},
		{"CL with plus sign", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello" + smuggled, []int{400}},
		{"CL hex", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0x5\r\n\r\nhello" + smuggled, []int{400}},
		{"space before colon", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n" + smuggled, []int{400}},
		{"oversized request line", "GET /" + strings.Repeat("a", 8<<10) + " HTTP/1.1\r\nHost: x\r\n\r\n", []int{414, 431}},
		{"oversized header block", "GET /a HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("b", 8<<10) + "\r\n\r\n", []int{431}},
		{"too many headers", "GET /a HTTP/1.1\r\nHost: x\r\n" + manyHeaders + "\r\n", []int{431}},
		{"body over limit by CL", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2048\r\n\r\n" + strings.Repeat("c", 2048), []int{413}},
		{"body over limit chunked", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n" + strings.Repeat("c", 2048) + "\r\n0\r\n\r\n", []int{413}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(up.requests())
			r := hardExchange(t, g.Addr(), tc.raw, 300*time.Millisecond)
			if r.err != nil {
				t.Fatalf("no response: %v", r.err)
			}
			ok := false
			for _, c := range tc.codes {
				ok = ok || r.status == c
			}
			if !ok {
				t.Errorf("status %d (body %q), want one of %v", r.status, r.body, tc.codes)
			}
			if !oneLine(r.body) {
				t.Errorf("body %q is not a one-line reason", r.body)
			}
			if strings.Contains(r.rest, "HTTP/1.1") {
				t.Errorf("a second response followed on the connection: %q", r.rest)
			}
			if got := up.requests()[before:]; len(got) != 0 {
				t.Errorf("the upstream received refused traffic: %v", got)
			}
		})
	}

	// obs-fold (RFC 9112 §5.2): a gateway either refuses it with 400 or
	// replaces each fold with spaces before interpreting or forwarding the
	// field. Either way a folded line must never act as a field of its
	// own (here: a Transfer-Encoding hidden in a fold).
	for _, tc := range []struct {
		name, raw, field, want string
		bodyLen                int
	}{
		{"obs-fold", "GET /fold HTTP/1.1\r\nHost: x\r\nX-Folded: one\r\n two\r\nConnection: close\r\n\r\n", "X-Folded", "one two", 0},
		{"obs-fold hiding TE", "POST /fold HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nX-Pad: a\r\n Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n", "X-Pad", "a Transfer-Encoding: chunked", 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(up.requests())
			r := hardExchange(t, g.Addr(), tc.raw, 300*time.Millisecond)
			if r.err != nil {
				t.Fatalf("no response: %v", r.err)
			}
			got := up.requests()[before:]
			switch r.status {
			case 400:
				if !oneLine(r.body) || len(got) != 0 {
					t.Errorf("refused with body %q; upstream saw %v", r.body, got)
				}
			case 200:
				if len(got) != 1 || got[0] != fmt.Sprintf("%s /fold %d", strings.Fields(tc.raw)[0], tc.bodyLen) {
					t.Fatalf("upstream saw %v", got)
				}
				h := up.header(before)
				v := strings.Join(strings.Fields(h.Get(tc.field)), " ")
				if v != tc.want || h.Get("Transfer-Encoding") != "" {
					t.Errorf("forwarded %s %q, Transfer-Encoding %q; want the fold replaced by spaces (%q) and no TE",
						tc.field, h.Get(tc.field), h.Get("Transfer-Encoding"), tc.want)
				}
			default:
				t.Errorf("status %d %q, want 400 or the fold replaced", r.status, r.body)
			}
		})
	}

	// The same gateway still serves well-formed requests, chunked included.
	for _, raw := range []string{
		"GET /fine HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
		"POST /fine HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
		"POST /fine HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"GET /fine HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + fewHeaders + "\r\n",
	} {
		if r := hardExchange(t, g.Addr(), raw, time.Second); r.status != 200 || r.body != "upstream ok" {
			t.Errorf("well-formed request %q: %d %q %v", raw[:20], r.status, r.body, r.err)
		}
	}
	for _, req := range up.requests() {
		if strings.Contains(req, "smuggled") {
			t.Errorf("a smuggled request reached the upstream: %s", req)
		}
	}
}

// TestHardeningSlowloris dribbles header bytes on several connections, each
// byte well within the timeout but the whole block slower than
// read_header_timeout, while an ordinary client keeps being served.
func TestHardeningSlowloris(t *testing.T) {
	hardLeakCheck(t)
	const timeout = 400 * time.Millisecond
	up := startHardUpstream(t)
	g := startHardGateway(t, up.addr, fmt.Sprintf("read_header_timeout: %s, idle_timeout: 10s", timeout))

	const attackers = 8
	type result struct {
		after time.Duration
		reply string
	}
	results := make(chan result, attackers)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range attackers {
		// The gateway's clock starts when it accepts, after this.
		start := time.Now()
		c, err := net.Dial("tcp", g.Addr())
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			defer c.Close()
			io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: x\r\n")
			readDone := make(chan string, 1)
			go func() {
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				b, _ := io.ReadAll(c)
				readDone <- string(b)
			}()
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case reply := <-readDone:
					results <- result{time.Since(start), reply}
					return
				case <-tick.C:
					io.WriteString(c, "X") // one header-name byte at a time
				case <-stop:
					c.Close()
					<-readDone
					results <- result{-1, ""}
					return
				}
			}
		})
	}

	// Ordinary requests go through while the attack runs.
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	for i := range 5 {
		resp, err := client.Get("http://" + g.Addr() + "/during")
		if err != nil {
			t.Fatalf("ordinary request %d during slowloris: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "upstream ok" {
			t.Fatalf("ordinary request %d: %d %q", i, resp.StatusCode, b)
		}
		time.Sleep(50 * time.Millisecond)
	}

	timer := time.AfterFunc(5*time.Second, func() { close(stop) })
	wg.Wait()
	timer.Stop()
	close(results)
	for r := range results {
		if r.after < 0 {
			t.Error("slowloris connection still open after 5s")
			continue
		}
		if r.after < timeout || r.after > timeout+2*time.Second {
			t.Errorf("slowloris connection closed after %v, want about %v", r.after, timeout)
		}
		if r.reply != "" {
			// A reply is optional; if there is one it is a clean refusal.
			resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(r.reply)), nil)
			if err != nil {
				t.Errorf("unparsable reply %q", r.reply)
				continue
			}
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusRequestTimeout || !oneLine(string(b)) {
				t.Errorf("reply %d %q, want 408 with a one-line reason", resp.StatusCode, b)
			}
		}
	}
	for _, req := range up.requests() {
		if strings.Contains(req, "/slow") {
			t.Errorf("the upstream received a slowloris request: %s", req)
		}
	}
}

func TestHardeningIdleKeepAlive(t *testing.T) {
	hardLeakCheck(t)
	const idle = 300 * time.Millisecond
	up := startHardUpstream(t)
	g := startHardGateway(t, up.addr, fmt.Sprintf("idle_timeout: %s, read_header_timeout: 5s", idle))

	c, err := net.Dial("tcp", g.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	// Two requests on one connection: keep-alive works, and the idle
	// clock restarts after each response.
	for i := range 2 {
		io.WriteString(c, "GET /ka HTTP/1.1\r\nHost: x\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Close {
			t.Fatalf("request %d: status %d, close %v", i, resp.StatusCode, resp.Close)
		}
		time.Sleep(idle / 3)
	}
	idleFrom := time.Now()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := br.Read(make([]byte, 1))
	waited := time.Since(idleFrom)
	if n != 0 || err == nil {
		t.Fatalf("read %d bytes from an idle connection", n)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("idle keep-alive connection still open after %v", waited)
	}
	if waited < idle-idle/3-50*time.Millisecond || waited > idle+2*time.Second {
		t.Errorf("idle connection closed after %v, want about %v", waited, idle)
	}
}

func TestHardeningConnLimits(t *testing.T) {
	for _, tc := range []struct {
		name, limits string
		code         int
	}{
		{"max_conns_per_ip", "max_conns_per_ip: 3", http.StatusTooManyRequests},
		{"max_conns", "max_conns: 3", http.StatusServiceUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hardLeakCheck(t)
			up := startHardUpstream(t)
			g := startHardGateway(t, up.addr, tc.limits+", read_header_timeout: 5s, idle_timeout: 10s")
			hardConnLimit(t, g, up, tc.code)
		})
	}
}

// hardConnLimit holds three keep-alive connections, expects a fourth to be
// refused with code and a one-line reason, then a slot to free up when one
// held connection closes.
func hardConnLimit(t *testing.T, g *gateway.Gateway, up *hardUpstream, code int) {
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	// Each held connection completes a request, so the gateway has
	// certainly accepted and counted it.
	for i := range 3 {
		c, err := net.Dial("tcp", g.Addr())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		io.WriteString(c, "GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("held connection %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("held connection %d: status %d", i, resp.StatusCode)
		}
	}
	before := len(up.requests())
	r := hardExchange(t, g.Addr(), "GET /fourth HTTP/1.1\r\nHost: x\r\n\r\n", 300*time.Millisecond)
	if r.err != nil {
		t.Fatalf("fourth connection: no response: %v", r.err)
	}
	if r.status != code || !oneLine(r.body) {
		t.Errorf("fourth connection: %d %q, want %d with a one-line reason", r.status, r.body, code)
	}
	if got := up.requests()[before:]; len(got) != 0 {
		t.Errorf("upstream got %v from a connection over the limit", got)
	}

	held[0].Close()
	held = held[1:]
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := hardExchange(t, g.Addr(), "GET /again HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 100*time.Millisecond)
		if r.status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no slot freed 5s after closing a connection: %d %q %v", r.status, r.body, r.err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestHardeningSessionKeys: bad session ids and a full session table are
// refused with a status and a one-line reason; known sessions keep working.
func TestHardeningSessionKeys(t *testing.T) {
	hardLeakCheck(t)
	up := startHardUpstream(t)
	g := startHardGateway(t, up.addr, "read_header_timeout: 5s", "sessions: {max_sessions: 2}")
	req := func(method, id string) string {
		return method + " /s HTTP/1.1\r\nHost: x\r\nMcp-Session-Id: " + id + "\r\nConnection: close\r\n\r\n"
	}
	for _, tc := range []struct {
		name, raw string
		code      int
	}{
		{"first session", req("GET", "s-1"), 200},
		{"second session", req("GET", "s-2"), 200},
		{"table full", req("GET", "s-3"), 503},
		{"known session on a full table", req("GET", "s-1"), 200},
		{"id with a control byte", req("GET", "s\x01x"), 400},
		{"id over the length limit", req("GET", strings.Repeat("i", 2048)), 400},
		{"DELETE ends s-2", req("DELETE", "s-2"), 200},
		{"a slot is free again", req("GET", "s-3"), 200},
	} {
		before := len(up.requests())
		r := hardExchange(t, g.Addr(), tc.raw, time.Second)
		if r.err != nil {
			t.Fatalf("%s: no response: %v", tc.name, r.err)
		}
		if r.status != tc.code {
			t.Errorf("%s: %d %q, want %d", tc.name, r.status, r.body, tc.code)
		}
		if tc.code != 200 && (!oneLine(r.body) || len(up.requests()) != before) {
			t.Errorf("%s: body %q, upstream requests %d -> %d; want a one-line reason and nothing upstream",
				tc.name, r.body, before, len(up.requests()))
		}
	}
	tbl := g.Sessions()
	for id, want := range map[string]bool{"s-1": true, "s-2": false, "s-3": true} {
		if _, ok := tbl.Get(id); ok != want {
			t.Errorf("session %s in table: %v, want %v", id, ok, want)
		}
	}
}

// TestHardeningClientBodyErrors: a request body the client botches (bad
// chunk framing, or over max_body_bytes while streaming) is the client's
// fault. It gets 400 or 413 with a one-line reason, and it must not count
// against the upstream target: otherwise one client ejects a healthy
// target (passive health) and every other client gets 503.
func TestHardeningClientBodyErrors(t *testing.T) {
	post := "POST /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
	for _, tc := range []struct {
		name, body string
		code       int
	}{
		{"chunk size not hex", "zz\r\nhello\r\n0\r\n\r\n", 400},
		{"chunk size with 0x", "0x5\r\nhello\r\n0\r\n\r\n", 400},
		{"chunk longer than its size", "3\r\nhello\r\n0\r\n\r\n", 400},
		{"bad chunk after a good one", "5\r\nhello\r\nzz\r\nworld\r\n0\r\n\r\n", 400},
		{"chunked body over the limit", "800\r\n" + strings.Repeat("c", 2048) + "\r\n0\r\n\r\n", 413},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hardLeakCheck(t)
			up := startHardUpstream(t)
			g := startHardGateway(t, up.addr, "max_body_bytes: 1KiB, read_header_timeout: 5s")
			// More than passive_health.max_failures (5) in a row.
			var got []string
			bad := false
			for i := range 6 {
				r := hardExchange(t, g.Addr(), post+tc.body, 100*time.Millisecond)
				if r.err != nil {
					t.Fatalf("attempt %d: no response: %v", i, r.err)
				}
				got = append(got, fmt.Sprintf("%d %q", r.status, r.body))
				bad = bad || r.status != tc.code || !oneLine(r.body)
			}
			if bad {
				t.Errorf("answers %v, want %d with a one-line reason each time", got, tc.code)
			}
			r := hardExchange(t, g.Addr(), "GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 100*time.Millisecond)
			if r.status != 200 {
				t.Fatalf("well-formed request after the bad bodies: %d %q (the client's errors ejected the upstream target)", r.status, r.body)
			}
		})
	}
}
