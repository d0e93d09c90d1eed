package examples

import (
	"bytes"
	"context"
	"testing"

	"github.com/wasmgate/wasmgate/internal/wasmbuild"
	"github.com/wasmgate/wasmgate/sdk/sdktest"
)

// languages lists each example and where its source is; every one must
// build here (a missing toolchain fails the test).
var languages = []struct {
	lang wasmbuild.Lang
	src  string
}{
	{wasmbuild.WAT, "wat/interceptor.wat"},
	{wasmbuild.C, "c"},
	{wasmbuild.Go, "go"},
	{wasmbuild.Rust, "rust"},
	{wasmbuild.AssemblyScript, "assemblyscript"},
}

const testConfig = `{"header": "x-example", "value": "wasmgate", "api_key": "s3cret"}`

// sseCases are single events as the host delivers them (one per body call)
// and what each example must leave in the body buffer.
var sseCases = []struct{ name, in, want string }{
	{"plain", "data: hello\n\n", "data: hello\n\n"},
	{"shout", "event: shout\ndata: hello world\n\n", "event: shout\ndata: HELLO WORLD\n\n"},
	{"shout multi-line CRLF", "id: 7\r\nevent: shout\r\ndata: one\r\ndata:two\r\n\r\n", "id: 7\r\nevent: shout\r\ndata: ONE\r\ndata:TWO\r\n\r\n"},
	{"shout keeps field names and ids", "event:shout\nid: abc\ndata: mixed Case 123\n: comment stays\n\n", "event:shout\nid: abc\ndata: MIXED CASE 123\n: comment stays\n\n"},
	{"drop", "event: drop\ndata: secret\n\n", ""},
	{"drop with id", "id: 9\nevent: drop\ndata: x\n\n", ""},
	{"other event untouched", "event: note\ndata: keep me\n\n", "event: note\ndata: keep me\n\n"},
	{"event name is exact", "event: shouty\ndata: quiet\n\n", "event: shouty\ndata: quiet\n\n"},
	{"last event field wins", "event: drop\nevent: shout\ndata: up\n\n", "event: drop\nevent: shout\ndata: UP\n\n"},
	{"comment only", ": keepalive\n\n", ": keepalive\n\n"},
}

func buildExample(t testing.TB, lang wasmbuild.Lang, src string) []byte {
	t.Helper()
	return wasmbuild.MustRead(t, lang, src)
}

func header(h [][2]string, name string) (string, int) {
	v, n := "", 0
	for _, kv := range h {
		if kv[0] == name {
			v, n = kv[1], n+1
		}
	}
	return v, n
}

// TestInterceptorUnderTestHost runs every example's (a), (b), (c) through
// sdktest, a real wazero host, one callback at a time.
func TestInterceptorUnderTestHost(t *testing.T) {
	for _, l := range languages {
		t.Run(string(l.lang), func(t *testing.T) {
			wasm := buildExample(t, l.lang, l.src)
			ctx := context.Background()
			h, err := sdktest.New(ctx, wasm, sdktest.Options{Config: []byte(testConfig)})
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()

			// (b) wrong or missing key: 401 with a JSON body, and the header.
			for _, key := range []string{"", "wrong"} {
				s, err := h.NewStream()
				if err != nil {
					t.Fatal(err)
				}
				req := [][2]string{{":method", "GET"}, {":path", "/json"}, {":authority", "x"}}
				if key != "" {
					req = append(req, [2]string{"x-api-key", key})
				}
				act, err := s.OnRequestHeaders(req, true)
				if err != nil {
					t.Fatal(err)
				}
				if s.Local == nil || s.Local.Status != 401 || act != sdktest.Pause {
					t.Fatalf("key %q: want 401 local response and Pause, got %+v %v; logs %v", key, s.Local, act, h.Logs())
				}
				if !bytes.HasPrefix(s.Local.Body, []byte(`{"error":`)) {
					t.Fatalf("401 body not JSON: %q", s.Local.Body)
				}
				if ct, _ := header(s.Local.Headers, "content-type"); ct != "application/json" {
					t.Fatalf("401 content-type %q", ct)
				}
				if v, _ := header(s.Local.Headers, "x-example"); v != "wasmgate" {
					t.Fatalf("401 lacks x-example: %v", s.Local.Headers)
				}
				if err := s.Done(); err != nil {
					t.Fatal(err)
				}
			}

			// right key: continue; (a) the header on a JSON response.
			s, err := h.NewStream()
			if err != nil {
				t.Fatal(err)
			}
			act, err := s.OnRequestHeaders([][2]string{{":method", "GET"}, {":path", "/json"}, {"x-api-key", "s3cret"}}, true)
			if err != nil || act != sdktest.Continue || s.Local != nil {
				t.Fatalf("right key: %v %v %+v", act, err, s.Local)
			}
			if _, err := s.OnResponseHeaders([][2]string{{":status", "200"}, {"content-type", "application/json"}, {"x-example", "old"}}, false); err != nil {
				t.Fatal(err)
			}
			if v, n := header(s.ResponseHeaders, "x-example"); v != "wasmgate" || n != 1 {
				t.Fatalf("response header x-example = %q (x%d), want wasmgate once", v, n)
			}
			// a JSON body that looks like an SSE event stays untouched
			body := "event: drop\ndata: not sse\n\n"
			got, _, err := s.OnResponseBody([]byte(body), true)
			if err != nil || string(got) != body {
				t.Fatalf("non-SSE body changed: %q %v", got, err)
			}
			if err := s.Done(); err != nil {
				t.Fatal(err)
			}

			// (c) SSE, one event per body call.
			s, err = h.NewStream()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.OnRequestHeaders([][2]string{{":method", "GET"}, {":path", "/sse/mixed"}, {"x-api-key", "s3cret"}}, true); err != nil {
				t.Fatal(err)
			}
			if _, err := s.OnResponseHeaders([][2]string{{":status", "200"}, {"content-type", "text/event-stream; charset=utf-8"}}, false); err != nil {
				t.Fatal(err)
			}
			for _, c := range sseCases {
				got, act, err := s.OnResponseBody([]byte(c.in), false)
				if err != nil || act != sdktest.Continue {
					t.Fatalf("%s: %v %v", c.name, act, err)
				}
				if string(got) != c.want {
					t.Errorf("%s: got %q, want %q", c.name, got, c.want)
				}
			}
			if got, _, err := s.OnResponseBody(nil, true); err != nil || len(got) != 0 {
				t.Fatalf("end of stream: %q %v", got, err)
			}
			if err := s.Done(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestInterceptorNoAPIKey: without api_key every request passes.
func TestInterceptorNoAPIKey(t *testing.T) {
	for _, l := range languages {
		t.Run(string(l.lang), func(t *testing.T) {
			h, err := sdktest.New(context.Background(), buildExample(t, l.lang, l.src),
				sdktest.Options{Config: []byte(`{"header":"X-A","value":"b"}`)})
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			s, _ := h.NewStream()
			act, err := s.OnRequestHeaders([][2]string{{":path", "/"}}, true)
			if err != nil || act != sdktest.Continue || s.Local != nil {
				t.Fatalf("%v %v %+v", act, err, s.Local)
			}
			s.OnResponseHeaders([][2]string{{":status", "200"}}, true)
			if v, _ := header(s.ResponseHeaders, "x-a"); v != "b" {
				t.Fatalf("x-a = %q", v)
			}
			s.Done()
		})
	}
}
