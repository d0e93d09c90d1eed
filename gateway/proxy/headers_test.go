package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
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
