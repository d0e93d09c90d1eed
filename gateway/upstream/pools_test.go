package upstream

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"go.uber.org/goleak"

	"github.com/wasmgate/wasmgate/gateway/config"
)

func verifyNone(t *testing.T) {
	opts := []goleak.Option{
		goleak.IgnoreCurrent(),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*TCPDialer).tcpAddrsClean"),
	}
	t.Cleanup(func() { goleak.VerifyNone(t, opts...) })
}

func upstreamServer(t *testing.T, h http.HandlerFunc) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func deadAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	ln.Close()
	return a
}

func upCfg(targets ...string) config.Upstream {
	return config.Upstream{
		Name: "u", Targets: targets, MaxConnsPerTarget: 4, MaxStreamsPerTarget: 4,
		ConnWaitTimeout: config.Duration(100 * time.Millisecond), DialTimeout: config.Duration(time.Second),
		ResponseHeaderTimeout: config.Duration(time.Second), IdleConnTimeout: config.Duration(time.Minute),
		Balance: "round_robin", Passive: config.PassiveHC{MaxFailures: 3, Cooldown: config.Duration(300 * time.Millisecond)},
	}
}

func newPools(t *testing.T, cfgs ...config.Upstream) (*Pools, *prometheus.Registry) {
	reg := prometheus.NewRegistry()
	p, err := NewPools(cfgs, slog.New(slog.DiscardHandler), reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p, reg
}

func get(t *testing.T, u *Upstream, path string) (int, string, error) {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://x" + path)
	l, err := u.Stream(req, nil, nil, resp, false)
	if err != nil {
		return 0, "", err
	}
	var body string
	if l != nil {
		b, rerr := io.ReadAll(resp.BodyStream())
		resp.CloseBodyStream()
		l.Release(rerr == nil)
		body = string(b)
	} else {
		body = string(resp.Body())
	}
	return resp.StatusCode(), body, nil
}

// counterValue returns the value of the series of name whose kind label
// is kind.
func counterValue(t *testing.T, reg *prometheus.Registry, name, kind string) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "kind" && l.GetValue() == kind {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return -1
}

func TestStatus(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code int
	}{
		{fasthttp.ErrNoFreeConns, 503},
		{ErrNoHealthyTarget, 503},
		{fasthttp.ErrTimeout, 504},
		{os.ErrDeadlineExceeded, 504},
		{&DialError{Target: "a", Err: syscall.ECONNREFUSED}, 502},
		{&DialError{Target: "a", Err: fasthttp.ErrDialTimeout}, 504},
		{fmt.Errorf("read: %w", syscall.ECONNRESET), 502},
		{fasthttp.ErrConnectionClosed, 502},
		{errors.New("weird"), 502},
	} {
		code, reason := Status(tc.err)
		if code != tc.code || reason == "" || strings.Contains(reason, "\n") {
			t.Errorf("Status(%v) = %d %q, want %d", tc.err, code, reason, tc.code)
		}
	}
}

func TestRoundRobinAndBodies(t *testing.T) {
	verifyNone(t)
	var hits [2]atomic.Int32
	big := strings.Repeat("b", BufferedBody+1)
	mk := func(i int) string {
		return upstreamServer(t, func(w http.ResponseWriter, r *http.Request) {
			hits[i].Add(1)
			if r.URL.Path == "/big" {
				io.WriteString(w, big)
				return
			}
			fmt.Fprintf(w, "t%d", i)
		})
	}
	p, _ := newPools(t, upCfg(mk(0), mk(1)))
	u, _ := p.Get("u")
	for i := 0; i < 10; i++ {
		code, body, err := get(t, u, "/")
		if err != nil || code != 200 || (body != "t0" && body != "t1") {
			t.Fatalf("%d %q %v", code, body, err)
		}
	}
	if hits[0].Load() != 5 || hits[1].Load() != 5 {
		t.Errorf("round robin: %d / %d", hits[0].Load(), hits[1].Load())
	}
	code, body, err := get(t, u, "/big")
	if err != nil || code != 200 || body != big {
		t.Fatalf("streamed body: %d, %d bytes, %v", code, len(body), err)
	}
	for _, tg := range u.Targets() {
		if tg.inFlight.Load() != 0 {
			t.Errorf("%s: %d in flight after all responses ended", tg.Addr, tg.inFlight.Load())
		}
	}
}

func TestLeastConns(t *testing.T) {
	verifyNone(t)
	release := make(chan struct{})
	var slowHits, fastHits atomic.Int32
	slow := upstreamServer(t, func(w http.ResponseWriter, r *http.Request) {
		slowHits.Add(1)
		<-release
	})
	fast := upstreamServer(t, func(w http.ResponseWriter, r *http.Request) { fastHits.Add(1) })
	c := upCfg(slow, fast)
	c.Balance = "least_conns"
	c.ResponseHeaderTimeout = config.Duration(5 * time.Second)
	p, _ := newPools(t, c)
	u, _ := p.Get("u")
	// Occupy the slow target with two requests.
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); get(t, u, "/") }()
		for deadline := time.Now().Add(2 * time.Second); slowHits.Load() <= int32(i) && time.Now().Before(deadline); {
			// the round-robin tie break may pick fast first; keep adding
			if fastHits.Load() > 0 && slowHits.Load() == int32(i) {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	before := fastHits.Load()
	for i := 0; i < 6; i++ {
		if _, _, err := get(t, u, "/"); err != nil {
			t.Fatal(err)
		}
	}
	if got := fastHits.Load() - before; got != 6 {
		t.Errorf("least_conns sent %d of 6 to the idle target", got)
	}
	close(release)
	wg.Wait()
}

func TestPassiveEjectionAndRecovery(t *testing.T) {
	verifyNone(t)
	dead := deadAddr(t)
	p, reg := newPools(t, upCfg(dead))
	u, _ := p.Get("u")
	for i := 0; i < 3; i++ {
		_, _, err := get(t, u, "/")
		if code, _ := Status(err); code != 502 {
			t.Fatalf("attempt %d: %v", i, err)
		}
	}
	_, _, err := get(t, u, "/")
	if !errors.Is(err, ErrNoHealthyTarget) {
		t.Fatalf("after 3 failures: %v, want no healthy target", err)
	}
	if v := counterValue(t, reg, "wasmgate_upstream_errors_total", "refused"); v != 3 {
		t.Errorf("refused errors metric = %v", v)
	}
	time.Sleep(350 * time.Millisecond)
	if _, _, err := get(t, u, "/"); errors.Is(err, ErrNoHealthyTarget) {
		t.Fatal("target still ejected after the cooldown")
	}
}

func TestActiveHealthCheck(t *testing.T) {
	verifyNone(t)
	var healthy atomic.Bool
	healthy.Store(true)
	addr := upstreamServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" && !healthy.Load() {
			w.WriteHeader(503)
		}
	})
	c := upCfg(addr)
	c.HealthCheck = config.ActiveHC{Path: "/health", Interval: config.Duration(50 * time.Millisecond), Timeout: config.Duration(time.Second)}
	p, _ := newPools(t, c)
	u, _ := p.Get("u")
	wait := func(want bool) {
		t.Helper()
		for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if u.Targets()[0].Healthy() == want {
				return
			}
		}
		t.Fatalf("target healthy=%v never observed", want)
	}
	wait(true)
	healthy.Store(false)
	wait(false)
	if _, _, err := get(t, u, "/"); !errors.Is(err, ErrNoHealthyTarget) {
		t.Fatalf("request to a target failing checks: %v", err)
	}
	healthy.Store(true)
	wait(true)
}

func TestRetryOnlyWhenNothingSent(t *testing.T) {
	verifyNone(t)
	var hits atomic.Int32
	good := upstreamServer(t, func(w http.ResponseWriter, r *http.Request) { hits.Add(1) })
	c := upCfg(deadAddr(t), good)
	c.Retries = 1
	c.Passive.MaxFailures = 100 // keep the dead target in rotation
	p, _ := newPools(t, c)
	u, _ := p.Get("u")
	for i := 0; i < 4; i++ {
		if code, _, err := get(t, u, "/"); err != nil || code != 200 {
			t.Fatalf("idempotent GET %d not retried onto the live target: %d %v", i, code, err)
		}
	}
	// A POST is never retried.
	var failed int
	for i := 0; i < 4; i++ {
		req := fasthttp.AcquireRequest()
		resp := fasthttp.AcquireResponse()
		req.SetRequestURI("http://x/")
		req.Header.SetMethod("POST")
		if _, err := u.Stream(req, nil, nil, resp, false); err != nil {
			failed++
		}
		fasthttp.ReleaseRequest(req)
		fasthttp.ReleaseResponse(resp)
	}
	if failed == 0 {
		t.Error("POST to the dead target was retried elsewhere")
	}
}

func TestStaleKeepAliveRetried(t *testing.T) {
	verifyNone(t)
	// The upstream closes every connection after its response without
	// saying so: the next request on the pooled connection finds it dead.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				c.Read(buf)
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				time.Sleep(20 * time.Millisecond)
			}()
		}
	}()
	p, _ := newPools(t, upCfg(ln.Addr().String()))
	u, _ := p.Get("u")
	for i := 0; i < 5; i++ {
		if code, body, err := get(t, u, "/"); err != nil || code != 200 || body != "ok" {
			t.Fatalf("request %d: %d %q %v", i, code, body, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestDoTimeoutForCallouts(t *testing.T) {
	verifyNone(t)
	addr := upstreamServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(500 * time.Millisecond)
		}
		io.WriteString(w, "pong")
	})
	p, _ := newPools(t, upCfg(addr))
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://x/ping")
	if err := p.Do("u", req, resp, time.Second); err != nil || string(resp.Body()) != "pong" {
		t.Fatalf("Do: %v %q", err, resp.Body())
	}
	req.SetRequestURI("http://x/slow")
	start := time.Now()
	err := p.Do("u", req, resp, 100*time.Millisecond)
	if code, _ := Status(err); code != 504 || time.Since(start) > 400*time.Millisecond {
		t.Fatalf("slow callout: %v after %v", err, time.Since(start))
	}
	if err := p.Do("nope", req, resp, time.Second); !errors.Is(err, ErrUnknownUpstream) {
		t.Fatalf("unknown upstream: %v", err)
	}
}
