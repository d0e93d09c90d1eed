package admin

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/wasmgate/wasmgate/gateway/config"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// start runs a server on a loopback port and stops it when the test ends.
func start(t *testing.T, token string, gather prometheus.Gatherer) (*Server, *http.Client) {
	t.Helper()
	s := New(config.Admin{Listen: "127.0.0.1:0", Token: token}, gather, nil)
	s.Handle("GET /secret", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "secret data\n")
	}), true)
	s.Handle("GET /open/{name}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello "+r.PathValue("name")+"\n")
	}), false)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return s, c
}

type answer struct {
	code int
	body string
	hdr  http.Header
}

func get(t *testing.T, c *http.Client, url string, hdr map[string]string) answer {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{resp.StatusCode, string(b), resp.Header}
}

func TestHealthAndReadiness(t *testing.T) {
	s, c := start(t, "", nil)
	base := "http://" + s.Addr()

	if a := get(t, c, base+"/healthz", nil); a.code != 200 || a.body != "ok\n" {
		t.Errorf("/healthz = %d %q", a.code, a.body)
	}
	for i, step := range []struct {
		set      func()
		wantCode int
		wantBody string
	}{
		{func() {}, 503, "not ready: starting\n"},
		{func() { s.SetReady(true) }, 200, "ready\n"},
		{func() { s.SetUnready("shutting down") }, 503, "not ready: shutting down\n"},
		{func() { s.SetReady(true) }, 200, "ready\n"},
		{func() { s.SetReady(false) }, 503, "not ready: not ready\n"},
	} {
		step.set()
		a := get(t, c, base+"/readyz", nil)
		if a.code != step.wantCode || a.body != step.wantBody {
			t.Errorf("step %d: /readyz = %d %q, want %d %q", i, a.code, a.body, step.wantCode, step.wantBody)
		}
	}
	if a := get(t, c, base+"/nope", nil); a.code != 404 {
		t.Errorf("/nope = %d", a.code)
	}
}

func TestMetrics(t *testing.T) {
	reg := NewRegistry()
	ctr := prometheus.NewCounter(prometheus.CounterOpts{Name: "wasmgate_admin_test_total", Help: "test"})
	reg.MustRegister(ctr)
	ctr.Add(7)
	s, c := start(t, "tok", reg)

	a := get(t, c, "http://"+s.Addr()+"/metrics", nil)
	if a.code != 200 {
		t.Fatalf("/metrics = %d %q", a.code, a.body)
	}
	if ct := a.hdr.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q", ct)
	}
	for _, want := range []string{"wasmgate_admin_test_total 7", "go_goroutines ", "process_cpu_seconds_total ", "# HELP wasmgate_admin_test_total test"} {
		if !strings.Contains(a.body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestAuth(t *testing.T) {
	const token = "s3cret-token"
	for _, tc := range []struct {
		name       string
		configured string
		path       string
		authz      string
		wantCode   int
		wantBody   string
		wantChall  bool
	}{
		{"no token configured", "", "/secret", "Bearer " + token, 403, "admin token not configured\n", false},
		{"no token configured, no header", "", "/secret", "", 403, "admin token not configured\n", false},
		{"missing header", token, "/secret", "", 401, "missing bearer token\n", true},
		{"wrong token", token, "/secret", "Bearer nope", 401, "invalid admin token\n", true},
		{"token prefix", token, "/secret", "Bearer s3cret", 401, "invalid admin token\n", true},
		{"token plus suffix", token, "/secret", "Bearer " + token + "x", 401, "invalid admin token\n", true},
		{"basic scheme", token, "/secret", "Basic " + token, 401, "missing bearer token\n", true},
		{"bare token", token, "/secret", token, 401, "missing bearer token\n", true},
		{"empty bearer", token, "/secret", "Bearer ", 401, "missing bearer token\n", true},
		{"right token", token, "/secret", "Bearer " + token, 200, "secret data\n", false},
		{"scheme case-insensitive", token, "/secret", "bearer " + token, 200, "secret data\n", false},
		{"open endpoint without token", token, "/open/x", "", 200, "hello x\n", false},
		{"open endpoint, none configured", "", "/open/y", "", 200, "hello y\n", false},
		{"healthz never needs a token", token, "/healthz", "", 200, "ok\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, c := start(t, tc.configured, nil)
			hdr := map[string]string{}
			if tc.authz != "" {
				hdr["Authorization"] = tc.authz
			}
			a := get(t, c, "http://"+s.Addr()+tc.path, hdr)
			if a.code != tc.wantCode || a.body != tc.wantBody {
				t.Errorf("got %d %q, want %d %q", a.code, a.body, tc.wantCode, tc.wantBody)
			}
			if got := a.hdr.Get("WWW-Authenticate"); (got != "") != tc.wantChall || (tc.wantChall && !strings.HasPrefix(got, "Bearer")) {
				t.Errorf("WWW-Authenticate %q, want challenge=%v", got, tc.wantChall)
			}
		})
	}
}

func TestHandleAfterStart(t *testing.T) {
	s, c := start(t, "t", nil)
	s.Handle("POST /late", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "late\n")
	}), true)
	req, _ := http.NewRequest("POST", "http://"+s.Addr()+"/late", nil)
	req.Header.Set("Authorization", "Bearer t")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("POST /late = %d", resp.StatusCode)
	}
	if a := get(t, c, "http://"+s.Addr()+"/late", nil); a.code != http.StatusMethodNotAllowed {
		t.Errorf("GET /late = %d, want 405", a.code)
	}
}

func TestHeaderLimit(t *testing.T) {
	s, _ := start(t, "", nil)
	conn, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	big := strings.Repeat("a", 64<<10)
	if _, err := io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: "+big+"\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("status %d, want 431", resp.StatusCode)
	}
}

func TestStartErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	s := New(config.Admin{Listen: busy.Addr().String()}, nil, nil)
	if err := s.Start(); err == nil || !strings.Contains(err.Error(), busy.Addr().String()) {
		t.Errorf("Start on a busy port: %v", err)
	}

	disabled := New(config.Admin{}, nil, nil)
	if err := disabled.Start(); err != nil || disabled.Addr() != "" {
		t.Errorf("disabled: Start %v, Addr %q", err, disabled.Addr())
	}
	if err := disabled.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown of a server never started: %v", err)
	}

	twice, _ := start(t, "", nil)
	if err := twice.Start(); err == nil {
		t.Error("second Start succeeded")
	}
}

func TestShutdown(t *testing.T) {
	s := New(config.Admin{Listen: "127.0.0.1:0"}, nil, nil)
	entered := make(chan struct{})
	release := make(chan struct{})
	s.Handle("GET /slow", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		io.WriteString(w, "done\n")
	}), false)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	addr := s.Addr()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}

	got := make(chan answer, 1)
	go func() {
		resp, err := c.Get("http://" + addr + "/slow")
		if err != nil {
			got <- answer{body: err.Error()}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- answer{code: resp.StatusCode, body: string(b)}
	}()
	<-entered
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	// Shutdown waits for the request in flight.
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if a := <-got; a.code != 200 || a.body != "done\n" {
		t.Errorf("in-flight request got %d %q", a.code, a.body)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("still accepting after Shutdown")
	}

	// A deadline that passes cuts the remaining requests.
	s2 := New(config.Admin{Listen: "127.0.0.1:0"}, nil, nil)
	entered2 := make(chan struct{})
	s2.Handle("GET /stuck", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered2)
		<-r.Context().Done()
	}), false)
	if err := s2.Start(); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		resp, err := c.Get("http://" + s2.Addr() + "/stuck")
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	<-entered2
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s2.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown past its deadline: %v", err)
	}
	<-errc
}
