package store

import (
	"reflect"
	"testing"
	"time"

	"github.com/wasmgate/wasmgate/gateway/event"
)

func sampleEvents() []event.Event {
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 123456789, time.UTC)
	return []event.Event{
		{Type: event.SessionStart, Time: t0, Route: "mcp"},
		{Type: event.Request, Time: t0, Route: "mcp", RequestID: "r1", Method: "POST", Path: "/mcp?x=1",
			Headers: []event.Header{{Name: "Content-Type", Value: "application/json"}, {Name: "Authorization", Value: "[redacted]"}},
			Body:    []byte(`{"jsonrpc":"2.0"}`), BodyBytes: 17},
		{Type: event.Request, Time: t0, RequestID: "0c27", Method: "GET", Path: "/", Headers: []event.Header{
			{Name: "X-Request-Id", Value: "0c27"}, {Name: "X-Custom", Value: ""}, {Name: "host", Value: "0c27"},
			{Name: "Forwarded", Value: "for=1.2.3.4"}, {Name: "", Value: "x"}}},
		{Type: event.Response, Time: t0, Method: "POST", Path: "/mcp", Status: 200, Latency: 1500 * time.Microsecond, BodyBytes: 1 << 40},
		{Type: event.SSE, Time: t0, Stream: "mcp /mcp", EventID: "42", EventName: "message", Data: []byte("a\nb"), BodyBytes: 3},
		{Type: event.Plugin, Time: t0, Plugin: "auth", Decision: "local_response", Message: "no token", Status: 401},
		{Type: event.Error, Time: t0, Message: "upstream refused", Status: -1},
		{Type: event.SessionEnd, Time: t0, Message: "idle"},
		{Type: event.SessionEnd}, // zero time
	}
}

func TestEventRoundTrip(t *testing.T) {
	for _, want := range sampleEvents() {
		t.Run(want.Type.String(), func(t *testing.T) {
			v := appendEvent(nil, &want)
			var got event.Event
			if err := decodeEvent(v, &got); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	good := appendEvent(nil, &sampleEvents()[1])
	for _, tc := range []struct {
		name string
		v    []byte
	}{
		{"empty", nil},
		{"version", append([]byte{2}, good[1:]...)},
		{"truncated", good[:len(good)-3]},
		{"trailing", append(append([]byte(nil), good...), 0)},
		{"unknown bit", []byte{1, 2, 0, 0x80, 0x80, 0x08}},
		{"huge header count", []byte{1, 2, 0, fHeaders, 0xff, 0xff, 0xff, 0x0f}},
		{"huge coded header count", []byte{1, 2, 0, 0x80, 0x80, 0x04, 0xff, 0xff, 0xff, 0x0f}},
		{"unknown header index", []byte{1, 2, 0, 0x80, 0x80, 0x04, 1, 0x7f, 1}},
		{"header value past the end", []byte{1, 2, 0, 0x80, 0x80, 0x04, 1, 1, 9, 'a'}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e event.Event
			if err := decodeEvent(tc.v, &e); err == nil {
				t.Fatalf("decode %x: no error", tc.v)
			}
		})
	}
}

// TestCodedHeadersSmaller: table names and the request id back reference
// take a byte each.
func TestCodedHeadersSmaller(t *testing.T) {
	e := event.Event{Type: event.Request, RequestID: "0c273970e5fa6e210000000000000001", Headers: []event.Header{
		{Name: "X-Request-Id", Value: "0c273970e5fa6e210000000000000001"}, {Name: "Mcp-Session-Id", Value: "s"}}}
	base := len(appendEvent(nil, &event.Event{Type: event.Request, RequestID: e.RequestID}))
	// count, 2 indexes, 2 value codes, 1 value byte, and 2 more mask
	// bytes for bit 16
	if n := len(appendEvent(nil, &e)) - base; n != 1+2+2+1+2 {
		t.Fatalf("two headers take %d bytes, want 8", n)
	}
}

// TestDecodeLegacyHeaders: values written with fHeaders (names and values
// as strings) still decode.
func TestDecodeLegacyHeaders(t *testing.T) {
	v := []byte{encodingV1, byte(event.Request), 0, fHeaders, 2, 4, 'H', 'o', 's', 't', 1, 'a', 1, 'X', 0}
	var e event.Event
	if err := decodeEvent(v, &e); err != nil {
		t.Fatal(err)
	}
	want := []event.Header{{Name: "Host", Value: "a"}, {Name: "X", Value: ""}}
	if !reflect.DeepEqual(e.Headers, want) {
		t.Fatalf("headers %+v, want %+v", e.Headers, want)
	}
}

func TestMetaRoundTrip(t *testing.T) {
	want := sessionMeta{Start: 1, LastActivity: 99, LastSeq: 7, Events: 6, Bytes: 1234, Ended: true, Route: "r"}
	got, err := decodeMeta(appendMeta(nil, &want))
	if err != nil || got != want {
		t.Fatalf("got %+v, %v; want %+v", got, err, want)
	}
	if _, err := decodeMeta([]byte{1, 2}); err == nil {
		t.Fatal("truncated meta decoded")
	}
}

func FuzzDecodeEvent(f *testing.F) {
	for _, e := range sampleEvents() {
		f.Add(appendEvent(nil, &e))
	}
	f.Add([]byte{1, 4, 0, 0xff, 0xff, 0x03})
	f.Fuzz(func(t *testing.T, v []byte) {
		var e event.Event
		if err := decodeEvent(v, &e); err != nil {
			return
		}
		// Whatever decodes must re-encode to a value that decodes equal.
		var again event.Event
		if err := decodeEvent(appendEvent(nil, &e), &again); err != nil {
			t.Fatalf("re-encoded value does not decode: %v", err)
		}
		if !reflect.DeepEqual(normalize(e), normalize(again)) {
			t.Fatalf("re-encode changed the event:\n%+v\n%+v", e, again)
		}
	})
}

// normalize maps empty slices to nil (the encoding does not tell them apart).
func normalize(e event.Event) event.Event {
	if len(e.Headers) == 0 {
		e.Headers = nil
	}
	if len(e.Body) == 0 {
		e.Body = nil
	}
	if len(e.Data) == 0 {
		e.Data = nil
	}
	return e
}

func TestKeys(t *testing.T) {
	k := eventKey(nil, "sess\x00ion", 258)
	id, seq, err := parseEventKey(k)
	if err != nil || id != "sess\x00ion" || seq != 258 {
		t.Fatalf("parseEventKey = %q %d %v", id, seq, err)
	}
	if _, _, err := parseEventKey(k[:len(k)-1]); err == nil {
		t.Fatal("short key parsed")
	}
	ns, sid, err := parseStartKey(startKey(nil, 77, "abc"))
	if err != nil || ns != 77 || sid != "abc" {
		t.Fatalf("parseStartKey = %d %q %v", ns, sid, err)
	}
	if got := prefixEnd([]byte{'a', 0xff}); string(got) != "b" {
		t.Fatalf("prefixEnd = %x", got)
	}
}

// BenchmarkAppendEvent encodes the request and response events of one
// proxied exchange as the gateway records them.
func BenchmarkAppendEvent(b *testing.B) {
	rid := "0c273970e5fa6e210000000000000001"
	req := event.Event{Type: event.Request, Time: time.Now(), Route: "r", RequestID: rid, Method: "GET", Path: "/json",
		Headers: []event.Header{{Name: "Host", Value: "127.0.0.1:41031"}, {Name: "User-Agent", Value: "fasthttp"},
			{Name: "Mcp-Session-Id", Value: "bench-1"}, {Name: "X-Forwarded-For", Value: "127.0.0.1"},
			{Name: "X-Forwarded-Proto", Value: "http"}, {Name: "X-Forwarded-Host", Value: "127.0.0.1:41031"},
			{Name: "Via", Value: "1.1 wasmgate"}, {Name: "X-Request-Id", Value: rid}}}
	resp := event.Event{Type: event.Response, Time: time.Now(), Route: "r", RequestID: rid, Method: "GET", Path: "/json",
		Status: 200, Latency: 230 * time.Microsecond, BodyBytes: 45,
		Headers: []event.Header{{Name: "Content-Length", Value: "45"}, {Name: "Content-Type", Value: "application/json"},
			{Name: "Server", Value: "fasthttp"}, {Name: "Date", Value: "Fri, 27 Nov 2026 08:00:35 GMT"},
			{Name: "Via", Value: "1.1 wasmgate"}, {Name: "X-Request-Id", Value: rid}}}
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = appendEvent(buf[:0], &req)
		buf = appendEvent(buf, &resp)
	}
	b.ReportMetric(float64(len(buf)), "bytes/exchange")
}
