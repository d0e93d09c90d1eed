package sdk_test

import (
	"context"
	"testing"

	"github.com/wasmgate/wasmgate/internal/wasmbuild"
	"github.com/wasmgate/wasmgate/sdk/sdktest"
)

// TestRustAndAssemblyScriptLayers runs a probe guest written with each
// thin layer under the sdktest host: configuration JSON, properties,
// header maps, metrics.
func TestRustAndAssemblyScriptLayers(t *testing.T) {
	for _, tc := range []struct {
		lang wasmbuild.Lang
		src  string
	}{
		{wasmbuild.Rust, wasmbuild.Path("sdk", "rust", "testdata", "probe")},
		{wasmbuild.AssemblyScript, wasmbuild.Path("sdk", "assemblyscript", "testdata")},
	} {
		t.Run(string(tc.lang), func(t *testing.T) {
			wasm := wasmbuild.MustRead(t, tc.lang, tc.src)
			h, err := sdktest.New(context.Background(), wasm, sdktest.Options{
				Config:     []byte(`{"other": {"greeting": "no"}, "greeting": "h\u00e9llo \"you\""}`),
				Properties: map[string]string{"session.id": "01S", "route.name": "r"},
			})
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			for i := 0; i < 2; i++ {
				s, err := h.NewStream()
				if err != nil {
					t.Fatal(err)
				}
				if _, err := s.OnRequestHeaders([][2]string{{":path", "/"}, {"x-remove", "1"}}, true); err != nil {
					t.Fatal(err)
				}
				for name, want := range map[string]string{
					"x-greeting": `héllo "you"`, "x-session": "01S", "x-route": "r",
					"x-count": "5", "x-absent": "none", "x-added": "1", "x-remove": "",
				} {
					if got := get(s.RequestHeaders, name); got != want {
						t.Errorf("%s = %q, want %q", name, got, want)
					}
				}
				s.Done()
			}
			if n, ok := h.Metric("probe_requests"); !ok || n != 2 {
				t.Errorf("probe_requests = %d (%v), want 2", n, ok)
			}
		})
	}
}
