// Package proxy is the gateway's request pipeline on fasthttp: it matches a
// route, resolves the session, runs the route's plugin chain, forwards the
// request through the upstream pools and streams the response back,
// relaying text/event-stream responses event by event.
//
// The hot path (a route without plugins) allocates nothing per request:
// fasthttp request and response objects are pooled, headers are copied and
// rewritten in place, and the chain's header conversion is skipped when the
// chain is empty. Bodies are never buffered whole: request bodies stream to
// the upstream (bounded by limits.max_body_bytes), response bodies stream
// to the client with a per-write deadline, never an absolute one.
//
// Known limits: Upgrade (WebSocket) is treated as hop-by-hop and not
// tunnelled; trailer fields are not relayed; on a route with plugins the
// request body reaches the chain as one call with endOfStream (read whole,
// bounded by limits.max_body_bytes) while response bodies go chunk by chunk.
package proxy

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/wasmgate/wasmgate/gateway/chain"
	"github.com/wasmgate/wasmgate/gateway/config"
	"github.com/wasmgate/wasmgate/gateway/event"
	"github.com/wasmgate/wasmgate/gateway/upstream"
)

// Options configure a Proxy.
type Options struct {
	Config    *config.Config
	Upstreams *upstream.Pools
	// Chains maps route names to their plugin chains; a missing route gets
	// chain.Nop.
	Chains   map[string]chain.Chain
	Sessions Sessions
	Sink     event.Sink
	Replayer event.Replayer
	Logger   *slog.Logger
	// Registerer receives the proxy's metrics; nil registers nothing.
	Registerer prometheus.Registerer
}

// Proxy serves client requests.
type Proxy struct {
	cfg      *config.Config
	table    atomic.Pointer[routeTable]   // swapped whole by SetRoutes
	live     atomic.Pointer[liveSettings] // replaced by SetLive
	ups      *upstream.Pools
	log      *slog.Logger
	m        *metrics
	ids      *requestIDs
	sessions Sessions
	sink     event.Sink
	replayer event.Replayer

	maxBody        int64
	maxHeaders     int
	writeTimeout   time.Duration
	writeDeadlines *writeDeadlines
	reads          *readLimits // nil: no header or idle limit
	clientIPs      *clientIPs
	// bodyTimeout is limits.idle_timeout, or read_header_timeout when that
	// is 0, as for the idle wait (newReadLimits) and with fasthttp's own
	// deadlines before: a request body is never left without a limit.
	bodyTimeout time.Duration

	parsers   sync.Pool      // *pooledParser
	streams   sync.WaitGroup // open SSE relays
	closing   chan struct{}
	closeOnce sync.Once

	relaysMu     sync.Mutex
	relays       map[*relayState]struct{} // open SSE relays, for Close
	relaysClosed bool

	// Connections against limits.max_conns: those fasthttp serves
	// (counted by connState) and those the SSE relay hijacked from it.
	maxConns int64
	served   atomic.Int64
	hijacked atomic.Int64
}

// serverName is the Server header of the gateway's own responses.
const serverName = "wasmgate"

type route struct {
	cfg    config.Route
	name   string
	host   string
	prefix string
	up     *upstream.Upstream
	chain  chain.Chain
	m      *routeMetrics
	// sessionHeader is cfg.Session.Header in fasthttp's canonical form.
	sessionHeader []byte
}

// New builds a Proxy.
func New(opts Options) (*Proxy, error) {
	cfg := opts.Config
	if cfg == nil {
		return nil, errors.New("proxy: no configuration")
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	p := &Proxy{
		cfg:            cfg,
		log:            log,
		m:              m,
		ids:            newRequestIDs(),
		sessions:       opts.Sessions,
		sink:           opts.Sink,
		replayer:       opts.Replayer,
		maxBody:        int64(cfg.Limits.MaxBodyBytes),
		maxHeaders:     cfg.Limits.MaxHeaders,
		writeTimeout:   cfg.Limits.WriteTimeout.D(),
		writeDeadlines: newWriteDeadlines(),
		reads:          newReadLimits(cfg.Limits.ReadHeaderTimeout.D(), cfg.Limits.IdleTimeout.D()),
		clientIPs:      new(clientIPs),
		bodyTimeout:    cmp.Or(cfg.Limits.IdleTimeout.D(), cfg.Limits.ReadHeaderTimeout.D()),
		closing:        make(chan struct{}),
		relays:         make(map[*relayState]struct{}),
		maxConns:       int64(cfg.Limits.MaxConns),
	}
	if p.sink == nil {
		p.sink = event.Discard
	}
	p.ups = opts.Upstreams
	p.SetLive(cfg.SSE, cfg.Sessions)
	t, err := p.buildRoutes(cfg.Routes, opts.Chains)
	if err != nil {
		return nil, err
	}
	p.table.Store(t)
	return p, nil
}

// match finds the route for host and path: a route naming the host beats
// one that does not, then the longest path prefix wins.
func (t *routeTable) match(host, path []byte) *route {
	if i := lastColon(host); i >= 0 {
		host = host[:i]
	}
	for _, r := range t.routes {
		if r.host != "" && !equalFoldASCII(host, r.host) {
			continue
		}
		if len(path) >= len(r.prefix) && string(path[:len(r.prefix)]) == r.prefix {
			return r
		}
	}
	return nil
}

func lastColon(host []byte) int {
	for i := len(host) - 1; i >= 0; i-- {
		switch host[i] {
		case ':':
			return i
		case ']':
			return -1
		}
	}
	return -1
}

func equalFoldASCII(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// Server returns a fasthttp server configured with the gateway's limits and
// this proxy as its handler.
func (p *Proxy) Server() *fasthttp.Server {
	l := p.cfg.Limits
	return &fasthttp.Server{
		Handler:         p.Serve,
		ErrorHandler:    p.serverError,
		HeaderReceived:  p.headerReceived,
		Name:            serverName,
		ReadBufferSize:  l.MaxHeaderBytes.N(),
		WriteBufferSize: 4 << 10,
		// No ReadTimeout or IdleTimeout: p.reads enforces both without a
		// read deadline per request (see readLimits). A wrapped connection
		// keeping fasthttp's deadlines with fewer updates is no option: it
		// would cost fasthttp its writev of a response larger than the
		// write buffer (one writev only to a *net.TCPConn).
		Concurrency:                  l.MaxConns,
		MaxConnsPerIP:                l.MaxConnsPerIP,
		MaxRequestsPerConn:           l.MaxRequestsPerConn,
		MaxRequestBodySize:           l.MaxBodyBytes.N(),
		StreamRequestBody:            true,
		DisablePreParseMultipartForm: true,
		NoDefaultServerHeader:        true,
		NoDefaultContentType:         true,
		// Serve reads the clock itself (ctx.Time) once per request.
		LazyRequestTime:   true,
		CloseOnShutdown:   true,
		KeepHijackedConns: true, // the SSE relay owns and closes them
		// A worker whose connection was hijacked idles with the stack it
		// grew serving the request; let idle workers go sooner than the
		// default 10s.
		MaxIdleWorkerDuration:         time.Second,
		ConnState:                     p.connState,
		DisableHeaderNamesNormalizing: false,
		Logger:                        fasthttpLogger{p.log},
	}
}

// connState keeps limits.max_conns counting the connections the SSE relay
// hijacked: fasthttp stops counting a connection once it is hijacked, so a
// new connection is refused here when served plus hijacked ones reach the
// limit (fasthttp's own Concurrency limit still bounds the served ones).
func (p *Proxy) connState(c net.Conn, s fasthttp.ConnState) {
	switch s {
	case fasthttp.StateActive:
		if p.reads != nil {
			p.reads.active(c)
		}
	case fasthttp.StateIdle:
		if p.reads != nil {
			p.reads.idled(c)
		}
	case fasthttp.StateNew:
		if n := p.served.Add(1); p.maxConns > 0 && n+p.hijacked.Load() > p.maxConns {
			p.m.rejected.WithLabelValues("503").Inc()
			_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			_, _ = io.WriteString(c, connLimitResponse)
			_ = c.Close()
		} else if p.reads != nil {
			p.reads.opened(c)
		}
	case fasthttp.StateHijacked:
		// Not counted here: the relay's hijack callback moves the
		// connection from served to hijacked. fasthttp reports
		// StateHijacked only once its serving goroutine returns, after
		// starting the callback's, so a stream could already be open and
		// counted as hijacked while still counted as served: a new
		// connection got a spurious 503.
		if p.reads != nil {
			p.reads.closed(c)
		}
	case fasthttp.StateClosed:
		p.served.Add(-1)
		if p.reads != nil {
			p.reads.closed(c)
		}
	}
}

// connLimitResponse refuses a connection over limits.max_conns.
var connLimitResponse = func() string {
	body := "too many connections (limits.max_conns)\n"
	return "HTTP/1.1 503 Service Unavailable\r\nServer: " + serverName +
		"\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: " + strconv.Itoa(len(body)) +
		"\r\nConnection: close\r\n\r\n" + body
}()

// headerReceived replaces the header-read deadline with the (longer) body
// deadline once the header block is in, for requests that have a body. The
// body bytes fasthttp reads before calling the handler (up to 8 KiB, or
// after its 100 Continue) are under that deadline, so the connection leaves
// p.reads' header phase here rather than in Serve.
func (p *Proxy) headerReceived(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	if !p.bodyDeadline(h) {
		return fasthttp.RequestConfig{}
	}
	if p.reads != nil {
		p.reads.handled(ctxOf(h).Conn(), true)
	}
	return fasthttp.RequestConfig{ReadTimeout: p.bodyTimeout}
}

// bodyDeadline says whether headerReceived gives the request h fasthttp's
// body deadline (and so moves its connection out of the header phase).
func (p *Proxy) bodyDeadline(h *fasthttp.RequestHeader) bool {
	cl := h.ContentLength()
	return cl != 0 && cl != -2 && p.bodyTimeout > 0
}

// ctxOf returns the RequestCtx whose request header h is: fasthttp's server
// calls HeaderReceived with &ctx.Request.Header and gives the hook nothing
// else to tell the connection by.
func ctxOf(h *fasthttp.RequestHeader) *fasthttp.RequestCtx {
	var ctx *fasthttp.RequestCtx
	off := unsafe.Offsetof(ctx.Request) + unsafe.Offsetof(ctx.Request.Header)
	return (*fasthttp.RequestCtx)(unsafe.Add(unsafe.Pointer(h), -int(off)))
}

type fasthttpLogger struct{ log *slog.Logger }

func (l fasthttpLogger) Printf(format string, args ...any) {
	l.log.Debug(fmt.Sprintf(format, args...), "component", "fasthttp")
}

// serverError answers requests fasthttp could not parse.
func (p *Proxy) serverError(ctx *fasthttp.RequestCtx, err error) {
	var small *fasthttp.ErrSmallBuffer
	var ne net.Error
	code, reason := fasthttp.StatusBadRequest, "malformed request"
	switch {
	case errors.As(err, &small):
		code, reason = fasthttp.StatusRequestHeaderFieldsTooLarge, "request header block too large"
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		code, reason = fasthttp.StatusRequestEntityTooLarge, "request body too large"
	case errors.Is(err, fasthttp.ErrorInvalidURI):
		// The request line's target (checkTarget's reason for the same),
		// unless the header parsed (a failed one is reset: no Host) with a
		// target that names no authority: fasthttp then took the URI's
		// authority from Host.
		reason = reasonTarget
		h := &ctx.Request.Header
		if uri := h.RequestURI(); len(h.Host()) > 0 && len(uri) > 0 && (uri[0] == '/' || string(uri) == "*") {
			reason = reasonHost
		}
	case errors.As(err, &ne) && ne.Timeout():
		code, reason = fasthttp.StatusRequestTimeout, "request not received in time"
	}
	p.m.rejected.WithLabelValues(fmt.Sprint(code)).Inc()
	p.log.Warn("request rejected", "status", code, "reason", reason, "client", ctx.RemoteAddr().String(), "err", err)
	writeError(ctx, code, reason, nil)
	ctx.SetConnectionClose()
}

func writeError(ctx *fasthttp.RequestCtx, code int, reason string, reqID []byte) {
	closeConn := ctx.Response.ConnectionClose()
	ctx.Response.Reset()
	if closeConn {
		ctx.SetConnectionClose()
	}
	ctx.Response.SetStatusCode(code)
	ctx.Response.Header.SetContentType("text/plain; charset=utf-8")
	if len(reqID) > 0 {
		ctx.Response.Header.SetBytesKV(hdrXRequestID, reqID)
	}
	ctx.Response.SetBodyString(reason + "\n")
}

// Close ends open SSE relays cleanly (each gets its final chain call and
// its client a clean end of stream) and waits for them, at most until
// deadline.
func (p *Proxy) Close(deadline time.Time) {
	p.closeOnce.Do(func() { close(p.closing) })
	p.relaysMu.Lock()
	p.relaysClosed = true
	for rs := range p.relays {
		rs.shutdown()
	}
	p.relaysMu.Unlock()
	done := make(chan struct{})
	go func() { p.streams.Wait(); close(done) }()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-done:
		return
	case <-t.C:
	}
	// Past the deadline: close what is left (a client not taking its last
	// events) and let the relays finish.
	p.relaysMu.Lock()
	for rs := range p.relays {
		rs.force()
	}
	p.relaysMu.Unlock()
	t.Reset(time.Second)
	select {
	case <-done:
	case <-t.C:
	}
}

var _ io.ReadCloser = (*exchange)(nil)
