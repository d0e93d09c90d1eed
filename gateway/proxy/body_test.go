package proxy_test

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmgate/wasmgate/gateway/config"
)

// patternReader yields n deterministic bytes without holding them.
type patternReader struct{ off, n int64 }

func (r *patternReader) Read(b []byte) (int, error) {
	if r.off >= r.n {
		return 0, io.EOF
	}
	if rem := r.n - r.off; int64(len(b)) > rem {
		b = b[:rem]
	}
	for i := range b {
		b[i] = byte((r.off + int64(i)) * 7 % 251)
	}
	r.off += int64(len(b))
	return len(b), nil
}

func TestLargeBodiesStreamBothWays(t *testing.T) {
	verifyNone(t)
	const size = 50 << 20
	want := sha256.New()
	io.Copy(want, &patternReader{n: size})
	wantSum := fmt.Sprintf("%x", want.Sum(nil))

	var upSum atomic.Value
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "PUT" {
			h := sha256.New()
			n, err := io.Copy(h, r.Body)
			upSum.Store(fmt.Sprintf("%d %x %v", n, h.Sum(nil), err))
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(size))
		io.Copy(w, &patternReader{n: size})
	}))
	g := startGateway(t, testConfig(t, []string{up.addr}, func(c *config.Config) {
		c.Limits.MaxBodyBytes = 64 << 20
	}), nil, nil)
	c := newClient(t)

	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	go func() {
		defer close(sampled)
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()

	// Upload: chunked (unknown length) and with Content-Length.
	for _, chunked := range []bool{true, false} {
		var body io.Reader = &patternReader{n: size}
		req, _ := http.NewRequest("PUT", "http://"+g.addr+"/up", body)
		if !chunked {
			req.ContentLength = size
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("upload (chunked=%v): status %d", chunked, resp.StatusCode)
		}
		if got := upSum.Load(); got != fmt.Sprintf("%d %s <nil>", size, wantSum) {
			t.Fatalf("upload (chunked=%v): upstream got %v", chunked, got)
		}
	}
	// Download.
	resp, err := c.Get("http://" + g.addr + "/down")
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	resp.Body.Close()
	if err != nil || n != size || fmt.Sprintf("%x", h.Sum(nil)) != wantSum {
		t.Fatalf("download: %d bytes, err %v", n, err)
	}
	close(stop)
	<-sampled
	// The test process holds client, gateway and upstream; all of them
	// stream, so the heap must stay far below the body size.
	grew := int64(peak.Load()) - int64(base.HeapInuse)
	t.Logf("3 × 50 MiB through the gateway; heap in use grew by at most %d KiB", grew>>10)
	if grew > 8<<20 {
		t.Fatalf("heap grew by %d MiB while streaming 50 MiB bodies", grew>>20)
	}
}

// TestHTTP10Upstream: an upstream answering in HTTP/1.0 (no keep-alive,
// a body until close or of a known length) is relayed as the gateway's
// own HTTP/1.1 response: an HTTP/1.1 status line, the body framed for the
// client (chunked when its length is unknown), the client connection kept.
func TestHTTP10Upstream(t *testing.T) {
	verifyNone(t)
	addr, _ := startRawUpstream(t, func(c net.Conn) {
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		switch req.URL.Path {
		case "/close":
			io.WriteString(c, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close")
		case "/sse":
			io.WriteString(c, "HTTP/1.0 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: a\n\n")
		default:
			io.WriteString(c, "HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello")
		}
	})
	g := startGateway(t, testConfig(t, []string{addr}, nil), nil, nil)
	c := dialGateway(t, g.addr, 5*time.Second)
	br := bufio.NewReader(c)
	for _, tc := range []struct{ path, body string }{
		{"/close", "until close"},
		{"/length", "hello"},
		{"/close", "until close"},
		{"/sse", "data: a\n\n"}, // last: the event stream ends the connection
	} {
		if _, err := io.WriteString(c, "GET "+tc.path+" HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n"); err != nil {
			t.Fatalf("%s: %v", tc.path, err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.path, err)
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil || string(b) != tc.body || resp.Proto != "HTTP/1.1" || resp.Close != (tc.path == "/sse") {
			t.Fatalf("%s: %s close=%v body %q (%v), want HTTP/1.1 keep-alive %q", tc.path, resp.Proto, resp.Close, b, err, tc.body)
		}
	}
}

// TestHTTP10ClientNotChunked: an HTTP/1.0 client cannot read chunked
// framing (RFC 9112 §6.1: a server MUST NOT send Transfer-Encoding to it). A
// body of unknown length (chunked or until close upstream) reaches it as
// the raw bytes, ended by the close; the upstream connection of a chunked
// body is reused after it.
func TestHTTP10ClientNotChunked(t *testing.T) {
	verifyNone(t)
	body := strings.Repeat("z", 70<<10)
	addr, accepted := startRawUpstream(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if req.URL.Path == "/close" {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"+body)
				return
			}
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(body), body)
		}
	})
	g := startGateway(t, testConfig(t, []string{addr}, nil), nil, nil)
	for _, path := range []string{"/chunked", "/chunked", "/close"} {
		resp := rawRequest(t, g.addr, "GET "+path+" HTTP/1.0\r\nHost: x\r\n\r\n", 5*time.Second)
		head, got, _ := strings.Cut(resp, "\r\n\r\n")
		if strings.Contains(strings.ToLower(head), "transfer-encoding") || got != body {
			t.Fatalf("%s: HTTP/1.0 client got header %q and %d body bytes, want no Transfer-Encoding and the %d raw bytes", path, head, len(got), len(body))
		}
		// The gateway closes the client connection, then releases the
		// upstream one: give it that moment.
		time.Sleep(50 * time.Millisecond)
	}
	if n := accepted.Load(); n != 1 {
		t.Errorf("upstream accepted %d connections, want 1 (reused after each chunked body)", n)
	}
}

// startRawUpstream serves each connection accepted on a loopback port with
// handle (serveRaw); it returns the address and a count of the connections
// accepted.
func startRawUpstream(t *testing.T, handle func(c net.Conn)) (string, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln.Addr().String(), serveRaw(t, ln, handle)
}

// serveRaw serves each connection accepted on ln with handle, on its own
// goroutine, and closes it when handle returns; it closes ln when the test
// ends and returns a count of the connections accepted.
func serveRaw(t *testing.T, ln net.Listener, handle func(c net.Conn)) *atomic.Int32 {
	var wg sync.WaitGroup
	accepted := new(atomic.Int32)
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return accepted
}
