// Package upstream holds the gateway's fixed connection pools: one
// fasthttp.HostClient per target with a hard MaxConns, so no request ever
// opens a connection outside a pool, and a bounded wait for a free one.
//
// Each target has two pools. The ordinary pool serves short exchanges; the
// stream pool serves long-lived responses (SSE), because every open HTTP/1.1
// stream holds its connection for its whole life and would otherwise starve
// ordinary traffic. Neither pool puts a whole-response deadline on a body:
// the ordinary pool bounds silence on each read and write, the stream pool
// bounds only the time to the first response byte.
//
// fasthttp's own retries are off. The pools retry only idempotent requests,
// only onto another target, and only when nothing was sent (dial failed or
// that target's pool stayed full).
package upstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/wasmgate/wasmgate/gateway/config"
)

// ErrNoHealthyTarget is returned when every target of an upstream is ejected.
var ErrNoHealthyTarget = errors.New("no healthy upstream target")

// ErrUnknownUpstream is returned for an upstream name that is not configured.
var ErrUnknownUpstream = errors.New("unknown upstream")

// Pools are the connection pools of every configured upstream.
type Pools struct {
	byName  atomic.Pointer[map[string]*Upstream] // replaced whole by Update
	log     *slog.Logger
	metrics *metrics
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	closed  atomic.Bool

	mu      sync.Mutex
	retired map[*Upstream]struct{} // replaced by Update, not closed yet
}

// Upstream is one named group of targets.
type Upstream struct {
	Name      string
	cfg       config.Upstream
	targets   []*Target
	next      atomic.Uint64
	leastConn bool
	log       *slog.Logger
	m         *metrics
	stop      context.CancelFunc // ends the health-check loop
}

// Target is one upstream address with its two pools.
type Target struct {
	Addr     string
	up       *Upstream
	hc       *fasthttp.HostClient
	stream   *fasthttp.HostClient
	inFlight atomic.Int64
	streams  atomic.Int64
	fails    atomic.Int32
	// ejectedUntil is a UnixNano time; 0 when the target is in service.
	ejectedUntil atomic.Int64
	// down is set by the active health check.
	down atomic.Bool

	errs        [numKinds]prometheus.Counter
	waits       prometheus.Counter
	streamWaits prometheus.Counter
	gauges      []prometheus.Collector // unregistered when the target is retired
}

// NewPools builds the pools for cfgs. Active health checks start at once and
// stop on Close.
func NewPools(cfgs []config.Upstream, log *slog.Logger, reg prometheus.Registerer) (*Pools, error) {
	if log == nil {
		log = slog.Default()
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	if err := checkUpstreams(cfgs); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Pools{log: log, metrics: m, ctx: ctx, cancel: cancel, retired: map[*Upstream]struct{}{}}
	byName := make(map[string]*Upstream, len(cfgs))
	for _, c := range cfgs {
		byName[c.Name] = p.start(c)
	}
	p.byName.Store(&byName)
	return p, nil
}

// checkUpstreams rejects a list that names an upstream twice or has an
// upstream without targets.
func checkUpstreams(cfgs []config.Upstream) error {
	seen := make(map[string]bool, len(cfgs))
	for _, c := range cfgs {
		if seen[c.Name] {
			return fmt.Errorf("upstream %q defined twice", c.Name)
		}
		if len(c.Targets) == 0 {
			return fmt.Errorf("upstream %q has no targets", c.Name)
		}
		seen[c.Name] = true
	}
	return nil
}

// start builds one upstream's pools (c passed checkUpstreams) and starts
// its health checks.
func (p *Pools) start(c config.Upstream) *Upstream {
	m := p.metrics
	u := &Upstream{Name: c.Name, cfg: c, leastConn: c.Balance == "least_conns", log: p.log.With("upstream", c.Name), m: m}
	for _, addr := range c.Targets {
		t := &Target{Addr: addr, up: u}
		t.hc = newHostClient(c, addr, c.MaxConnsPerTarget, false)
		t.stream = newHostClient(c, addr, c.MaxStreamsPerTarget, true)
		m.register(u, t)
		u.targets = append(u.targets, t)
	}
	ctx, stop := context.WithCancel(p.ctx)
	u.stop = stop
	if c.HealthCheck.Path != "" {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			u.checkLoop(ctx)
		}()
	}
	return u
}

// upstreamHeaderBytes bounds an upstream response header block on the
// ordinary pool; the stream pool's bound is firstReadBuffer.
const (
	upstreamHeaderBytes = 8 << 10
	firstReadBuffer     = 4 << 10
)

func noRetry(*fasthttp.Request, int, error) (bool, bool) { return false, false }

func newHostClient(c config.Upstream, addr string, maxConns int, stream bool) *fasthttp.HostClient {
	idle := c.ResponseHeaderTimeout.D()
	dialTimeout := c.DialTimeout.D()
	dconn := func(conn net.Conn) net.Conn {
		if stream {
			return &deadlineConn{Conn: conn, firstByte: idle}
		}
		return &deadlineConn{Conn: conn, idle: idle, baseIdle: idle, firstByte: idle}
	}
	// The read buffer caps an upstream response header block for Do
	// (callouts, health checks); Stream reads through its own readers with
	// the same bounds (see readHeader). Stream connections are held for
	// long, so they get the smaller default.
	readBuf := upstreamHeaderBytes
	if stream {
		readBuf = firstReadBuffer
	}
	hc := &fasthttp.HostClient{
		Addr:                          addr,
		IsTLS:                         c.TLS,
		MaxConns:                      maxConns,
		MaxConnWaitTimeout:            c.ConnWaitTimeout.D(),
		MaxIdleConnDuration:           c.IdleConnTimeout.D(),
		MaxIdemponentCallAttempts:     1,
		RetryIfErr:                    noRetry,
		ConnPoolStrategy:              fasthttp.LIFO,
		NoDefaultUserAgentHeader:      true,
		DisableHeaderNamesNormalizing: false,
		DisablePathNormalizing:        true,
		ReadBufferSize:                readBuf,
		DialTimeout: func(a string, _ time.Duration) (net.Conn, error) {
			conn, err := fasthttp.DialTimeout(a, dialTimeout)
			if err != nil {
				return nil, &DialError{Target: a, Err: err}
			}
			return dconn(conn), nil
		},
	}
	return hc
}

// Get returns the upstream named name.
func (p *Pools) Get(name string) (*Upstream, bool) {
	u, ok := (*p.byName.Load())[name]
	return u, ok
}

// Do sends req to the named upstream and reads the whole response into resp
// (bounded by timeout, 0 = the upstream's own timeouts). It is what plugin
// HTTP callouts use.
func (p *Pools) Do(upstream string, req *fasthttp.Request, resp *fasthttp.Response, timeout time.Duration) error {
	u, ok := (*p.byName.Load())[upstream]
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownUpstream, upstream)
	}
	t, err := u.Do(req, resp, timeout, false)
	if t != nil {
		t.Release()
	}
	return err
}

// Close stops health checks and closes idle connections.
func (p *Pools) Close() {
	if !p.closed.CompareAndSwap(false, true) {
		return
	}
	p.cancel()
	p.wg.Wait()
	for _, u := range *p.byName.Load() {
		u.closeIdle()
	}
	p.mu.Lock()
	for u := range p.retired {
		u.closeIdle()
		delete(p.retired, u)
	}
	p.mu.Unlock()
}

func (u *Upstream) closeIdle() {
	for _, t := range u.targets {
		t.hc.CloseIdleConnections()
		t.stream.CloseIdleConnections()
	}
}

// Do sends req to one of u's targets. With streamBody the response body is
// left on the connection (resp.BodyStream; close it with
// resp.CloseBodyStream) and long selects the stream pool. On success the
// returned Target must be released with Release once the response is done;
// on error it is nil.
func (u *Upstream) Do(req *fasthttp.Request, resp *fasthttp.Response, timeout time.Duration, long bool) (*Target, error) {
	retryable := isIdempotent(req)
	attempts := 1
	if retryable {
		attempts += u.cfg.Retries
	}
	var tried uint64 // bitmask of target indexes tried (first 64)
	var lastErr error
	for a := 0; a < attempts; a++ {
		i, t := u.pick(tried)
		if t == nil {
			if lastErr != nil {
				return nil, lastErr
			}
			return nil, ErrNoHealthyTarget
		}
		tried |= 1 << (uint(i) & 63)
		err := t.do(req, resp, timeout, long)
		if err == nil {
			return t, nil
		}
		lastErr = err
		if !nothingSent(err) {
			break
		}
		if a+1 < attempts {
			u.log.Debug("retrying on another target", "target", t.Addr, "err", err)
		}
	}
	return nil, lastErr
}

func (t *Target) do(req *fasthttp.Request, resp *fasthttp.Response, timeout time.Duration, long bool) error {
	hc, n, waits := t.hc, &t.inFlight, t.waits
	if long {
		hc, n, waits = t.stream, &t.streams, t.streamWaits
	}
	if n.Add(1) > int64(hc.MaxConns) {
		waits.Inc()
	}
	var err error
	if timeout > 0 {
		err = hc.DoTimeout(req, resp, timeout)
	} else {
		err = hc.Do(req, resp)
	}
	if err != nil {
		n.Add(-1)
		t.failed(err)
		return err
	}
	t.fails.Store(0)
	return nil
}

// Release ends the accounting of one response from t (after its body stream
// was closed).
func (t *Target) Release() {
	t.inFlight.Add(-1)
}

// ReleaseStream is Release for a response obtained with long=true.
func (t *Target) ReleaseStream() {
	t.streams.Add(-1)
}

// Failed records a failure seen after Do returned (the body broke).
func (t *Target) Failed(err error) { t.failed(err) }

func (t *Target) failed(err error) {
	k := kindOf(err)
	t.errs[k].Inc()
	if k == kindPoolFull || k == kindClient {
		return // the target is busy, or the client broke the request: not the target's fault
	}
	n := t.fails.Add(1)
	if max := t.up.cfg.Passive.MaxFailures; max > 0 && int(n) >= max {
		until := time.Now().Add(t.up.cfg.Passive.Cooldown.D())
		if t.ejectedUntil.Swap(until.UnixNano()) == 0 {
			t.up.log.Warn("target ejected", "target", t.Addr, "failures", n, "cooldown", t.up.cfg.Passive.Cooldown.D(), "err", err)
		}
		t.fails.Store(0)
	}
}

// Healthy reports whether t is in service (not ejected, not failing
// checks), that is whether it may take requests now.
func (t *Target) Healthy() bool {
	if t.down.Load() {
		return false
	}
	until := t.ejectedUntil.Load()
	if until == 0 {
		return true
	}
	if time.Now().UnixNano() >= until {
		if t.ejectedUntil.CompareAndSwap(until, 0) {
			t.up.log.Info("target back in service", "target", t.Addr)
		}
		return true
	}
	return false
}

// pick chooses a healthy target not in tried.
func (u *Upstream) pick(tried uint64) (int, *Target) {
	n := len(u.targets)
	if n == 1 {
		t := u.targets[0]
		if tried&1 == 0 && t.Healthy() {
			return 0, t
		}
		return -1, nil
	}
	if u.leastConn {
		best, bi := (*Target)(nil), -1
		start := int(u.next.Add(1) % uint64(n))
		for k := 0; k < n; k++ {
			i := (start + k) % n
			t := u.targets[i]
			if tried&(1<<(uint(i)&63)) != 0 || !t.Healthy() {
				continue
			}
			if best == nil || t.load() < best.load() {
				best, bi = t, i
			}
		}
		return bi, best
	}
	start := int(u.next.Add(1) % uint64(n))
	for k := 0; k < n; k++ {
		i := (start + k) % n
		t := u.targets[i]
		if tried&(1<<(uint(i)&63)) == 0 && t.Healthy() {
			return i, t
		}
	}
	return -1, nil
}

func (t *Target) load() int64 { return t.inFlight.Load() + t.streams.Load() }

// Targets returns u's targets (for status pages).
func (u *Upstream) Targets() []*Target { return u.targets }

func isIdempotent(req *fasthttp.Request) bool {
	h := &req.Header
	return h.IsGet() || h.IsHead() || h.IsPut() || h.IsDelete() || h.IsOptions() || h.IsTrace()
}

// nothingSent reports whether err means the request never reached the target.
func nothingSent(err error) bool {
	var de *DialError
	return errors.Is(err, fasthttp.ErrNoFreeConns) || errors.As(err, &de)
}

func (u *Upstream) checkLoop(ctx context.Context) {
	hc := u.cfg.HealthCheck
	tick := time.NewTicker(hc.Interval.D())
	defer tick.Stop()
	for {
		for _, t := range u.targets {
			t.check(hc)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (t *Target) check(hc config.ActiveHC) {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(hc.Path)
	req.Header.SetHost(t.Addr)
	err := t.hc.DoTimeout(req, resp, hc.Timeout.D())
	ok := err == nil && resp.StatusCode() < 500
	if was := !t.down.Load(); was != ok {
		t.down.Store(!ok)
		if ok {
			t.up.log.Info("health check passed", "target", t.Addr)
		} else {
			t.up.log.Warn("health check failed", "target", t.Addr, "status", resp.StatusCode(), "err", err)
		}
	}
}
