package sdk_test

import (
	"context"
	"flag"
	"fmt"
	"testing"

	"github.com/wasmgate/wasmgate/internal/wasmbuild"
	"github.com/wasmgate/wasmgate/sdk/sdktest"
)

var long = flag.Bool("long", false, "run the full 10 million call memory test")

// request drives one typical request through the example plugin: 8 calls
// into the guest (create, request headers, response headers, two SSE
// events, end of stream, done/log/delete count as three).
func request(t testing.TB, h *sdktest.Host) int {
	s, err := h.NewStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.OnRequestHeaders([][2]string{{":method", "GET"}, {":path", "/sse"}, {"x-api-key", "k"}}, true); err != nil {
		t.Fatal(err)
	}
	if _, err := s.OnResponseHeaders([][2]string{{":status", "200"}, {"content-type", "text/event-stream"}}, false); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.OnResponseBody([]byte("event: shout\ndata: hello there\n\n"), false); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.OnResponseBody([]byte("event: drop\ndata: bye\n\n"), false); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.OnResponseBody(nil, true); err != nil {
		t.Fatal(err)
	}
	if err := s.Done(); err != nil {
		t.Fatal(err)
	}
	return 9
}

func newExampleHost(t testing.TB) *sdktest.Host {
	wasm := wasmbuild.MustRead(t, wasmbuild.Go, wasmbuild.Path("examples", "go"))
	h, err := sdktest.New(context.Background(), wasm, sdktest.Options{
		Config: []byte(`{"header":"x-example","value":"v","api_key":"k"}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestMemoryFlat runs the Go example through many requests and checks
// that linear memory stops growing: after a warm-up, the page count must
// not change. With -long it runs 10 million guest calls.
func TestMemoryFlat(t *testing.T) {
	h := newExampleHost(t)
	defer h.Close()
	target := 1_000_000
	if *long {
		target = 10_000_000
	}
	calls := 0
	for calls < 200_000 { // warm-up: the heap reaches its working size
		calls += request(t, h)
	}
	warm := h.MemoryPages()
	for calls < target {
		calls += request(t, h)
	}
	end := h.MemoryPages()
	t.Logf("%d guest calls: %d pages after warm-up, %d at the end (%d KiB)", calls, warm, end, end*64)
	if end != warm {
		t.Fatalf("linear memory grew from %d to %d pages over %d calls", warm, end, calls)
	}
}

// BenchmarkRequest is one request through the Go example (9 guest calls).
func BenchmarkRequest(b *testing.B) {
	h := newExampleHost(b)
	defer h.Close()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		request(b, h)
	}
	b.ReportMetric(float64(h.MemoryPages()), "pages")
}

// BenchmarkGCInterval measures what forced collections cost and save: the
// test guest allocates 4 KiB of garbage per request; for each policy it
// reports the time per request and the linear memory reached. "never"
// (SetGCInterval(0)) grows without bound; run it with a bounded
// -benchtime. "every=64" is a collection at every check (threshold 0);
// the others collect once that many bytes were allocated (the default is
// 1 MiB).
func BenchmarkGCInterval(b *testing.B) {
	for _, p := range []struct {
		name      string
		interval  int
		threshold int
	}{
		{"never", 0, 0},
		{"every=64", 64, 0},
		{"bytes=256KiB", 64, 256 << 10},
		{"bytes=1MiB", 64, 1 << 20},
		{"bytes=4MiB", 64, 4 << 20},
	} {
		b.Run(p.name, func(b *testing.B) {
			h := newGuest(b, fmt.Sprintf(`{"gc_interval": %d, "gc_threshold": %d, "garbage": 4096}`, p.interval, p.threshold))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				s, _ := h.NewStream()
				s.OnRequestHeaders([][2]string{{":path", "/"}}, true)
				s.OnResponseHeaders([][2]string{{":status", "200"}}, true)
				s.Done()
			}
			b.ReportMetric(float64(h.MemoryPages()), "pages")
		})
	}
}
