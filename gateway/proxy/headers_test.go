package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/wasmgate/wasmgate/gateway/upstream"
)

// browserRequest is a typical browser request header block.
const browserRequest = "GET /api/v1/items?id=42&sort=desc HTTP/1.1\r\nHost: example.test\r\n" +
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n" +
	"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n" +
	"Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n" +
	"Cookie: session=abcdef0123456789; theme=dark\r\nSec-Fetch-Mode: navigate\r\n\r\n"

// BenchmarkRequestRewrite prices turning a client request into the
// upstream request and serializing it: a copy of the header edited and
// written ("copy", what a route with plugins does), or the client's own
// request edited in place ("in-place", the plain route), its forwarding
// fields set on the header or ("in-place-lines", what a plain route does)
// written as lines after it. All parse the request again each time, so the
// differences are the copy and the Sets.
func BenchmarkRequestRewrite(b *testing.B) {
	p := &Proxy{ids: newRequestIDs(), clientIPs: new(clientIPs)}
	for _, mode := range []string{"copy", "in-place", "in-place-lines"} {
		b.Run(mode, func(b *testing.B) {
			var ctx fasthttp.RequestCtx
			ctx.Init(&fasthttp.Request{}, &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 4000}, nil)
			var out fasthttp.Request
			x := &exchange{p: p}
			raw := []byte(browserRequest)
			r := bytes.NewReader(raw)
			br := bufio.NewReader(r)
			bw := bufio.NewWriter(io.Discard)
			b.ReportAllocs()
			for b.Loop() {
				r.Reset(raw)
				br.Reset(r)
				ctx.Request.Reset()
				if err := ctx.Request.Read(br); err != nil {
					b.Fatal(err)
				}
				req := &ctx.Request
				if mode == "copy" {
					req.Header.CopyTo(&out.Header)
					req = &out
				}
				x.reqSeen, _ = scanRequest(&ctx.Request.Header)
				x.prepareRequest(&ctx, &req.Header)
				if mode != "copy" {
					req.SetRequestURIBytes(req.Header.RequestURI())
				}
				var err error
				if mode == "in-place-lines" {
					x.fwd = x.appendForwarding(x.fwd[:0], &ctx)
					err = upstream.WriteWithFields(bw, req, x.fwd)
				} else {
					x.setForwarding(&ctx, &req.Header)
					err = req.Write(bw)
				}
				if err != nil {
					b.Fatal(err)
				}
				bw.Reset(io.Discard)
			}
		})
	}
}

// TestScanRequest checks the raw-block scan against a scan of every field
// fasthttp parsed (All, the former implementation), for blocks with each
// field the rewrite cares about in odd case and spacing.
func TestScanRequest(t *testing.T) {
	blocks := []string{
		"",
		"Accept: */*\r\n",
		"connection: X-A\r\nX-A: 1\r\n",
		"Connection: close\r\n",
		"TE: trailers\r\nTrailer: X-T\r\n",
		"Transfer-Encoding: chunked\r\n",
		"Via: 1.0 edge\r\nx-forwarded-for: 10.0.0.1\r\nX-REQUEST-ID: abc\r\n",
		"Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nProxy-Authorization: Basic x\r\n",
		"Upgrade: websocket\r\nExpect: 100-continue\r\n",
		"Cookie: a=1;b=2\r\nCookie: c=3\r\nUser-Agent: x\r\nContent-Type: text/plain\r\n",
		"X-Connection: 1\r\nVia-X: 2\r\nX-Forwarded-Fort: 3\r\n",
	}
	for _, b := range blocks {
		var h fasthttp.RequestHeader
		raw := "POST / HTTP/1.1\r\nHost: x\r\n" + b + "\r\n"
		if err := h.Read(bufio.NewReader(bytes.NewReader([]byte(raw)))); err != nil {
			t.Fatalf("%q: %v", b, err)
		}
		var want int
		for k := range h.All() {
			want |= classify(k)
		}
		got, n := scanRequest(&h)
		if got != want {
			t.Errorf("%q: scan %b, fields %b", b, got, want)
		}
		if lines := strings.Count(b, "\n") + 1; n != lines {
			t.Errorf("%q: %d fields, want %d", b, n, lines)
		}
	}

	// A continuation line (obs-fold, joined by fasthttp) is no field of its
	// own for limits.max_headers, even with a colon in it.
	h := readRequestHeader(t, "GET / HTTP/1.1\r\nHost: x\r\nX-F: a\r\n b: c\r\n\td: e\r\n\r\n")
	if _, n := scanRequest(h); n != 2 {
		t.Errorf("folded block: %d fields, want 2", n)
	}
}

// TestForwardingLines checks that the gateway's fields written as lines
// after the client's header block (a plain route) reach the upstream as the
// same fields as when set on the header (recording, plugins, a streamed
// body), and that fwdLines allows lines only when no prior line needs
// replacing.
func TestForwardingLines(t *testing.T) {
	p := &Proxy{ids: newRequestIDs(), clientIPs: new(clientIPs)}
	for _, tc := range []struct {
		name, block string
		lines       bool
	}{
		{"plain", "Accept: */*\r\n", true},
		{"browser", browserRequest[strings.Index(browserRequest, "User-Agent:") : len(browserRequest)-2], true},
		{"request id kept", "X-Request-Id: abc-123\r\n", true},
		{"hop-by-hop", "Connection: X-A, keep-alive\r\nX-A: 1\r\nTE: trailers\r\n", true},
		{"empty request id", "X-Request-Id:\r\n", false},
		{"prior forwarded", "X-Forwarded-For: 10.0.0.1\r\n", false},
		{"prior via", "Via: 1.0 edge\r\nVia: 1.0 edge2\r\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := "POST /p?q=1 HTTP/1.1\r\nHost: example.test\r\n" + tc.block + "Content-Length: 2\r\n\r\nhi"
			send := func(lines bool) (*http.Request, *exchange) {
				var ctx fasthttp.RequestCtx
				ctx.Init(&fasthttp.Request{}, &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 4000}, nil)
				if err := ctx.Request.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
					t.Fatal(err)
				}
				x := &exchange{p: p}
				req := &ctx.Request
				x.reqSeen, _ = scanRequest(&req.Header)
				x.prepareRequest(&ctx, &req.Header)
				req.SetRequestURIBytes(req.Header.RequestURI())
				var buf bytes.Buffer
				bw := bufio.NewWriter(&buf)
				var err error
				if lines {
					x.fwd = x.appendForwarding(nil, &ctx)
					err = upstream.WriteWithFields(bw, req, x.fwd)
				} else {
					x.setForwarding(&ctx, &req.Header)
					err = req.Write(bw)
				}
				if err != nil {
					t.Fatal(err)
				}
				bw.Flush()
				r, err := http.ReadRequest(bufio.NewReader(&buf))
				if err != nil {
					t.Fatalf("upstream cannot read %q: %v", buf.String(), err)
				}
				return r, x
			}
			set, x := send(false)
			if x.fwdLines != tc.lines {
				t.Errorf("fwdLines %v, want %v", x.fwdLines, tc.lines)
			}
			if !tc.lines {
				return
			}
			lined, _ := send(true)
			// Request ids differ (each exchange takes a new one).
			if a, b := set.Header.Get("X-Request-Id"), lined.Header.Get("X-Request-Id"); len(a) != len(b) || a == "" {
				t.Errorf("X-Request-Id set %q, as a line %q", a, b)
			}
			set.Header.Del("X-Request-Id")
			lined.Header.Del("X-Request-Id")
			if fmt.Sprint(set.Header) != fmt.Sprint(lined.Header) || set.Host != lined.Host || set.RequestURI != lined.RequestURI {
				t.Errorf("fields set:\n%v\nas lines:\n%v", set.Header, lined.Header)
			}
			for _, k := range []string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Via"} {
				if len(lined.Header.Values(k)) != 1 {
					t.Errorf("%s: %q, want one line", k, lined.Header.Values(k))
				}
			}
			if b, _ := io.ReadAll(lined.Body); string(b) != "hi" {
				t.Errorf("body %q", b)
			}
		})
	}
}

// BenchmarkResponseRewrite prices taking an upstream response header into
// the client response: read into a response of its own and copied over
// ("copy", as the gateway did), or read straight into the client
// response's header ("direct"; a small body is then read by its length
// alone, see upstream.readFixedBody).
// Both then strip and add fields (prepareResponse) and serialize it.
func BenchmarkResponseRewrite(b *testing.B) {
	const upResp = "HTTP/1.1 200 OK\r\nServer: fasthttp\r\nDate: Fri, 27 Nov 2026 10:00:00 GMT\r\n" +
		"Content-Type: application/json\r\nContent-Length: 100\r\nCache-Control: no-store\r\nX-Trace: abc\r\n\r\n"
	p := &Proxy{ids: newRequestIDs(), clientIPs: new(clientIPs)}
	for _, mode := range []string{"copy", "direct"} {
		b.Run(mode, func(b *testing.B) {
			var client, resp fasthttp.Response
			client.Header.SetNoDefaultContentType(true)
			x := &exchange{p: p, reqID: []byte("0123456789abcdef0123456789abcdef")}
			raw := []byte(upResp)
			r := bytes.NewReader(raw)
			br := bufio.NewReader(r)
			b.ReportAllocs()
			for b.Loop() {
				r.Reset(raw)
				br.Reset(r)
				client.Header.Reset()
				resp.Reset()
				h := &resp.Header
				if mode == "direct" {
					h = &client.Header
				}
				if err := h.Read(br); err != nil {
					b.Fatal(err)
				}
				if mode == "copy" {
					resp.Header.CopyTo(&client.Header)
				}
				x.prepareResponse(&client.Header)
				_ = client.Header.Header()
			}
		})
	}
}
