package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// fieldBlock is a header block of random lines drawn from names, each
// value unique so that order shows, and the Connection options in it.
func fieldBlock(rng *rand.Rand, names []string, connValues []string) (block string, options []string) {
	var b strings.Builder
	for i := range 1 + rng.IntN(14) {
		name := names[rng.IntN(len(names))]
		value := fmt.Sprintf("v%d", i)
		if name == "Trailer" {
			value = []string{"X-A", "X-B, X-C"}[rng.IntN(2)]
		}
		if name == "Connection" {
			value = connValues[rng.IntN(len(connValues))]
			for opt := range strings.SplitSeq(value, ",") {
				options = append(options, strings.TrimSpace(opt))
			}
		}
		fmt.Fprintf(&b, "%s: %s\r\n", name, value)
	}
	return b.String(), options
}

// keptLines returns the lines of a header block (after its first line)
// whose name is not in skip, nor listed in options unless keep says so.
func keptLines(block string, skip map[string]bool, options []string) []string {
	var kept []string
	for _, line := range strings.Split(block, "\r\n") {
		name, _, ok := strings.Cut(line, ":")
		if !ok || skip[strings.ToLower(name)] {
			continue
		}
		listed := false
		for _, opt := range options {
			listed = listed || strings.EqualFold(opt, name) && !strings.EqualFold(name, "host")
		}
		if !listed {
			kept = append(kept, line)
		}
	}
	return kept
}

func lowerSet(names ...string) map[string]bool {
	m := make(map[string]bool)
	for _, n := range names {
		m[strings.ToLower(n)] = true
	}
	return m
}

// TestDropFieldsKeepOrder checks prepareRequest and prepareResponse against
// a plain filter of the lines sent, on random blocks: every line not removed
// reaches the other side, in the order sent. Fields fasthttp writes in
// fixed places, and the gateway's own, are left out of the comparison.
func TestDropFieldsKeepOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	p := &Proxy{ids: newRequestIDs(), clientIPs: new(clientIPs)}
	connValues := []string{"keep-alive", "close", "X-A", "x-b, keep-alive", "close, X-C", "Cookie", "Host"}

	reqNames := []string{"X-A", "X-A", "X-B", "X-C", "Accept", "Cookie", "User-Agent", "Content-Type",
		"Connection", "Keep-Alive", "Te", "Upgrade", "Expect", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-For", "Via", "Trailer"}
	// Removed whatever the Connection lines say, or written in fixed
	// places, or the gateway's.
	reqSkip := lowerSet("Connection", "Keep-Alive", "Te", "Upgrade", "Expect", "Trailer", "X-Forwarded-Host", "X-Forwarded-Proto",
		"X-Forwarded-For", "Via", "X-Request-Id", "Host", "User-Agent", "Content-Type", "Content-Length")
	for i := range 2000 {
		block, options := fieldBlock(rng, reqNames, connValues)
		for _, copied := range []bool{false, true} {
			var ctx fasthttp.RequestCtx
			ctx.Init(&fasthttp.Request{}, &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 4000}, nil)
			if err := ctx.Request.Header.Read(bufio.NewReader(strings.NewReader("GET /p HTTP/1.1\r\nHost: x\r\n" + block + "\r\n"))); err != nil {
				t.Fatalf("%q: %v", block, err)
			}
			h := &ctx.Request.Header
			if copied {
				h = new(fasthttp.RequestHeader)
				ctx.Request.Header.CopyTo(h)
			}
			x := &exchange{p: p}
			x.reqSeen, _ = scanRequest(&ctx.Request.Header)
			if err := x.prepareRequest(&ctx, h); err != nil {
				t.Fatalf("%q: %v", block, err)
			}
			x.setForwarding(&ctx, h)
			want := keptLines(block, reqSkip, options)
			got := keptLines(string(h.Header()), reqSkip, nil)
			if strings.Join(got, "|") != strings.Join(want, "|") {
				t.Fatalf("block %d (copy %v)\n%q\nforwarded as\n%q\nwant the lines\n%q", i, copied, block, h.Header(), want)
			}
			if string(h.Host()) != "x" || string(h.RequestURI()) != "/p" {
				t.Fatalf("block %q: host %q target %q", block, h.Host(), h.RequestURI())
			}
		}
	}

	respNames := []string{"X-A", "X-A", "X-B", "X-C", "Cache-Control", "Cache-Control", "Set-Cookie", "Date", "Server",
		"Content-Type", "Vary", "Connection", "Keep-Alive", "Upgrade", "Via", "Trailer"}
	respSkip := lowerSet("Connection", "Keep-Alive", "Upgrade", "Via", "X-Request-Id", "Trailer",
		"Date", "Server", "Content-Type", "Content-Length", "Set-Cookie")
	for i := range 2000 {
		block, options := fieldBlock(rng, respNames, connValues)
		var h fasthttp.ResponseHeader
		if err := h.Read(bufio.NewReader(strings.NewReader("HTTP/1.1 200 OK\r\n" + block + "Content-Length: 0\r\n\r\n"))); err != nil {
			t.Fatalf("%q: %v", block, err)
		}
		x := &exchange{p: p, reqID: []byte("id")}
		x.prepareResponse(&h)
		out := string(h.Header())
		want := keptLines(block, respSkip, options)
		got := keptLines(out, respSkip, nil)
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Fatalf("block %d\n%q\nforwarded as\n%q\nwant the lines\n%q", i, block, out, want)
		}
		cookies := lowerSet("set-cookie")
		only := func(s string) []string {
			var l []string
			for _, line := range strings.Split(s, "\r\n") {
				if name, _, _ := strings.Cut(line, ":"); cookies[strings.ToLower(name)] {
					l = append(l, line)
				}
			}
			return l
		}
		if g, w := only(out), only(block); strings.Join(g, "|") != strings.Join(w, "|") && !listedIn(options, "Set-Cookie") {
			t.Fatalf("block %q: Set-Cookie lines %q, want %q", block, g, w)
		}
	}
}

func listedIn(options []string, name string) bool {
	for _, o := range options {
		if strings.EqualFold(o, name) {
			return true
		}
	}
	return false
}

// A browser's request with Connection: keep-alive second, and an nginx-like
// response with Connection and Keep-Alive between other fields: both take
// the rebuilding path.
const (
	keepAliveRequest = "GET /api/v1/items?id=42 HTTP/1.1\r\nHost: example.test\r\nConnection: keep-alive\r\n" +
		"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n" +
		"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n" +
		"Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n" +
		"Cookie: session=abcdef0123456789; theme=dark\r\nSec-Fetch-Mode: navigate\r\n\r\n"
	keepAliveResponse = "HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Fri, 27 Nov 2026 10:00:00 GMT\r\n" +
		"Content-Type: application/json\r\nContent-Length: 100\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n" +
		"Cache-Control: no-store\r\nX-Trace: abc\r\nVary: Accept-Encoding\r\n\r\n"
)

// TestDropFieldsNoAllocs: removing fields in order costs no allocation per
// request once an exchange has served one, on either rebuilding path.
func TestDropFieldsNoAllocs(t *testing.T) {
	p := &Proxy{ids: newRequestIDs(), clientIPs: new(clientIPs)}
	var ctx fasthttp.RequestCtx
	ctx.Init(&fasthttp.Request{}, &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 4000}, nil)
	x := &exchange{p: p, reqID: []byte("id")}
	rawReq, rawResp := []byte(keepAliveRequest), []byte(keepAliveResponse)
	r := bytes.NewReader(nil)
	br := bufio.NewReader(r)
	var resp fasthttp.ResponseHeader
	run := func() {
		r.Reset(rawReq)
		br.Reset(r)
		if err := ctx.Request.Header.Read(br); err != nil {
			t.Fatal(err)
		}
		x.reqSeen, _ = scanRequest(&ctx.Request.Header)
		if err := x.prepareRequest(&ctx, &ctx.Request.Header); err != nil {
			t.Fatal(err)
		}
		r.Reset(rawResp)
		br.Reset(r)
		if err := resp.Read(br); err != nil {
			t.Fatal(err)
		}
		x.prepareResponse(&resp)
	}
	run()
	if !bytes.Contains(ctx.Request.Header.RawHeaders(), []byte("Accept: text/html")) ||
		bytes.Contains(ctx.Request.Header.RawHeaders(), []byte("Connection")) {
		t.Fatalf("request not rebuilt: %q", ctx.Request.Header.RawHeaders())
	}
	if n := testing.AllocsPerRun(100, run); n != 0 {
		t.Errorf("%v allocations per request", n)
	}
}

// BenchmarkDropFields prices removing the hop-by-hop fields of
// keepAliveRequest and keepAliveResponse: in order ("ordered", what the
// gateway does) or with fasthttp's DelBytes alone ("delete", which
// reorders; the former way), parse included in both.
func BenchmarkDropFields(b *testing.B) {
	p := &Proxy{ids: newRequestIDs(), clientIPs: new(clientIPs)}
	for _, mode := range []string{"delete", "ordered"} {
		b.Run(mode, func(b *testing.B) {
			var ctx fasthttp.RequestCtx
			ctx.Init(&fasthttp.Request{}, &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 4000}, nil)
			x := &exchange{p: p, reqID: []byte("id")}
			rawReq, rawResp := []byte(keepAliveRequest), []byte(keepAliveResponse)
			r := bytes.NewReader(nil)
			br := bufio.NewReader(r)
			var resp fasthttp.ResponseHeader
			b.ReportAllocs()
			for b.Loop() {
				r.Reset(rawReq)
				br.Reset(r)
				if err := ctx.Request.Header.Read(br); err != nil {
					b.Fatal(err)
				}
				r.Reset(rawResp)
				br.Reset(r)
				if err := resp.Read(br); err != nil {
					b.Fatal(err)
				}
				if mode == "delete" {
					ctx.Request.Header.DelBytes([]byte("Connection"))
					resp.DelBytes([]byte("Connection"))
					resp.DelBytes([]byte("Keep-Alive"))
					continue
				}
				d := dropSet{mask: seenHop}
				if err := x.dropRequestFields(&ctx.Request.Header, &d); err != nil {
					b.Fatal(err)
				}
				x.dropResponseFields(&resp, &d)
			}
		})
	}
}

// TestDropRequestFieldsForms: a request header read again without its
// hop-by-hop lines keeps its method, target and version as they stand
// (an absolute-form target already turned to origin-form, its authority the
// Host), a folded line, and a header without Host (HTTP/1.0).
func TestDropRequestFieldsForms(t *testing.T) {
	p := &Proxy{ids: newRequestIDs(), clientIPs: new(clientIPs)}
	for _, tc := range []struct {
		raw, want string
	}{
		{"GET http://a.example/p?q HTTP/1.1\r\nHost: other\r\nConnection: x-a\r\nX-A: 1\r\nX-B: 2\r\n\r\n",
			"GET /p?q HTTP/1.1\r\nHost: a.example\r\nX-B: 2\r\n"},
		{"GET /p HTTP/1.0\r\nConnection: keep-alive\r\nX-B: 2\r\n\r\n",
			"GET /p HTTP/1.0\r\nX-B: 2\r\n"},
		{"PATCH /p HTTP/1.1\r\nKeep-Alive: 5\r\nHost: h\r\nX-F: a\r\n b\r\nContent-Length: 2\r\n\r\n",
			"PATCH /p HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nX-F: a b\r\n"},
		{"GET /p HTTP/1.1\r\nHost: h\r\nConnection: host, x-b\r\nX-B: 1\r\nX-C: 2\r\n\r\n",
			"GET /p HTTP/1.1\r\nHost: h\r\nX-C: 2\r\n"},
	} {
		var ctx fasthttp.RequestCtx
		ctx.Init(&fasthttp.Request{}, &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 4000}, nil)
		h := &ctx.Request.Header
		if err := h.Read(bufio.NewReader(strings.NewReader(tc.raw))); err != nil {
			t.Fatalf("%q: %v", tc.raw, err)
		}
		x := &exchange{p: p}
		x.reqSeen, _ = scanRequest(h)
		toOriginForm(h, nil)
		if err := x.prepareRequest(&ctx, h); err != nil {
			t.Fatalf("%q: %v", tc.raw, err)
		}
		h.SetNoDefaultContentType(true)
		if got := string(h.Header()); got != tc.want+"\r\n" {
			t.Errorf("%q forwarded as\n%q\nwant\n%q", tc.raw, got, tc.want)
		}
	}
}
