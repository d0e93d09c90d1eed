package sdk_test

import (
	"context"
	"strings"
	"testing"

	"github.com/wasmgate/wasmgate/internal/wasmbuild"
	"github.com/wasmgate/wasmgate/sdk/sdktest"
)

func newGuest(t testing.TB, config string) *sdktest.Host {
	t.Helper()
	wasm := wasmbuild.MustRead(t, wasmbuild.Go, wasmbuild.Path("sdk", "testdata", "guest"))
	h, err := sdktest.New(context.Background(), wasm, sdktest.Options{
		Config:   []byte(config),
		VMConfig: []byte(`{"vm":true}`),
		Properties: map[string]string{
			"session.id": "01HSESSION", "route.name": "r1", "plugin_name": "guest",
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

func get(h [][2]string, name string) string {
	for _, kv := range h {
		if kv[0] == name {
			return kv[1]
		}
	}
	return ""
}

// TestSDKUnderHost drives the SDK's host-facing API through a real Go
// guest in wazero.
func TestSDKUnderHost(t *testing.T) {
	h := newGuest(t, `{"gc_interval": 1000}`)
	req := func(path string, extra ...[2]string) *sdktest.Stream {
		t.Helper()
		s, err := h.NewStream()
		if err != nil {
			t.Fatal(err)
		}
		hs := append([][2]string{{":method", "GET"}, {":path", path}, {":authority", "gw"}}, extra...)
		if _, err := s.OnRequestHeaders(hs, false); err != nil {
			t.Fatal(err)
		}
		return s
	}

	t.Run("properties", func(t *testing.T) {
		s := req("/props")
		if got := [3]string{get(s.RequestHeaders, "x-session"), get(s.RequestHeaders, "x-route"), get(s.RequestHeaders, "x-plugin")}; got != [3]string{"01HSESSION", "r1", "guest"} {
			t.Fatalf("properties: %v", got)
		}
		s.Done()
	})
	t.Run("header maps", func(t *testing.T) {
		s := req("/headers", [2]string{"x-remove-me", "1"}, [2]string{"x-utf8", "ünïcode"})
		want := ":method,:path,:authority,x-remove-me,x-utf8"
		if got := get(s.RequestHeaders, "x-names"); got != want {
			t.Fatalf("x-names %q, want %q", got, want)
		}
		if get(s.RequestHeaders, "x-added") != "1" || get(s.RequestHeaders, "x-remove-me") != "" || get(s.RequestHeaders, "x-utf8") != "ünïcode" {
			t.Fatalf("headers after edit: %v", s.RequestHeaders)
		}
		s.Done()
	})
	t.Run("request body buffered", func(t *testing.T) {
		s := req("/body")
		if _, act, _ := s.OnRequestBody([]byte("abc"), false); act != sdktest.Pause {
			t.Fatalf("partial body: %v, want Pause", act)
		}
		got, act, err := s.OnRequestBody([]byte("abcdef"), true)
		if err != nil || act != sdktest.Continue || string(got) != "ABCDEF" {
			t.Fatalf("body %q %v %v", got, act, err)
		}
		s.Done()
	})
	t.Run("shared data and cas", func(t *testing.T) {
		s := req("/shared")
		if v, ok := h.SharedData("k"); !ok || string(v) != "v1" {
			t.Fatalf("shared k = %q %v", v, ok)
		}
		if got := get(s.RequestHeaders, "x-stale"); got != "cas mismatch" {
			t.Fatalf("stale cas: %q", got)
		}
		s.Done()
	})
	t.Run("metrics", func(t *testing.T) {
		before, _ := h.Metric("guest_requests")
		req("/").Done()
		after, ok := h.Metric("guest_requests")
		if !ok || after != before+1 {
			t.Fatalf("guest_requests %d -> %d (%v)", before, after, ok)
		}
	})
	t.Run("http call resumes the request", func(t *testing.T) {
		s, _ := h.NewStream()
		act, err := s.OnRequestHeaders([][2]string{{":method", "GET"}, {":path", "/call"}}, true)
		if err != nil || act != sdktest.Pause {
			t.Fatalf("dispatch: %v %v", act, err)
		}
		calls := h.HTTPCalls()
		c := calls[len(calls)-1]
		if c.Upstream != "auth" || get(c.Headers, ":path") != "/check" || string(c.Body) != "q" || c.Timeout != 1000 {
			t.Fatalf("call %+v", c)
		}
		if err := h.RespondHTTPCall(c.ID, [][2]string{{":status", "200"}}, []byte("ok!")); err != nil {
			t.Fatal(err)
		}
		if s.Continued != 1 || get(s.RequestHeaders, "x-call-body") != "ok!" || get(s.RequestHeaders, "x-call-status") != "200" {
			t.Fatalf("after response: continued %d, headers %v", s.Continued, s.RequestHeaders)
		}
		s.Done()

		s2, _ := h.NewStream()
		s2.OnRequestHeaders([][2]string{{":path", "/call"}}, true)
		calls = h.HTTPCalls()
		h.RespondHTTPCall(calls[len(calls)-1].ID, [][2]string{{":status", "500"}}, []byte("no"))
		if s2.Local == nil || s2.Local.Status != 403 || string(s2.Local.Body) != "no" || s2.Local.Details != "denied by auth" {
			t.Fatalf("denied call: %+v", s2.Local)
		}
		s2.Done()
	})
	t.Run("tick resumes a paused request", func(t *testing.T) {
		if h.TickPeriod() != 250 {
			t.Fatalf("tick period %d", h.TickPeriod())
		}
		s, _ := h.NewStream()
		act, _ := s.OnRequestHeaders([][2]string{{":path", "/pause"}}, true)
		if act != sdktest.Pause {
			t.Fatalf("want Pause, got %v", act)
		}
		if err := h.Tick(); err != nil {
			t.Fatal(err)
		}
		if s.Continued != 1 || get(s.RequestHeaders, "x-resumed-by") != "tick" {
			t.Fatalf("tick did not resume: %d %v", s.Continued, s.RequestHeaders)
		}
		if v, _ := h.SharedData("ticks"); len(v) == 0 {
			t.Fatal("tick did not write shared data")
		}
		s.Done()
	})
	t.Run("sse edits", func(t *testing.T) {
		s := req("/sse")
		s.OnResponseHeaders([][2]string{{":status", "200"}, {"content-type", "text/event-stream"}}, false)
		for _, c := range []struct{ in, want string }{
			{"id: 1\nevent: rename\ndata: x\n\n", "id: 1\nevent: renamed\ndata: line1\ndata: line2\n\n"},
			{"event: gone\ndata: x\n\n", ""},
			{"event: other\r\ndata: x\r\n\r\n", "event: other\r\ndata: x\r\n\r\n"},
		} {
			got, _, err := s.OnResponseBody([]byte(c.in), false)
			if err != nil || string(got) != c.want {
				t.Errorf("%q -> %q (%v), want %q", c.in, got, err, c.want)
			}
		}
		s.Done()
	})
	t.Run("logging", func(t *testing.T) {
		s := req("/log")
		if get(s.RequestHeaders, "x-log-level") != "0" {
			t.Fatalf("host log level header: %v", s.RequestHeaders)
		}
		s.Done()
		if logs := strings.Join(h.Logs(), "\n"); !strings.Contains(logs, "2: hello from /log") {
			t.Fatalf("logs: %s", logs)
		}
	})
}

// TestBadConfigRefused: invalid JSON makes OnConfigure return false, so
// the host refuses to start the plugin.
func TestBadConfigRefused(t *testing.T) {
	wasm := wasmbuild.MustRead(t, wasmbuild.Go, wasmbuild.Path("sdk", "testdata", "guest"))
	_, err := sdktest.New(context.Background(), wasm, sdktest.Options{Config: []byte(`{"gc_interval": "x"`)})
	if err == nil || !strings.Contains(err.Error(), "proxy_on_configure refused") {
		t.Fatalf("want configure refusal, got %v", err)
	}
}
