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
	for calls < 20_000 { // warm-up: the heap reaches its working size
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

// BenchmarkGCInterval measures what SetGCInterval costs and saves: the
// test guest allocates 4 KiB of garbage per request; for each interval it
// reports the time per request and the linear memory reached.
// Interval 0 (never collect) grows without bound; run it with a bounded
// -benchtime.
func BenchmarkGCInterval(b *testing.B) {
	for _, n := range []int{0, 100, 1000, 10000} {
		b.Run(fmt.Sprintf("every=%d", n), func(b *testing.B) {
			h := newGuest(b, fmt.Sprintf(`{"gc_interval": %d, "garbage": 4096}`, n))
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
