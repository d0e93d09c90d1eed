package proxy

import (
	"bufio"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

func readRequestHeader(t testing.TB, raw string) *fasthttp.RequestHeader {
	var h fasthttp.RequestHeader
	if err := h.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		t.Fatalf("parse %q: %v", raw, err)
	}
	return &h
}

func TestBadFraming(t *testing.T) {
	for _, tc := range []struct {
		name, head, want string
	}{
		{"plain GET", "Host: x\r\nAccept: */*\r\n", ""},
		{"chunked", "Host: x\r\nTransfer-Encoding: chunked\r\n", ""},
		{"chunked, lower case", "Host: x\r\ntransfer-encoding: Chunked\r\n", ""},
		{"first line", "Transfer-Encoding: chunked\r\nHost: x\r\n", ""},
		{"CL and TE", "Host: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n", "both Content-Length and Transfer-Encoding"},
		{"TE and CL, mixed case", "Host: x\r\nTRANSFER-ENCODING: chunked\r\ncontent-length: 4\r\n", "both Content-Length and Transfer-Encoding"},
		{"identity", "Host: x\r\nTransfer-Encoding: identity\r\n", "unsupported Transfer-Encoding (only chunked is accepted)"},
		{"name in a value only", "Host: x\r\nX-Note: transfer-encoding: identity\r\nContent-Length: 0\r\n", ""},
		{"longer name", "Host: x\r\nTransfer-Encodings: identity\r\n", ""},
		{"bare LF", "Host: x\nAccept: */*\r\n", "bare LF in header"},
		{"bare LF and CL+TE", "Host: x\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n", "bare LF in header"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := readRequestHeader(t, "POST / HTTP/1.1\r\n"+tc.head+"\r\n")
			seen, _ := scanRequest(h)
			if got := badFraming(seen); got != tc.want {
				t.Errorf("badFraming = %q, want %q (raw %q)", got, tc.want, h.RawHeaders())
			}
		})
	}
}

// TestCheckTarget covers what reaches checkTarget, including targets
// fasthttp's request-line parser refuses before the handler runs (a header
// set by hand skips that parser), so the check does not rest on it.
func TestCheckTarget(t *testing.T) {
	for _, tc := range []struct {
		method, uri, want string
	}{
		{"GET", "http://a.example/p", ""},
		{"OPTIONS", "*", ""},
		{"GET", "*", reasonTarget},
		{"POST", "*", reasonTarget},
		{"options", "*", reasonTarget}, // methods are case-sensitive (RFC 9110 §9.1)
		{"GET", "foo", reasonTarget},
		{"GET", "ftp://a.example/p", reasonTarget},
		{"CONNECT", "a.example:443", reasonConnect},
		{"CONNECT", "*", reasonConnect},
	} {
		var h fasthttp.RequestHeader
		h.SetMethod(tc.method)
		h.SetRequestURI(tc.uri)
		if got := checkTarget(&h); got != tc.want {
			t.Errorf("%s %s: checkTarget = %q, want %q", tc.method, tc.uri, got, tc.want)
		}
	}
}
