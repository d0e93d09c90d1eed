// Package gateway wires wasmgate together: configuration, upstream pools,
// plugin chains, the session table, the session-event recorder, the proxy
// listener and the admin listener. It is the library behind cmd/gateway;
// tests and embedders start a whole gateway with New and Start.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/wasmgate/wasmgate/gateway/admin"
	"github.com/wasmgate/wasmgate/gateway/chain"
	"github.com/wasmgate/wasmgate/gateway/config"
	"github.com/wasmgate/wasmgate/gateway/event"
	"github.com/wasmgate/wasmgate/gateway/proxy"
	"github.com/wasmgate/wasmgate/gateway/session"
	"github.com/wasmgate/wasmgate/gateway/upstream"
)

// Options are what New takes besides the configuration. Zero values pick
// the defaults.
type Options struct {
	Logger *slog.Logger
	// Registry receives every metric; nil makes a new one with the Go and
	// process collectors.
	Registry *prometheus.Registry
	// Chains builds the plugin chains; nil uses the Wasm plugin host
	// (newChains).
	Chains chain.Builder
	// Sink receives session events; nil uses the configured recorder
	// (newRecorder).
	Sink     event.Sink
	Replayer event.Replayer
}

// Gateway is one running wasmgate.
type Gateway struct {
	cfg   *config.Config
	log   *slog.Logger
	reg   *prometheus.Registry
	pools *upstream.Pools
	proxy *proxy.Proxy
	srv   *fasthttp.Server
	admin *admin.Server
	table *session.Table

	chains      chain.Builder
	chainCloser io.Closer
	sink        event.Sink
	replayer    event.Replayer
	recCloser   io.Closer
	reload      *reloader // hot reloads (reload.go)

	mu        sync.Mutex
	ln        net.Listener
	serveErr  chan error
	shutdown  bool
	bgCancel  context.CancelFunc
	bgDone    sync.WaitGroup
	closeOnce sync.Once
}

// New builds a gateway from cfg without listening yet.
func New(cfg *config.Config, opts Options) (g *Gateway, err error) {
	if cfg == nil {
		return nil, errors.New("gateway: no configuration")
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	reg := opts.Registry
	if reg == nil {
		reg = admin.NewRegistry()
	}
	g = &Gateway{cfg: cfg, log: log, reg: reg}
	g.admin = admin.New(cfg.Admin, reg, log)
	defer func() {
		if err != nil {
			g.closeParts()
		}
	}()
	if g.reload, err = newReloader(g); err != nil {
		return nil, err
	}

	if g.pools, err = upstream.NewPools(cfg.Upstreams, log, reg); err != nil {
		return nil, fmt.Errorf("upstream pools: %w", err)
	}

	g.chains = opts.Chains
	if g.chains == nil {
		if g.chains, g.chainCloser, err = newChains(cfg, g); err != nil {
			return nil, fmt.Errorf("plugins: %w", err)
		}
	}
	chains := make(map[string]chain.Chain, len(cfg.Routes))
	for _, r := range cfg.Routes {
		c, err := g.chains.Build(r.Name, r.Plugins)
		if err != nil {
			return nil, fmt.Errorf("route %q: %w", r.Name, err)
		}
		chains[r.Name] = c
	}

	g.sink, g.replayer = opts.Sink, opts.Replayer
	if g.sink == nil {
		if g.sink, g.replayer, g.recCloser, err = newRecorder(cfg, g); err != nil {
			return nil, fmt.Errorf("recorder: %w", err)
		}
	}

	g.table = session.NewTable(cfg.Sessions, cfg.SSE, g.sink, log.With("component", "sessions"), reg)

	if g.proxy, err = proxy.New(proxy.Options{
		Config:     cfg,
		Upstreams:  g.pools,
		Chains:     chains,
		Sessions:   sessions{g.table},
		Sink:       g.sink,
		Replayer:   g.replayer,
		Logger:     log,
		Registerer: reg,
	}); err != nil {
		return nil, err
	}
	g.srv = g.proxy.Server()
	return g, nil
}

// Config returns the configuration the gateway runs.
func (g *Gateway) Config() *config.Config { return g.cfg }

// Logger returns the gateway's logger.
func (g *Gateway) Logger() *slog.Logger { return g.log }

// Registry returns the registry every metric is on.
func (g *Gateway) Registry() *prometheus.Registry { return g.reg }

// Upstreams returns the upstream pools (plugin HTTP callouts use them).
func (g *Gateway) Upstreams() *upstream.Pools { return g.pools }

// Start listens on the proxy (and admin) addresses and serves in the
// background.
func (g *Gateway) Start() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ln != nil || g.shutdown {
		return errors.New("gateway: already started")
	}
	ln, err := net.Listen("tcp", g.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", g.cfg.Listen, err)
	}
	if err := g.admin.Start(); err != nil {
		_ = ln.Close()
		return err
	}
	g.ln = ln
	g.serveErr = make(chan error, 1)
	go func() { g.serveErr <- g.srv.Serve(ln) }()
	bg, cancel := context.WithCancel(context.Background())
	g.bgCancel = cancel
	g.bgDone.Add(1)
	go func() {
		defer g.bgDone.Done()
		g.table.Run(bg)
	}()
	g.admin.SetReady(true)
	g.log.Info("gateway listening", "addr", ln.Addr().String(), "admin", g.admin.Addr())
	return nil
}

// AdminAddr is the admin listener's address ("" before Start or when
// admin.listen is empty).
func (g *Gateway) AdminAddr() string { return g.admin.Addr() }

// Admin returns the admin server, for registering more endpoints before
// Start.
func (g *Gateway) Admin() *admin.Server { return g.admin }

// Addr is the proxy listener's address ("" before Start).
func (g *Gateway) Addr() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ln == nil {
		return ""
	}
	return g.ln.Addr().String()
}

// Shutdown stops accepting, lets in-flight requests finish (bounded by
// shutdown.drain_timeout and ctx), ends SSE streams cleanly, then closes the
// plugin chains and, last, the recorder so it flushes everything.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.mu.Lock()
	if g.shutdown {
		g.mu.Unlock()
		return nil
	}
	g.shutdown = true
	ln := g.ln
	g.mu.Unlock()

	var errs []error
	g.admin.SetUnready("shutting down")
	if ln != nil {
		drain := g.cfg.Shutdown.DrainTimeout.D()
		dctx, cancel := context.WithTimeout(ctx, drain)
		deadline, _ := dctx.Deadline()
		// SSE streams run on hijacked connections the server no longer
		// tracks: wait for the proxy to end them before closing the parts
		// they use.
		streamsDone := make(chan struct{})
		go func() { g.proxy.Close(deadline); close(streamsDone) }()
		if err := g.srv.ShutdownWithContext(dctx); err != nil {
			errs = append(errs, fmt.Errorf("drain: %w", err))
		}
		<-streamsDone
		cancel()
		if err := <-g.serveErr; err != nil {
			errs = append(errs, fmt.Errorf("serve: %w", err))
		}
	}
	errs = append(errs, g.closeParts()...)
	if err := g.admin.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("admin: %w", err))
	}
	g.log.Info("gateway stopped")
	return errors.Join(errs...)
}

// Sessions returns the session table.
func (g *Gateway) Sessions() *session.Table { return g.table }

// sessions adapts session.Table to proxy.Sessions.
type sessions struct{ t *session.Table }

func (s sessions) Touch(id, route string) (proxy.Session, bool, error) {
	sess, started, err := s.t.Touch(id, route)
	if err != nil {
		return nil, false, err
	}
	return sess, started, nil
}

func (s sessions) End(id, reason string) bool { return s.t.End(id, reason) }

// closeParts closes what New built, recorder last.
func (g *Gateway) closeParts() []error {
	var errs []error
	g.closeOnce.Do(func() {
		if g.reload != nil {
			g.reload.close()
		}
		if g.bgCancel != nil {
			g.bgCancel()
			g.bgDone.Wait()
		}
		if g.table != nil {
			// Every live session gets its SessionEnd before the recorder
			// flushes.
			g.table.Close()
		}
		if g.pools != nil {
			g.pools.Close()
		}
		if g.chainCloser != nil {
			if err := g.chainCloser.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close plugins: %w", err))
			}
		}
		if g.recCloser != nil {
			if err := g.recCloser.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close recorder: %w", err))
			}
		}
	})
	return errs
}
