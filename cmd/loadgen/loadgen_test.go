package main

import (
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/wasmgate/wasmgate/examples/upstream/demo"
)

func startDemo(t *testing.T) string {
	t.Helper()
	s, err := demo.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return "http://" + s.Addr()
}

func opts(mode, url string) options {
	return options{mode: mode, url: url, method: "GET", conns: 4, duration: 300 * time.Millisecond,
		timeout: 5 * time.Second, streams: 10, ramp: 50 * time.Millisecond}
}

func TestHTTPMode(t *testing.T) {
	base := startDemo(t)
	r, err := runHTTP(opts("http", base+"/bytes?n=100"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Requests == 0 || r.OK != r.Requests || len(r.Errors) != 0 || r.BodyBytes != 100*r.Requests {
		t.Fatalf("%s", r.line())
	}
	if !(r.P50us > 0 && r.P50us <= r.P90us && r.P90us <= r.P99us && r.P99us <= r.MaxUs) {
		t.Fatalf("quantiles out of order: %s", r.line())
	}

	o := opts("http", base+"/echo")
	o.method, o.bodySize, o.requests, o.duration = "POST", 1000, 50, time.Minute
	if r, err = runHTTP(o); err != nil || r.Requests != 50 || r.BodyBytes != 50*1000 {
		t.Fatalf("-n 50: %v %s", err, r.line())
	}

	if r, _ = runHTTP(opts("http", base+"/status/503")); r.OK != 0 || r.Errors["status_503"] != r.Requests {
		t.Fatalf("503s: %s", r.line())
	}

	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	if r, _ = runHTTP(opts("http", "http://"+addr+"/")); r.Requests != 0 || r.Errors["refused"] == 0 {
		t.Fatalf("closed port: %s", r.line())
	}
}

func TestHTTPSessions(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.Header.Get("X-Session")]++
		mu.Unlock()
	}))
	defer srv.Close()
	o := opts("http", srv.URL+"/")
	o.requests, o.duration, o.sessions, o.sessHdr = 30, time.Minute, 3, "X-Session"
	if r, err := runHTTP(o); err != nil || r.OK != 30 {
		t.Fatalf("%v %s", err, r.line())
	}
	want := map[string]int{"loadgen-0": 10, "loadgen-1": 10, "loadgen-2": 10}
	if !maps.Equal(seen, want) {
		t.Fatalf("session ids sent: %v, want %v", seen, want)
	}
}

func TestSSEMode(t *testing.T) {
	base := startDemo(t)
	o := opts("sse", base+"/sse?n=0&interval=5ms")
	o.duration = time.Second // all ten must open in time on a busy machine
	r, err := runSSE(o)
	if err != nil {
		t.Fatal(err)
	}
	if r.Opened != 10 || r.PeakOpen != 10 || r.OrderErrors != 0 || r.MinEvents == 0 || len(r.StreamErrors) != 0 || len(r.OpenFailed) != 0 {
		t.Fatalf("%s", r.line())
	}
	// Long enough for a steady window after the ramp.
	o = opts("sse", base+"/sse?n=0&interval=5ms")
	o.duration, o.ramp = 1500*time.Millisecond, 0
	if r, _ = runSSE(o); r.SteadyEventsPerS <= 0 || r.OrderErrors != 0 {
		t.Fatalf("steady: %s", r.line())
	}
	// Finite streams end cleanly.
	if r, _ = runSSE(opts("sse", base+"/sse?n=3&interval=0")); r.Completed != 10 || r.Events != 30 {
		t.Fatalf("finite: %s", r.line())
	}
	if r, _ = runSSE(opts("sse", base+"/status/503")); r.OpenFailed["status_503"] != 10 {
		t.Fatalf("503: %s", r.line())
	}
}

func TestSSEModeFindsGaps(t *testing.T) {
	// ids 1 2 4 4 x: a gap, a repeat and a non-numeric id.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for _, id := range []string{"1", "2", "4", "4", "x"} {
			fmt.Fprintf(w, "id: %s\ndata: d\n\n", id)
		}
		fmt.Fprintf(w, "data: cut")
	}))
	defer srv.Close()
	o := opts("sse", srv.URL)
	o.streams = 1
	r, _ := runSSE(o)
	if r.Events != 5 || r.OrderErrors != 3 || r.StreamErrors["cut_mid_event"] != 1 {
		t.Fatalf("%s", r.line())
	}
}

func TestOptionsCheck(t *testing.T) {
	for _, tt := range []struct {
		url string
		ok  bool
	}{
		{"http://127.0.0.1:8080/x", true},
		{"http://localhost:8080/x", true},
		{"http://[::1]:8080/x", true},
		{"http://127.3.2.1:8080/x", true},
		{"http://10.0.0.1:8080/x", false},
		{"http://example.com:80/x", false},
		{"https://127.0.0.1:8443/x", false},
		{"http://127.0.0.1/x", false},
	} {
		o := opts("http", tt.url)
		if err := o.check(); (err == nil) != tt.ok {
			t.Errorf("%s: err = %v", tt.url, err)
		}
	}
	o := opts("http", "http://127.0.0.1:1/")
	o.duration = time.Hour
	if o.check() == nil {
		t.Error("a one-hour run was accepted")
	}
	o = opts("http", "http://127.0.0.1:1/")
	o.sessions = -1
	if o.check() == nil {
		t.Error("-sessions -1 was accepted")
	}
	o.sessions, o.sessHdr = 10, ""
	if o.check() == nil {
		t.Error("-sessions without a header name was accepted")
	}
}

func TestHist(t *testing.T) {
	var h hist
	for i := 1; i <= 1000; i++ {
		h.add(time.Duration(i) * time.Microsecond)
	}
	for _, tt := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Microsecond}, {0.9, 900 * time.Microsecond}, {0.99, 990 * time.Microsecond}} {
		got := h.quantile(tt.q)
		if d := float64(got-tt.want) / float64(tt.want); d > 0.02 || d < -0.02 {
			t.Errorf("q%.2f = %v, want %v ±2%%", tt.q, got, tt.want)
		}
	}
	for _, ns := range []int64{0, 1, 127, 128, 129, 255, 256, 1e6, 1e9, 1e12} {
		b := bucket(ns)
		if lo, hi := lowerBound(b), lowerBound(b+1); ns < lo || ns >= hi {
			t.Errorf("%d ns in bucket [%d, %d)", ns, lo, hi)
		}
	}
}
