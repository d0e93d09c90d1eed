// Package admin is the gateway's admin listener: liveness, readiness,
// Prometheus metrics, and the endpoints other parts of the gateway add
// (plugins, sessions, reload) through [Server.Handle].
//
// It runs on net/http rather than fasthttp: it serves a handful of operator
// requests, not traffic, and net/http's ServeMux gives method and wildcard
// patterns for free. It listens on loopback by default. Anything that
// changes state or reveals session data is registered with auth=true and
// needs "Authorization: Bearer <admin.token>"; with no token configured such
// endpoints answer 403 rather than being open, so forgetting the token
// fails closed.
package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wasmgate/wasmgate/gateway/config"
)

// Limits of the admin listener. They are fixed rather than configurable:
// the admin API serves operators and scrapers, not client traffic.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 30 * time.Second
	// writeTimeout bounds each response; a handler that streams for longer
	// (an export) extends it with http.ResponseController.SetWriteDeadline.
	writeTimeout   = 2 * time.Minute
	idleTimeout    = 60 * time.Second
	maxHeaderBytes = 16 << 10
	// maxBodyBytes bounds request bodies of every endpoint.
	maxBodyBytes = 1 << 20
	// maxScrapes bounds concurrent /metrics requests; more get 503.
	maxScrapes    = 4
	scrapeTimeout = 10 * time.Second
)

// Server is the admin HTTP server. Handle may be called before or after
// Start.
type Server struct {
	cfg       config.Admin
	log       *slog.Logger
	mux       *http.ServeMux
	tokenHash [sha256.Size]byte

	ready       atomic.Bool
	notReadyWhy atomic.Pointer[string]

	mu     sync.Mutex
	srv    *http.Server
	ln     net.Listener
	served chan struct{}
}

// New returns a server for cfg that exposes gather on /metrics. It does not
// listen until Start.
func New(cfg config.Admin, gather prometheus.Gatherer, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: log.With("component", "admin"), mux: http.NewServeMux()}
	if cfg.Token != "" {
		s.tokenHash = sha256.Sum256([]byte(cfg.Token))
	}
	s.SetUnready("starting")
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		plain(w, http.StatusOK, "ok")
	})
	s.mux.HandleFunc("GET /readyz", s.readyz)
	if gather != nil {
		s.mux.Handle("GET /metrics", promhttp.HandlerFor(gather, promhttp.HandlerOpts{
			ErrorLog:            slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
			ErrorHandling:       promhttp.ContinueOnError,
			MaxRequestsInFlight: maxScrapes,
			Timeout:             scrapeTimeout,
		}))
	}
	return s
}

// NewRegistry returns a Prometheus registry with the Go runtime and process
// collectors registered: the registry the gateway puts every metric on.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// Handle registers h for pattern (a Go 1.22 ServeMux pattern such as
// "GET /sessions/{id}/events"). With auth, requests need the admin bearer
// token. Like http.ServeMux.Handle it panics on a pattern that is invalid
// or conflicts with one already registered: that is a programming error.
func (s *Server) Handle(pattern string, h http.Handler, auth bool) {
	if auth {
		h = s.requireToken(h)
	}
	s.mux.Handle(pattern, h)
}

// SetReady sets what /readyz answers: 200 when ready, 503 otherwise.
func (s *Server) SetReady(ready bool) {
	if ready {
		s.ready.Store(true)
		return
	}
	s.SetUnready("not ready")
}

// SetUnready makes /readyz answer 503 with reason ("shutting down").
func (s *Server) SetUnready(reason string) {
	s.notReadyWhy.Store(&reason)
	s.ready.Store(false)
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.ready.Load() {
		plain(w, http.StatusOK, "ready")
		return
	}
	plain(w, http.StatusServiceUnavailable, "not ready: "+*s.notReadyWhy.Load())
}

// requireToken wraps h with the bearer-token check. The comparison hashes
// both sides first so that it takes the same time whatever the presented
// token's length and content.
func (s *Server) requireToken(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if s.cfg.Token == "" {
			s.log.Info("admin request refused", "path", r.URL.Path, "remote", r.RemoteAddr, "reason", "admin token not configured")
			plain(w, http.StatusForbidden, "admin token not configured")
			return
		}
		got, ok := bearer(r.Header.Get("Authorization"))
		sum := sha256.Sum256([]byte(got))
		if subtle.ConstantTimeCompare(sum[:], s.tokenHash[:]) != 1 || !ok {
			reason := "invalid admin token"
			if !ok {
				reason = "missing bearer token"
			}
			s.log.Info("admin request refused", "path", r.URL.Path, "remote", r.RemoteAddr, "reason", reason)
			w.Header().Set("WWW-Authenticate", `Bearer realm="wasmgate admin"`)
			plain(w, http.StatusUnauthorized, reason)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// bearer extracts the token from an Authorization value "Bearer <token>"
// (scheme case-insensitive, RFC 7235).
func bearer(v string) (string, bool) {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(v), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// plain writes a one-line text answer.
func plain(w http.ResponseWriter, code int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	fmt.Fprintln(w, msg)
}

// Start listens on admin.listen and serves in the background. It fails when
// the address cannot be bound. With an empty admin.listen it does nothing.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.Listen == "" {
		return nil
	}
	if s.srv != nil {
		return errors.New("admin: already started")
	}
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("admin listen %s: %w", s.cfg.Listen, err)
	}
	s.ln = ln
	s.srv = &http.Server{
		Handler:           http.MaxBytesHandler(s.mux, maxBodyBytes),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	s.served = make(chan struct{})
	srv, served := s.srv, s.served
	go func() {
		defer close(served)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin server stopped", "err", err)
		}
	}()
	s.log.Info("admin listening", "addr", ln.Addr().String(), "token", s.cfg.Token != "")
	return nil
}

// Addr is the address the server listens on ("" before Start or when
// disabled); with port 0 in the configuration it holds the chosen port.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Shutdown stops accepting, waits for requests in flight until ctx is
// done, and returns when the server has stopped.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	srv, served := s.srv, s.served
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	err := srv.Shutdown(ctx)
	if err != nil {
		// Deadline passed with requests still running: cut them.
		srv.Close()
	}
	<-served
	return err
}
