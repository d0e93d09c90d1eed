package upstream

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// TestWriteWithFields checks that a request written with added fields is
// byte for byte what Request.Write writes, with the fields at the end of
// the header block.
func TestWriteWithFields(t *testing.T) {
	fields := []byte("X-Forwarded-For: 10.0.0.1\r\nVia: 1.1 wasmgate\r\n")
	for _, tc := range []struct{ name, raw string }{
		{"get", "GET /a?b=c HTTP/1.1\r\nHost: h\r\nX-One: 1\r\nCookie: a=1;b=2\r\n\r\n"},
		{"head", "HEAD / HTTP/1.1\r\nHost: h\r\n\r\n"},
		{"post", "POST /p HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"},
		{"post empty", "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"},
		{"get with body", "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi"},
		{"http/1.0", "GET / HTTP/1.0\r\nHost: h\r\nUser-Agent: u\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			read := func() *fasthttp.Request {
				req := new(fasthttp.Request)
				if err := req.Read(bufio.NewReader(strings.NewReader(tc.raw))); err != nil {
					t.Fatal(err)
				}
				req.SetRequestURIBytes(req.Header.RequestURI())
				return req
			}
			var plain, with bytes.Buffer
			bw := bufio.NewWriter(&plain)
			if err := read().Write(bw); err != nil {
				t.Fatal(err)
			}
			bw.Flush()
			bw = bufio.NewWriter(&with)
			if err := WriteWithFields(bw, read(), fields); err != nil {
				t.Fatal(err)
			}
			bw.Flush()
			end := bytes.Index(plain.Bytes(), []byte("\r\n\r\n")) + 2
			want := string(plain.Bytes()[:end]) + string(fields) + string(plain.Bytes()[end:])
			if with.String() != want {
				t.Errorf("wrote\n%q\nwant\n%q", with.String(), want)
			}
		})
	}
}

// TestStreamFields sends requests with added fields over loopback: the
// upstream sees them as fields of their own, and a request Stream cannot add
// fields to is refused before a connection is taken.
func TestStreamFields(t *testing.T) {
	verifyNone(t)
	addr := upstreamServer(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %q %q %q", r.Method, body, r.Header.Values("X-Forwarded-For"), r.Header.Values("Via"), r.Header.Values("X-One"))
	})
	p, _ := newPools(t, upCfg(addr))
	u, _ := p.Get("u")
	fields := []byte("X-Forwarded-For: 10.0.0.1\r\nVia: 1.1 wasmgate\r\n")
	for _, tc := range []struct{ method, body, want string }{
		{"GET", "", `GET  ["10.0.0.1"] ["1.1 wasmgate"] ["1"]`},
		{"POST", "hello", `POST hello ["10.0.0.1"] ["1.1 wasmgate"] ["1"]`},
		{"DELETE", "", `DELETE  ["10.0.0.1"] ["1.1 wasmgate"] ["1"]`},
	} {
		req := fasthttp.AcquireRequest()
		resp := fasthttp.AcquireResponse()
		req.SetRequestURI("/")
		req.Header.SetHost("x")
		req.Header.SetMethod(tc.method)
		req.Header.Set("X-One", "1")
		req.SetBodyString(tc.body)
		l, err := u.Stream(req, fields, nil, resp, false)
		if err != nil || l != nil {
			t.Fatalf("%s: lease %v, %v", tc.method, l, err)
		}
		if got := string(resp.Body()); resp.StatusCode() != 200 || got != tc.want {
			t.Errorf("%s: %d %s, want %s", tc.method, resp.StatusCode(), got, tc.want)
		}
		fasthttp.ReleaseRequest(req)
		fasthttp.ReleaseResponse(resp)
	}

	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("/")
	req.Header.SetHost("x")
	req.Header.SetMethod("POST")
	req.SetBodyStream(strings.NewReader("streamed"), -1)
	if _, err := u.Stream(req, fields, nil, resp, false); !errors.Is(err, errFieldsUnsupported) {
		t.Errorf("body stream with fields: %v, want errFieldsUnsupported", err)
	}
	req.SetBodyString("")
	req.Header.SetHost("")
	if _, err := u.Stream(req, fields, nil, resp, false); !errors.Is(err, errFieldsUnsupported) {
		t.Errorf("no Host field, with fields: %v, want errFieldsUnsupported", err)
	}
	for _, tg := range u.Targets() {
		if tg.inFlight.Load() != 0 {
			t.Errorf("%d in flight after all responses ended", tg.inFlight.Load())
		}
	}
}

// TestStreamHeaderApart reads responses with the header going to a header
// of the caller's own (Stream's hdr): small bodies are read whole into
// resp, larger and chunked ones stream with their framing in resp's header,
// and a small body cut short is an error, not a short body.
func TestStreamHeaderApart(t *testing.T) {
	verifyNone(t)
	addr := upstreamServer(t, func(w http.ResponseWriter, r *http.Request) {
		var n int
		fmt.Sscanf(r.URL.Path, "/%d", &n)
		w.Header().Set("X-Up", "1")
		if r.URL.Query().Has("chunked") {
			w.(http.Flusher).Flush()
		} else {
			w.Header().Set("Content-Length", fmt.Sprint(n))
		}
		io.WriteString(w, strings.Repeat("b", n))
	})
	p, _ := newPools(t, upCfg(addr))
	u, _ := p.Get("u")
	for _, tc := range []struct {
		path  string
		n     int
		lease bool
	}{
		{"/0", 0, false},
		{"/100", 100, false},
		{"/5000", 5000, false}, // more than the first read buffer
		{"/" + fmt.Sprint(BufferedBody), BufferedBody, false},
		{"/" + fmt.Sprint(BufferedBody+1), BufferedBody + 1, true},
		{"/300?chunked", 300, true},
	} {
		req := fasthttp.AcquireRequest()
		resp := fasthttp.AcquireResponse()
		var hdr fasthttp.ResponseHeader
		req.SetRequestURI("http://x" + tc.path)
		l, err := u.Stream(req, nil, &hdr, resp, false)
		if err != nil {
			t.Fatalf("%s: %v", tc.path, err)
		}
		if (l != nil) != tc.lease {
			t.Errorf("%s: lease %v, want %v", tc.path, l != nil, tc.lease)
		}
		var body []byte
		if l != nil {
			if resp.Header.ContentLength() != hdr.ContentLength() {
				t.Errorf("%s: body framing %d, header's %d", tc.path, resp.Header.ContentLength(), hdr.ContentLength())
			}
			body, err = io.ReadAll(resp.BodyStream())
			resp.CloseBodyStream()
			l.Release(err == nil)
		} else {
			body = resp.Body()
		}
		if hdr.StatusCode() != 200 || string(hdr.Peek("X-Up")) != "1" || len(body) != tc.n {
			t.Errorf("%s: %d X-Up=%q, %d bytes, want 200, 1, %d", tc.path, hdr.StatusCode(), hdr.Peek("X-Up"), len(body), tc.n)
		}
		if len(resp.Header.Peek("X-Up")) != 0 {
			t.Errorf("%s: the header also went to resp", tc.path)
		}
		fasthttp.ReleaseRequest(req)
		fasthttp.ReleaseResponse(resp)
	}

	// An upstream that closes after half of the body it announced.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 4096)
		_, _ = c.Read(buf)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"+strings.Repeat("h", 50))
	}()
	p2, _ := newPools(t, upCfg(ln.Addr().String()))
	u2, _ := p2.Get("u")
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	var hdr fasthttp.ResponseHeader
	req.SetRequestURI("http://x/")
	req.Header.SetMethod("POST") // not retried
	if _, err := u2.Stream(req, nil, &hdr, resp, false); err == nil {
		t.Errorf("a body cut short: no error, %d bytes", len(resp.Body()))
	}
}
