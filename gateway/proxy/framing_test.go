package proxy

import (
	"bufio"
	"bytes"
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

// fieldLineByName is hasFieldLine written the obvious way: split into
// lines, take the name before the first colon.
func fieldLineByName(raw []byte, name string) bool {
	for line := range bytes.SplitSeq(raw, []byte{'\n'}) {
		if i := bytes.IndexByte(line, ':'); i > 0 && equalFoldASCII(line[:i], name) {
			return true
		}
	}
	return false
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
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := readRequestHeader(t, "POST / HTTP/1.1\r\n"+tc.head+"\r\n")
			if got := badFraming(h); got != tc.want {
				t.Errorf("badFraming = %q, want %q (raw %q)", got, tc.want, h.RawHeaders())
			}
		})
	}
}

func TestHasFieldLine(t *testing.T) {
	const name = "transfer-encoding"
	for _, raw := range []string{
		"", "\n", "transfer-encoding", "transfer-encoding:", "Transfer-Encoding: x",
		"a: b\r\nTransfer-Encoding: x\r\n", "a: transfer-encoding: x\r\n", "transfer-encodinG:\n",
		"ransfer-encoding: x", " transfer-encoding: x", "x\ntransfer-encoding:", "x\ntransfer-encodin:",
		"tRANSFER-eNCODING:chunked\r\n\r\n", "transfer_encoding: x", "transfer-encoding : x",
	} {
		if got, want := hasFieldLine([]byte(raw), name), fieldLineByName([]byte(raw), name); got != want {
			t.Errorf("hasFieldLine(%q) = %v, want %v", raw, got, want)
		}
	}
}

func FuzzHasFieldLine(f *testing.F) {
	f.Add([]byte("Host: x\r\nTransfer-Encoding: chunked\r\n"))
	f.Add([]byte("a: transfer-encoding:\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		const name = "transfer-encoding"
		if got, want := hasFieldLine(raw, name), fieldLineByName(raw, name); got != want {
			t.Errorf("hasFieldLine(%q) = %v, want %v", raw, got, want)
		}
	})
}

// BenchmarkBadFraming checks a browser-sized header block without
// Transfer-Encoding: what every request pays.
func BenchmarkBadFraming(b *testing.B) {
	h := readRequestHeader(b, "GET /bytes?n=100 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"+
		"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36\r\n"+
		"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\nAccept-Encoding: gzip, deflate, br\r\n"+
		"Accept-Language: en-US,en;q=0.5\r\nConnection: keep-alive\r\nCookie: session=abcdef0123456789; theme=dark\r\n\r\n")
	b.ReportAllocs()
	for b.Loop() {
		if badFraming(h) != "" {
			b.Fatal("rejected")
		}
	}
}
