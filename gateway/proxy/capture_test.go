package proxy

import (
	"bufio"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/wasmgate/wasmgate/gateway/event"
)

// TestCaptureRequest checks the request fields an event records: each
// field line as the upstream gets it, in order, repeated lines and Cookie
// byte for byte, an empty value, redacted names in any case; and that capturing leaves the header
// as it was (fasthttp's All would have parsed Cookie into cookies, which
// Write then re-serializes).
func TestCaptureRequest(t *testing.T) {
	raw := "POST /mcp?x=1 HTTP/1.1\r\nHost: up.test\r\nCookie: a=1;b=2;  c\r\nX-Dup: 1\r\nX-Dup: 2\r\n" +
		"AUTHORIZATION: Bearer s\r\nX-Empty:\r\nX-Space:   v\r\nContent-Length: 2\r\n\r\n"
	var h fasthttp.RequestHeader
	if err := h.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		t.Fatal(err)
	}
	h.SetNoDefaultContentType(true) // as prepareRequest sets it
	before := string(h.AppendBytes(nil))
	r := newRedactor([]string{"authorization", "x-api-key"})
	e := event.New()
	defer e.Release()
	r.captureRequest(e, &h)
	var got []string
	for _, f := range e.Headers {
		got = append(got, f.Name+"="+f.Value)
	}
	want := []string{"Host=up.test", "Content-Length=2",
		// fasthttp trims the spaces before a value as it parses it.
		"Cookie=a=1;b=2;  c", "X-Dup=1", "X-Dup=2", "Authorization=" + event.Redacted, "X-Empty=", "X-Space=v"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("captured\n %q\nwant\n %q", got, want)
	}
	if after := string(h.AppendBytes(nil)); after != before {
		t.Errorf("capture changed the header:\n%q\nwas\n%q", after, before)
	}
}

// BenchmarkCapture is what recording a request and its response event
// costs the proxy for the fields of BenchmarkGatewayRecording's exchange:
// take two events from the pool, capture both header blocks, release them
// (the store's part).
func BenchmarkCapture(b *testing.B) {
	var req fasthttp.RequestHeader
	raw := "GET /json HTTP/1.1\r\nHost: 127.0.0.1:41234\r\nUser-Agent: fasthttp\r\nMcp-Session-Id: bench-123\r\n" +
		"X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: 127.0.0.1:41234\r\n" +
		"Via: 1.1 wasmgate\r\nX-Request-Id: 4f1c2a9e0b7d3c51-000000000001a2b3\r\n\r\n"
	if err := req.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		b.Fatal(err)
	}
	var resp fasthttp.ResponseHeader
	resp.SetContentType("application/json")
	resp.SetContentLength(45)
	resp.Set("Via", "1.1 wasmgate")
	resp.Set("X-Request-Id", "4f1c2a9e0b7d3c51-000000000001a2b3")
	resp.Set("Date", "Fri, 27 Nov 2026 10:00:00 GMT")
	r := newRedactor([]string{"authorization", "cookie", "set-cookie", "x-api-key"})
	id := []byte("4f1c2a9e0b7d3c51-000000000001a2b3")
	b.ReportAllocs()
	for b.Loop() {
		e := event.New()
		e.Time, e.RequestID = time.Now(), e.KeepString(id)
		r.captureRequest(e, &req)
		f := event.New()
		f.Time, f.RequestID = time.Now(), f.KeepString(id)
		r.captureResponse(f, &resp)
		e.Release()
		f.Release()
	}
}
