package sdk_test

import (
	"context"
	"testing"

	"github.com/wasmgate/wasmgate/internal/wasmbuild"
	"github.com/wasmgate/wasmgate/sdk/sdktest"
)

// TestCHeader runs sdk/c/testdata/probe.c, which reports what the C
// header's helpers computed, under the sdktest host.
func TestCHeader(t *testing.T) {
	wasm := wasmbuild.MustRead(t, wasmbuild.C, wasmbuild.Path("sdk", "c", "testdata", "probe.c"))
	cfg := `{"plain": "v", "escaped": "a\"b\\c\nd\/e", "unicode": "\u0041\u00e9", "nested": {"plain": "no", "deep": "x"}, "number": 5}`
	h, err := sdktest.New(context.Background(), wasm, sdktest.Options{Config: []byte(cfg),
		Properties: map[string]string{"session.id": "01SESSION"}})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	s, err := h.NewStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.OnRequestHeaders([][2]string{{":path", "/"}, {"x-in", "ünï"}}, true); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"x-json-plain":   "v",
		"x-json-escaped": "a\"b\\c\nd/e",
		"x-json-unicode": "A?", // non-ASCII \u escapes become '?'
		"x-json-nested":  "(null)",
		"x-json-number":  "(null)",
		"x-json-missing": "(null)",
		"x-pairs":        "8", // the two sent and the six x-json-* set before
		"x-second":       "x-in=ünï",
		"x-bad-map":      "refused",
		"x-session":      "01SESSION",
	} {
		if got := get(s.RequestHeaders, name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
}
