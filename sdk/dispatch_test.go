package sdk_test

import (
	"fmt"
	"testing"

	"github.com/wasmgate/wasmgate/sdk/sdktest"
)

// TestManyStreamsInFlight holds 600 requests open at once in the Go
// example, more than the SDK's 256 HTTP-context slots, so that ids share a
// slot and overflow into the map, and checks that every callback reaches
// its own request's context: half the requests carry a wrong key (401),
// a third of the rest are SSE streams whose "shout" events are upper-cased.
// Contexts end in reverse order, then a second round reuses the ids' slots.
func TestManyStreamsInFlight(t *testing.T) {
	h := newExampleHost(t)
	defer h.Close()
	const n = 600
	for round := 0; round < 2; round++ {
		streams := make([]*sdktest.Stream, n)
		for i := range streams {
			s, err := h.NewStream()
			if err != nil {
				t.Fatal(err)
			}
			streams[i] = s
		}
		for i, s := range streams {
			key := "k"
			if i%2 == 1 {
				key = fmt.Sprint("wrong", i)
			}
			act, err := s.OnRequestHeaders([][2]string{{":path", "/"}, {"x-api-key", key}}, true)
			if err != nil {
				t.Fatal(err)
			}
			if denied := s.Local != nil && s.Local.Status == 401; denied != (i%2 == 1) || (act == sdktest.Pause) != denied {
				t.Fatalf("round %d stream %d (key %q): action %v, local response %+v", round, i, key, act, s.Local)
			}
		}
		for i, s := range streams {
			if i%2 == 1 {
				continue
			}
			ct := "text/plain"
			if i%3 == 0 {
				ct = "text/event-stream"
			}
			if _, err := s.OnResponseHeaders([][2]string{{":status", "200"}, {"content-type", ct}}, false); err != nil {
				t.Fatal(err)
			}
			if get(s.ResponseHeaders, "x-example") != "v" {
				t.Fatalf("round %d stream %d: response headers %v", round, i, s.ResponseHeaders)
			}
		}
		for i, s := range streams {
			if i%2 == 1 {
				continue
			}
			got, _, err := s.OnResponseBody([]byte("event: shout\ndata: hi\n\n"), false)
			if err != nil {
				t.Fatal(err)
			}
			want := "event: shout\ndata: hi\n\n"
			if i%3 == 0 {
				want = "event: shout\ndata: HI\n\n"
			}
			if string(got) != want {
				t.Fatalf("round %d stream %d: body %q, want %q", round, i, got, want)
			}
		}
		for i := n - 1; i >= 0; i-- {
			if err := streams[i].Done(); err != nil {
				t.Fatal(err)
			}
		}
	}
}
