package proxy_test

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/wasmgate/wasmgate/gateway/chain"
	"github.com/wasmgate/wasmgate/gateway/config"
	"github.com/wasmgate/wasmgate/gateway/event"
	"github.com/wasmgate/wasmgate/gateway/proxy"
	"github.com/wasmgate/wasmgate/gateway/upstream"
)

// testUpstream is a net/http server on loopback.
type testUpstream struct {
	*http.Server
	ln   net.Listener
	addr string
}

func startUpstream(t testing.TB, h http.Handler) *testUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &testUpstream{Server: &http.Server{Handler: h}, ln: ln, addr: ln.Addr().String()}
	go func() { _ = u.Serve(ln) }()
	t.Cleanup(func() { _ = u.Close() })
	return u
}

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// testConfig is a gateway configuration with one upstream (targets) behind
// one catch-all route; mutate adjusts it before validation.
func testConfig(t testing.TB, targets []string, mutate func(*config.Config)) *config.Config {
	t.Helper()
	quoted := make([]string, len(targets))
	for i, tg := range targets {
		quoted[i] = fmt.Sprintf("%q", tg)
	}
	y := fmt.Sprintf(`
listen: 127.0.0.1:0
admin: {listen: ""}
upstreams:
  - {name: up, targets: [%s], max_conns_per_target: 16, conn_wait_timeout: 100ms, dial_timeout: 1s, response_header_timeout: 2s}
routes:
  - {name: r, match: {path_prefix: /}, upstream: up}
storage: {enabled: false}
`, strings.Join(quoted, ","))
	cfg, err := config.Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	if mutate != nil {
		mutate(cfg)
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
	}
	return cfg
}

type gw struct {
	addr  string
	proxy *proxy.Proxy
	pools *upstream.Pools
	reg   *prometheus.Registry
}

func testLogger() *slog.Logger {
	if os.Getenv("WASMGATE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startGateway serves cfg on loopback until the test ends.
func startGateway(t testing.TB, cfg *config.Config, sess proxy.Sessions, sink event.Sink) *gw {
	t.Helper()
	return startGatewayOpts(t, proxy.Options{Config: cfg, Sessions: sess, Sink: sink})
}

func startGatewayChains(t testing.TB, cfg *config.Config, chains map[string]chain.Chain) *gw {
	t.Helper()
	return startGatewayOpts(t, proxy.Options{Config: cfg, Chains: chains})
}

func startGatewayOpts(t testing.TB, opts proxy.Options) *gw {
	t.Helper()
	cfg := opts.Config
	reg := prometheus.NewRegistry()
	log := testLogger()
	pools, err := upstream.NewPools(cfg.Upstreams, log, reg)
	if err != nil {
		t.Fatal(err)
	}
	opts.Upstreams, opts.Logger, opts.Registerer = pools, log, reg
	p, err := proxy.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := p.Server()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = srv.Serve(ln); close(done) }()
	t.Cleanup(func() {
		p.Close(time.Now().Add(2 * time.Second))
		_ = srv.Shutdown()
		// Shutdown misses a listener whose Serve had not started yet.
		_ = ln.Close()
		<-done
		pools.Close()
	})
	return &gw{addr: ln.Addr().String(), proxy: p, pools: pools, reg: reg}
}

// verifyNone checks, after every cleanup of the test ran, that the test
// left no goroutine behind.
func verifyNone(t *testing.T) {
	t.Helper()
	opts := []goleak.Option{
		goleak.IgnoreCurrent(),
		// fasthttp's lazy cleaners sleep for an idle period and exit once
		// their pool is empty; nothing stops them earlier. The last two are
		// process-wide singletons started on first use.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*TCPDialer).tcpAddrsClean"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
	}
	t.Cleanup(func() { goleak.VerifyNone(t, opts...) })
}

// newClient is an HTTP client whose idle connections close with the test.
func newClient(t testing.TB) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

// dialGateway opens a raw connection to addr (a test gateway), closed when
// the test ends, that fails any read or write after timeout.
func dialGateway(t testing.TB, addr string, timeout time.Duration) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(timeout))
	return c
}

// rawRequest sends raw bytes on a fresh connection and returns what comes
// back until the server closes or timeout passes.
func rawRequest(t testing.TB, addr, raw string, timeout time.Duration) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(c)
	return string(b)
}

// statusOf returns the status code of the first response in raw.
func statusOf(raw string) int {
	var code int
	line, _, _ := strings.Cut(raw, "\r\n")
	fmt.Sscanf(line, "HTTP/1.1 %d", &code)
	return code
}
