package proxy_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wasmgate/wasmgate/gateway/config"
)

func TestHardeningRawTCP(t *testing.T) {
	verifyNone(t)
	hits := make(chan string, 100)
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		hits <- r.Method + " " + r.URL.Path + " " + fmt.Sprint(len(b))
		io.WriteString(w, "ok")
	}))
	g := startGateway(t, testConfig(t, []string{up.addr}, func(c *config.Config) {
		c.Limits.MaxHeaderBytes = 4 << 10
		c.Limits.MaxBodyBytes = 1 << 10
	}), nil, nil)

	big := strings.Repeat("a", 8<<10)
	for _, tc := range []struct {
		name, raw string
		code      int
		reason    string
	}{
		{"CL+TE smuggling", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n", 400, "both Content-Length and Transfer-Encoding"},
		{"TE+CL smuggling", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\ncontent-length: 4\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n", 400, "both Content-Length and Transfer-Encoding"},
		{"invalid CL", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4x\r\n\r\nabcd", 400, "malformed request"},
		{"duplicate CL", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcd", 400, "malformed request"},
		{"oversized header", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + big + "\r\n\r\n", 431, "request header block too large"},
		{"body over limit (CL)", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2048\r\n\r\n" + strings.Repeat("b", 2048), 413, "request body too large"},
		{"TE identity", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\nContent-Length: 4\r\n\r\nabcd", 400, "unsupported Transfer-Encoding"},
		{"too many headers", "GET / HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-A: b\r\n", 150) + "\r\n", 431, "too many request header fields"},
		{"two TE fields", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "malformed request"},
		{"TE list", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 400, "malformed request"},
		{"TE on HTTP/1.0", "POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "malformed request"},
		{"TE value on a continuation line", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\nContent-Length: 4\r\n\r\nabcd", 400, "unsupported Transfer-Encoding"},
		{"signed CL", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +4\r\n\r\nabcd", 400, "malformed request"},
		{"CL list", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4, 4\r\n\r\nabcd", 400, "malformed request"},
		{"NUL in a value", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nX-A: a\x00b\r\n\r\nabcd", 400, "malformed request"},
		{"bad chunk size", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 400, "malformed request body"},
		{"body over limit (chunked)", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n" + strings.Repeat("b", 2048) + "\r\n0\r\n\r\n", 413, "request body too large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := rawRequest(t, g.addr, tc.raw, 5*time.Second)
			if statusOf(resp) != tc.code || !strings.Contains(resp, tc.reason) {
				t.Fatalf("got %q, want %d %q", resp, tc.code, tc.reason)
			}
			if strings.Count(resp, "HTTP/1.1 ") != 1 {
				t.Fatalf("more than one response (smuggled request served): %q", resp)
			}
		})
	}
	select {
	case h := <-hits:
		if strings.Contains(h, "smuggled") || strings.HasPrefix(h, "POST") {
			t.Fatalf("upstream saw a rejected request: %s", h)
		}
	default:
	}
	// A header block of exactly limits.max_header_bytes passes; one byte
	// more does not.
	const head = "GET /exact HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Pad: "
	exact := head + strings.Repeat("a", 4<<10-len(head)-len("\r\n\r\n")) + "\r\n\r\n"
	if resp := rawRequest(t, g.addr, exact, 5*time.Second); statusOf(resp) != 200 || <-hits != "GET /exact 0" {
		t.Fatalf("header block of max_header_bytes: %q", resp)
	}
	if resp := rawRequest(t, g.addr, head+"a"+exact[len(head):], 5*time.Second); statusOf(resp) != 431 {
		t.Fatalf("header block of max_header_bytes+1: %q", resp)
	}
	// Expect: 100-continue is answered by the gateway, then the body flows.
	resp0 := rawRequest(t, g.addr, "POST /ok HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\nhello", 5*time.Second)
	if !strings.Contains(resp0, "200 OK") || <-hits != "POST /ok 5" {
		t.Fatalf("expect-continue: %q", resp0)
	}
	// Chunked within the limit passes.
	resp := rawRequest(t, g.addr, "POST /ok HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 5*time.Second)
	if statusOf(resp) != 200 || <-hits != "POST /ok 5" {
		t.Fatalf("chunked body: %q", resp)
	}
}

func TestSlowloris(t *testing.T) {
	verifyNone(t)
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	timeout := 300 * time.Millisecond
	g := startGateway(t, testConfig(t, []string{up.addr}, func(c *config.Config) {
		c.Limits.ReadHeaderTimeout = config.Duration(timeout)
	}), nil, nil)

	// The server arms its header deadline when it accepts, which may be
	// before Dial returns here: the clock starts before the dial.
	start := time.Now()
	c, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n")
	// Trickle a header byte every 50ms: each write is progress, but the
	// header block never completes.
	closed := make(chan time.Duration, 1)
	go func() {
		b := make([]byte, 512)
		for {
			if _, err := c.Read(b); err != nil {
				closed <- time.Since(start)
				return
			}
		}
	}()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case d := <-closed:
			if d < timeout || d > timeout+2*time.Second {
				t.Fatalf("connection closed after %v, want about %v", d, timeout)
			}
			return
		case <-tick.C:
			io.WriteString(c, "X")
		case <-time.After(5 * time.Second):
			t.Fatal("slowloris connection still open after 5s")
		}
	}
}

func TestMaxConnsPerIP(t *testing.T) {
	verifyNone(t)
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	g := startGateway(t, testConfig(t, []string{up.addr}, func(c *config.Config) {
		c.Limits.MaxConnsPerIP = 2
	}), nil, nil)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", g.addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	time.Sleep(50 * time.Millisecond)
	resp := rawRequest(t, g.addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 3*time.Second)
	if statusOf(resp) != 429 {
		t.Fatalf("third connection from one IP: %q", resp)
	}
}

// TestClientReadLimits checks limits.read_header_timeout and
// limits.idle_timeout on keep-alive connections: a second request whose
// header trickles in, an idle connection, a busy one that outlives the idle
// timeout, and a first request's header deadline that ends after the idle
// one would.
func TestClientReadLimits(t *testing.T) {
	for _, tc := range []struct{ header, idle time.Duration }{
		{300 * time.Millisecond, 600 * time.Millisecond},
		{2500 * time.Millisecond, 200 * time.Millisecond},
	} {
		header, idle := tc.header, tc.idle
		t.Run(fmt.Sprintf("header=%v/idle=%v", header, idle), func(t *testing.T) {
			verifyNone(t)
			up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
			g := startGateway(t, testConfig(t, []string{up.addr}, func(c *config.Config) {
				c.Limits.ReadHeaderTimeout = config.Duration(header)
				c.Limits.IdleTimeout = config.Duration(idle)
			}), nil, nil)

			// dial opens a connection and serves one whole request on it.
			dial := func(t *testing.T) (net.Conn, *bufio.Reader) {
				c := dialGateway(t, g.addr, 10*time.Second)
				br := bufio.NewReader(c)
				get(t, c, br, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
				return c, br
			}
			// closedWithin waits for the server to close c and checks when.
			// The server's deadline starts when it has written the last
			// response, before this side reads it, so a close can come a
			// little before lo as measured here: a quarter of lo is allowed.
			closedWithin := func(t *testing.T, br *bufio.Reader, start time.Time, lo, hi time.Duration, trickle net.Conn) {
				lo -= lo / 4
				closed := make(chan time.Duration, 1)
				go func() {
					_, _ = io.Copy(io.Discard, br)
					closed <- time.Since(start)
				}()
				tick := time.NewTicker(50 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case d := <-closed:
						if d < lo || d > hi {
							t.Fatalf("closed after %v, want %v to %v", d, lo, hi)
						}
						return
					case <-tick.C:
						if trickle != nil {
							io.WriteString(trickle, "X")
						}
					}
				}
			}

			t.Run("keep-alive slowloris", func(t *testing.T) {
				c, br := dial(t)
				start := time.Now()
				io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n")
				closedWithin(t, br, start, header, header+2*time.Second, c)
			})
			t.Run("idle", func(t *testing.T) {
				_, br := dial(t)
				closedWithin(t, br, time.Now(), idle, idle+idle/4+time.Second, nil)
			})
			t.Run("busy outlives idle", func(t *testing.T) {
				c, br := dial(t)
				for end := time.Now().Add(2 * idle); time.Now().Before(end); {
					time.Sleep(idle / 5)
					// A header block in two reads.
					io.WriteString(c, "GET / HTTP/1.1\r\n")
					time.Sleep(20 * time.Millisecond)
					get(t, c, br, "Host: x\r\n\r\n")
				}
				closedWithin(t, br, time.Now(), idle, idle+idle/4+time.Second, nil)
			})
		})
	}
}

// get sends raw on c, checks the response is a 200 "ok" and returns it.
func get(t *testing.T, c net.Conn, br *bufio.Reader, raw string) *http.Response {
	t.Helper()
	resp, b := send200(t, c, br, raw)
	if string(b) != "ok" {
		t.Fatalf("%q: body %q, want ok", raw, b)
	}
	return resp
}

// send200 sends raw on c, reads the response from br and fails unless it
// is a 200; it returns the response and its body.
func send200(t *testing.T, c net.Conn, br *bufio.Reader, raw string) (*http.Response, []byte) {
	t.Helper()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("%q: status %d %q", raw, resp.StatusCode, b)
	}
	return resp, b
}

// TestSlowBodyNotHeaderTimeout: limits.read_header_timeout bounds the
// header block only. A request body (the bytes fasthttp reads before the
// handler runs: up to 8 KiB, or after a 100 Continue) is under the body
// deadline (limits.idle_timeout), so a body that starts after the header
// limit has passed is still accepted.
func TestSlowBodyNotHeaderTimeout(t *testing.T) {
	verifyNone(t)
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(w, r.Body)
	}))
	header := 200 * time.Millisecond
	g := startGateway(t, testConfig(t, []string{up.addr}, func(c *config.Config) {
		c.Limits.ReadHeaderTimeout = config.Duration(header)
		c.Limits.IdleTimeout = config.Duration(2 * time.Second)
	}), nil, nil)
	for _, tc := range []struct{ name, head string }{
		{"content-length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n"},
		{"100-continue", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialGateway(t, g.addr, 10*time.Second)
			io.WriteString(c, tc.head)
			// The body comes well after the header limit (plus its sweep
			// slack) but long before the body deadline.
			time.Sleep(4 * header)
			io.WriteString(c, "ok")
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			for err == nil && resp.StatusCode == http.StatusContinue {
				resp, err = http.ReadResponse(br, nil)
			}
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || string(b) != "ok" {
				t.Fatalf("status %d, body %q; want 200 ok", resp.StatusCode, b)
			}
		})
	}
	// A body that never comes is still cut, by the body deadline.
	start := time.Now()
	resp := rawRequest(t, g.addr, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n", 10*time.Second)
	if d := time.Since(start); statusOf(resp) != 408 || d < 2*time.Second || d > 5*time.Second {
		t.Fatalf("body never sent: %q after %v, want a 408 after about 2s", resp, d)
	}
}

// TestBodyIdleIsSilence: limits.idle_timeout bounds a streamed request
// body's silences, not its length. A body trickled in slices, each gap well
// under the limit, all of them well over it, is forwarded whole (with a
// length or chunked, through the in-place and the plugin route); a body that
// stops for longer than the limit gets a 408 and the connection closed.
func TestBodyIdleIsSilence(t *testing.T) {
	verifyNone(t)
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			w.WriteHeader(http.StatusBadGateway)
		}
		fmt.Fprintf(w, "%d", n)
	}))
	const idle = 400 * time.Millisecond
	const slices, size = 10, 4 << 10
	slice := strings.Repeat("b", size)
	for path, g := range conformGateways(t, up.addr, func(c *config.Config) {
		c.Limits.ReadHeaderTimeout = config.Duration(200 * time.Millisecond)
		c.Limits.IdleTimeout = config.Duration(idle)
	}) {
		for _, chunked := range []bool{false, true} {
			head, frame := fmt.Sprintf("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", slices*size), func(s string) string { return s }
			if chunked {
				head = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
				frame = func(s string) string { return fmt.Sprintf("%x\r\n%s\r\n", len(s), s) }
			}
			t.Run(fmt.Sprintf("%s chunked=%v", path, chunked), func(t *testing.T) {
				// send writes the header, then n slices idle/gap apart,
				// and the end of a chunked body once all are sent.
				send := func(c net.Conn, n int, gap time.Duration) {
					io.WriteString(c, head)
					for i := range n {
						if i > 0 {
							time.Sleep(gap)
						}
						if _, err := io.WriteString(c, frame(slice)); err != nil {
							return
						}
					}
					if chunked && n == slices {
						io.WriteString(c, "0\r\n\r\n")
					}
				}
				dial := func() net.Conn {
					c := dialGateway(t, g.addr, 20*time.Second)
					return c
				}

				c := dial()
				start := time.Now()
				go send(c, slices, idle*3/8)
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				if d := time.Since(start); resp.StatusCode != 200 || string(b) != fmt.Sprint(slices*size) || d < 2*idle {
					t.Fatalf("trickled body: status %d %q after %v, want 200 %d after more than %v", resp.StatusCode, b, d, slices*size, 2*idle)
				}

				// Three slices, then silence.
				c = dial()
				send(c, 3, 0)
				raw, _ := io.ReadAll(c)
				if statusOf(string(raw)) != 408 || !strings.Contains(string(raw), "request body not received in time") || !strings.Contains(string(raw), "Connection: close") {
					t.Fatalf("body stopped: got %q, want a 408 and the connection closed", raw)
				}
			})
		}
	}
}

// TestBodyIdleUpstreamStall: limits.idle_timeout bounds the client's
// silences in a streamed request body, not the time the gateway spends
// blocked writing that body to an upstream that is slow to read it. A
// client that sent its whole body at once must not get 408 "request body
// not received in time" because the upstream paused for longer than the
// limit before reading: once a read deadline has passed, the next read
// fails even with bytes waiting.
func TestBodyIdleUpstreamStall(t *testing.T) {
	verifyNone(t)
	const idle = 200 * time.Millisecond
	const size = 16 << 20
	// A small receive buffer, set before the handshake: the gateway's
	// writes block while the upstream is busy, instead of the kernel
	// absorbing the whole body.
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 64<<10)
		})
		return errors.Join(err, serr)
	}}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveRaw(t, ln, func(c net.Conn) { serveStalled(c, 3*idle) })
	g := startGateway(t, testConfig(t, []string{ln.Addr().String()}, func(c *config.Config) {
		c.Limits.IdleTimeout = config.Duration(idle)
		c.Limits.MaxBodyBytes = 64 << 20
		// fasthttp's read buffer (this size) smaller than what the
		// upstream writer asks for: the body's reads bypass it, so the
		// read after the pause meets the socket (with a larger buffer it
		// does in some requests, depending on where the pause falls).
		c.Limits.MaxHeaderBytes = 1 << 10
	}), nil, nil)
	c := dialGateway(t, g.addr, 20*time.Second)
	go func() {
		fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", size)
		_, _ = c.Write(make([]byte, size))
	}()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != fmt.Sprint(size) {
		t.Fatalf("a client that sent its whole body at once got %d %q, want 200 %d", resp.StatusCode, b, size)
	}
}

// serveStalled answers one request on c: busy for stall after its header,
// then reads the body and answers with its length.
func serveStalled(c net.Conn, stall time.Duration) {
	req, err := http.ReadRequest(bufio.NewReader(c))
	if err != nil {
		return
	}
	time.Sleep(stall)
	n, _ := io.Copy(io.Discard, req.Body)
	body := fmt.Sprint(n)
	fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
}

// TestBodyIdleZeroFallsBack: with limits.idle_timeout 0 a streamed request
// body's silences are bounded by limits.read_header_timeout, as the idle
// wait between requests is: a body that stops after fasthttp's pre-read
// gets 408, it is not held open for ever.
func TestBodyIdleZeroFallsBack(t *testing.T) {
	verifyNone(t)
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	g := startGateway(t, testConfig(t, []string{up.addr}, func(c *config.Config) {
		c.Limits.ReadHeaderTimeout = config.Duration(200 * time.Millisecond)
		c.Limits.IdleTimeout = 0
	}), nil, nil)
	start := time.Now()
	resp := rawRequest(t, g.addr, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 102400\r\n\r\n"+strings.Repeat("a", 9000), 5*time.Second)
	if d := time.Since(start); statusOf(resp) != 408 || d > 3*time.Second {
		t.Fatalf("body stopped after 9000 of 102400 bytes: %q after %v, want a 408 after about 200ms", resp, d)
	}
}
