package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
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
// request edited in place ("in-place", the plain route). Both parse the
// request again each time, so the difference is the copy.
func BenchmarkRequestRewrite(b *testing.B) {
	p := &Proxy{ids: newRequestIDs(), clientIPs: new(clientIPs)}
	for _, mode := range []string{"copy", "in-place"} {
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
				if mode == "in-place" {
					req.SetRequestURIBytes(req.Header.RequestURI())
				}
				if err := req.Write(bw); err != nil {
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
