// Package demo is the demo upstream that wasmgate is shown, tested and
// benchmarked against: a fasthttp server with one endpoint per kind of
// traffic a gateway must relay. Tests start it on a loopback port with
// [Start] and stop it with [Server.Close] (graceful) or [Server.Kill]
// (every connection cut at once, to test an upstream dying mid-stream).
//
// # Endpoints
//
//	GET  /json               a small fixed JSON object (JSONBody)
//	GET  /bytes?n=N          N bytes (default 1024, at most Options.MaxBytes) with
//	                         Content-Length; byte i is Pattern[i%len(Pattern)];
//	                         streamed when N is over 64 KiB
//	POST /echo, PUT /echo    the request body back, streamed, with the request's
//	                         Content-Type; every request header "Name: v" comes
//	                         back as "X-Echo-Name: v"
//	GET  /headers            {"method":…, "uri":…, "headers":{"Name":["v",…]}}
//	GET  /status/{code}      status code (200-599), body "status N\n"
//	GET  /slow?delay=2s      waits delay (at most 60s) before answering "slow\n"
//	GET  /health             200 "ok\n"
//	GET  /sse?n=N&interval=D&size=B
//	                         text/event-stream of N events (default 10; n=0:
//	                         until the client leaves), one every D (default
//	                         10ms, at most 1h; 0 means no pause), each "id: k"
//	                         and "data: " plus k padded with '.' to B bytes
//	                         (default: no padding), k = 1..N, or from
//	                         Last-Event-ID+1 when that header holds a number.
//	                         Every event is flushed on its own.
//	GET  /sse/mixed          the fixed stream Mixed (below), then the end
//	POST /mcp                MCP-style JSON-RPC 2.0 (see mcp.go)
//	GET  /mcp                SSE stream of the session's notifications
//	DELETE /mcp              ends the session named by Mcp-Session-Id
//
// # The mixed stream
//
// GET /sse/mixed writes these blocks, each flushed on its own, and ends:
//
//	: demo mixed stream
//
//	id: 1
//	data: hello
//
//	id: 2
//	event: shout
//	data: make me loud
//
//	id: 3
//	event: drop
//	data: drop me
//
//	: keep-alive
//
//	id: 4
//	data: line one
//	data: line two
//
//	id: 5
//	event: shout
//	data: second shout
//
//	id: 6
//	event: drop
//	data: drop me too
//
//	id: 7
//	data: bye
//
// Events without "event:" are "message" events. A plugin that upper-cases
// "shout" events and drops "drop" events leaves ids 1, 2, 4, 5, 7.
package demo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// Options configure a Server. The zero value is usable.
type Options struct {
	// Logger receives errors; nil discards them.
	Logger *slog.Logger
	// MaxBytes bounds /bytes?n= (default 1 GiB).
	MaxBytes int64
	// MaxSessions bounds the MCP session table (default 10000); past it
	// initialize answers 503.
	MaxSessions int
	// MaxBodyBytes bounds request bodies (default 1 GiB; /echo streams them).
	MaxBodyBytes int
}

// Server is the demo upstream.
type Server struct {
	opts Options
	log  *slog.Logger
	srv  *fasthttp.Server
	done chan struct{} // closed by Close and Kill: endless streams end

	closeOnce   sync.Once
	ln          *trackingListener
	openStreams atomic.Int64
	mcp         mcpSessions
}

// New returns a Server that is not listening yet; see Serve and Start.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = 1 << 30
	}
	if opts.MaxSessions <= 0 {
		opts.MaxSessions = 10000
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 1 << 30
	}
	s := &Server{opts: opts, log: opts.Logger, done: make(chan struct{})}
	s.mcp.init(opts.MaxSessions)
	s.srv = &fasthttp.Server{
		Handler:            s.Handler,
		Name:               "wasmgate-demo",
		StreamRequestBody:  true,
		MaxRequestBodySize: opts.MaxBodyBytes,
		ReadBufferSize:     32 << 10, // header blocks up to the gateway's 16 KiB default and more
		IdleTimeout:        2 * time.Minute,
		CloseOnShutdown:    true,
		// fasthttp's worker-pool cleaner notices a stop only between naps
		// of this length; keep it short so that Close leaves no goroutine
		// behind for long.
		MaxIdleWorkerDuration: 200 * time.Millisecond,
		Logger:                fasthttpLogger{opts.Logger},
	}
	return s
}

// Start listens on addr (such as "127.0.0.1:0") and serves in the
// background with default Options.
func Start(addr string) (*Server, error) { return StartWith(addr, Options{}) }

// StartWith is Start with options.
func StartWith(addr string, opts Options) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("demo upstream: listen %s: %w", addr, err)
	}
	s := New(opts)
	s.ln = &trackingListener{Listener: ln, conns: map[net.Conn]struct{}{}}
	go s.serve() //nolint:errcheck // ends when Close closes ln
	return s, nil
}

// Serve accepts connections on ln until Close or Kill.
func (s *Server) Serve(ln net.Listener) error {
	s.ln = &trackingListener{Listener: ln, conns: map[net.Conn]struct{}{}}
	return s.serve()
}

func (s *Server) serve() error {
	err := s.srv.Serve(s.ln)
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("demo upstream: %w", err)
	}
	return nil
}

// Addr is the listening address, host:port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// OpenStreams is the number of SSE responses being written now (/sse,
// /sse/mixed, GET /mcp). Tests use it to see that a gateway released an
// upstream stream.
func (s *Server) OpenStreams() int { return int(s.openStreams.Load()) }

// Close stops accepting, ends open streams and waits up to two seconds for
// connections to finish; what is left is cut.
func (s *Server) Close() error {
	s.closeOnce.Do(func() { close(s.done) })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := s.srv.ShutdownWithContext(ctx)
	s.ln.closeAll()
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, net.ErrClosed) {
		return nil // cut, or already killed
	}
	return err
}

// Kill closes the listener and every connection at once, as if the process
// died.
func (s *Server) Kill() {
	s.ln.Close()
	s.ln.closeAll()
	s.closeOnce.Do(func() { close(s.done) })
}

// trackingListener remembers open connections so that Kill can cut them.
type trackingListener struct {
	net.Listener
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, l: l}
	l.mu.Lock()
	l.conns[tc] = struct{}{}
	l.mu.Unlock()
	return tc, nil
}

func (l *trackingListener) closeAll() {
	l.mu.Lock()
	conns := make([]net.Conn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

type trackedConn struct {
	net.Conn
	l    *trackingListener
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}

type fasthttpLogger struct{ log *slog.Logger }

func (l fasthttpLogger) Printf(format string, args ...any) {
	l.log.Warn("demo upstream: " + fmt.Sprintf(format, args...))
}
