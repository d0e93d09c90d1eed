package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wasmgate/wasmgate/gateway/chain"
	"github.com/wasmgate/wasmgate/gateway/config"
	"github.com/wasmgate/wasmgate/internal/filewatch"
	"github.com/wasmgate/wasmgate/wasmhost"
)

// Hot loading. A configuration reload re-reads the file the gateway was
// started with and applies what can change live: routes (the proxy's route
// table is swapped whole), upstreams (new and changed ones get new pools;
// replaced pools drain), plugins (new and changed ones start off the
// request path before anything is swapped; replaced ones close once the
// old route table drained) and session limits. Keys that need a restart
// are reported, never silently ignored. Nothing changes when any step
// fails before the swap.
//
// Plugin reloads (a file changed, POST /plugins/{name}/reload) go through
// wasmhost.Host.Reload, one plugin at a time.

// liveKeys are the configuration keys a reload applies without a restart
// (a key matches itself and everything under it).
var liveKeys = []string{
	"routes", "upstreams", "plugins",
	"sessions.idle_timeout", "sessions.max_sessions", "sessions.cleanup_interval",
	"sessions.capture_body_bytes", "sessions.redact",
	"sse", // the session table's tracking limits and the relay's settings
}

// ReloadReport says what a configuration reload did.
type ReloadReport struct {
	Source    string `json:"source"`
	Routes    Diff   `json:"routes"`
	Upstreams Diff   `json:"upstreams"`
	Plugins   Diff   `json:"plugins"`
	// Applied lists the other keys that changed and apply live.
	Applied []string `json:"applied"`
	// NeedsRestart lists keys that changed but apply only at the next start.
	NeedsRestart []string `json:"needs_restart"`
	// PluginFiles are plugins reloaded because their file changed on disk
	// (unchanged configuration); PluginErrors are those that failed and
	// keep their previous version.
	PluginFiles  []string          `json:"plugin_files_reloaded"`
	PluginErrors map[string]string `json:"plugin_errors,omitempty"`
	TookMS       float64           `json:"took_ms"`
}

// Diff lists names added, changed and removed.
type Diff struct {
	Added   []string `json:"added"`
	Changed []string `json:"changed"`
	Removed []string `json:"removed"`
}

type reloader struct {
	g       *Gateway
	outcome *prometheus.CounterVec
	seconds *prometheus.HistogramVec

	mu      sync.Mutex // one configuration reload at a time
	cur     *config.Config
	watcher *pluginWatcher
	closed  bool
	ctx     context.Context // canceled by close: drains stop waiting
	cancel  context.CancelFunc
	bg      sync.WaitGroup
}

func newReloader(g *Gateway) (*reloader, error) {
	r := &reloader{
		g:   g,
		cur: g.cfg,
		outcome: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wasmgate_reloads_total",
			Help: "Hot reloads by kind (plugin: one plugin's module; config: the configuration file) and result (ok, error).",
		}, []string{"kind", "result"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "wasmgate_reload_duration_seconds",
			Help:    "Time to apply a hot reload, from its start to the new version serving.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"kind"}),
	}
	for _, c := range []prometheus.Collector{r.outcome, r.seconds} {
		if err := g.reg.Register(c); err != nil {
			return nil, fmt.Errorf("register reload metrics: %w", err)
		}
	}
	for _, k := range []string{"plugin", "config"} {
		for _, res := range []string{"ok", "error"} {
			r.outcome.WithLabelValues(k, res)
		}
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	g.admin.Handle("POST /config/reload", http.HandlerFunc(r.serveConfigReload), true)
	return r, nil
}

func (r *reloader) observe(kind string, start time.Time, err error) {
	res := "ok"
	if err != nil {
		res = "error"
	} else {
		r.seconds.WithLabelValues(kind).Observe(time.Since(start).Seconds())
	}
	r.outcome.WithLabelValues(kind, res).Inc()
}

// host is the Wasm plugin host, nil when the gateway runs without one.
func (r *reloader) host() *wasmhost.Host {
	h, _ := r.g.chains.(*wasmhost.Host)
	return h
}

// plugin reloads one plugin's module (file watcher, admin API, SIGHUP).
func (r *reloader) plugin(ctx context.Context, name string) error {
	h := r.host()
	if h == nil {
		return fmt.Errorf("reload plugin %q: no plugin host", name)
	}
	start := time.Now()
	err := h.Reload(ctx, name)
	r.observe("plugin", start, err)
	return err
}

// close stops waiting for drains (Shutdown closes what is left).
func (r *reloader) close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.cancel()
	r.bg.Wait()
}

func (r *reloader) serveConfigReload(w http.ResponseWriter, req *http.Request) {
	ctx, cancel := context.WithTimeout(req.Context(), 60*time.Second)
	defer cancel()
	rep, err := r.g.ReloadConfig(ctx)
	if err != nil {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

// ReloadConfig re-reads the configuration file the gateway was started
// with (Config().Source) and applies it live (see the package's hot-loading
// notes), then reloads every unchanged plugin whose file changed on disk.
// An invalid file changes nothing; the error says why in one line.
func (g *Gateway) ReloadConfig(ctx context.Context) (*ReloadReport, error) {
	if g.reload == nil {
		return nil, errors.New("reload: gateway not built with New")
	}
	start := time.Now()
	rep, err := g.reload.config(ctx)
	g.reload.observe("config", start, err)
	if err != nil {
		g.log.Error("configuration reload failed; nothing changed", "err", err)
		return nil, err
	}
	rep.TookMS = float64(time.Since(start).Microseconds()) / 1000
	g.log.Info("configuration reloaded", "source", rep.Source,
		"routes", rep.Routes, "upstreams", rep.Upstreams, "plugins", rep.Plugins,
		"applied", rep.Applied, "plugin_files", rep.PluginFiles, "took_ms", rep.TookMS)
	if len(rep.NeedsRestart) > 0 {
		g.log.Warn("configuration keys changed that apply only after a restart", "keys", rep.NeedsRestart)
	}
	return rep, nil
}

func (r *reloader) config(ctx context.Context) (*ReloadReport, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	g := r.g
	if r.closed {
		return nil, errors.New("reload: gateway is shutting down")
	}
	src := g.cfg.Source
	if src == "" {
		return nil, errors.New("reload: the gateway was started without a configuration file")
	}
	cfg, err := config.Load(src)
	if err != nil {
		return nil, err
	}
	old := r.cur
	rep := &ReloadReport{Source: src, Applied: []string{}, NeedsRestart: []string{}, PluginFiles: []string{},
		Plugins: newDiff(nil, nil, nil)}
	for _, k := range changedKeys(reflect.ValueOf(*old), reflect.ValueOf(*cfg), "") {
		switch {
		case isLive(k):
			if !strings.HasPrefix(k, "routes") && !strings.HasPrefix(k, "upstreams") && !strings.HasPrefix(k, "plugins") {
				rep.Applied = append(rep.Applied, k)
			}
		default:
			rep.NeedsRestart = append(rep.NeedsRestart, k)
		}
	}
	rep.Routes = diffNamed(old.Routes, cfg.Routes, func(x config.Route) string { return x.Name })

	// Plugins: start what is new or changed; nothing is visible yet.
	h := r.host()
	var upd *wasmhost.Update
	build := g.chains.Build
	if h != nil {
		if upd, err = h.Prepare(ctx, cfg.Plugins); err != nil {
			return nil, err
		}
		build = upd.Build
		rep.Plugins = newDiff(upd.Added, upd.Changed, upd.Removed)
	} else if !reflect.DeepEqual(old.Plugins, cfg.Plugins) {
		// No plugin host to update (started without plugins).
		rep.NeedsRestart = append(rep.NeedsRestart, "plugins")
		cfg.Plugins = old.Plugins
	}
	abort := func(err error) (*ReloadReport, error) {
		if upd != nil {
			upd.Abort(context.Background())
		}
		return nil, err
	}
	chains := make(map[string]chain.Chain, len(cfg.Routes))
	for _, rc := range cfg.Routes {
		c, err := build(rc.Name, rc.Plugins)
		if err != nil {
			return abort(fmt.Errorf("route %q: %w", rc.Name, err))
		}
		chains[rc.Name] = c
	}

	// Swap: upstreams first (routes resolve them), then the route table.
	pu, err := g.pools.Update(cfg.Upstreams)
	if err != nil {
		return abort(err)
	}
	rep.Upstreams = newDiff(pu.Added, pu.Changed, pu.Removed)
	drained, err := g.proxy.SetRoutes(cfg.Routes, chains)
	if err != nil {
		// Unreachable: config validation resolves every route's upstream.
		return abort(err)
	}
	if upd != nil {
		upd.Commit()
	}
	g.table.Reconfigure(cfg.Sessions, cfg.SSE)
	g.proxy.SetLive(cfg.SSE, cfg.Sessions)
	if r.watcher != nil {
		if err := r.watcher.set(cfg.Plugins); err != nil {
			g.log.Error("plugin file watcher not updated", "err", err)
		}
	}
	r.cur = cfg

	// Replaced plugins and pools close once no request can use them.
	r.bg.Add(1)
	go func() {
		defer r.bg.Done()
		select {
		case <-drained:
		case <-r.ctx.Done():
			return
		}
		if upd != nil {
			upd.CloseReplaced(r.ctx)
		}
		if err := g.pools.CloseRetired(r.ctx, pu); err != nil {
			g.log.Debug("replaced upstream pools left to shutdown", "err", err)
		}
	}()

	// Unchanged plugins whose module changed on disk get a new version too.
	if h != nil {
		fresh := append(append([]string(nil), upd.Added...), upd.Changed...)
		for _, p := range cfg.Plugins {
			if slices.Contains(fresh, p.Name) {
				continue
			}
			if sum, ok := h.CurrentSHA256(p.Name); ok && fileSHA256(p.File) != sum {
				if err := r.plugin(ctx, p.Name); err != nil {
					if rep.PluginErrors == nil {
						rep.PluginErrors = map[string]string{}
					}
					rep.PluginErrors[p.Name] = err.Error()
					continue
				}
				rep.PluginFiles = append(rep.PluginFiles, p.Name)
			}
		}
	}
	return rep, nil
}

func fileSHA256(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func isLive(key string) bool {
	for _, k := range liveKeys {
		if key == k || strings.HasPrefix(key, k+".") {
			return true
		}
	}
	return false
}

// changedKeys lists the dotted YAML keys whose values differ between a and
// b (structs of the same type); lists are compared whole.
func changedKeys(a, b reflect.Value, prefix string) []string {
	var out []string
	t := a.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		key := prefix + name
		av, bv := a.Field(i), b.Field(i)
		if f.Type.Kind() == reflect.Struct {
			out = append(out, changedKeys(av, bv, key+".")...)
			continue
		}
		if !reflect.DeepEqual(av.Interface(), bv.Interface()) {
			out = append(out, key)
		}
	}
	return out
}

func newDiff(added, changed, removed []string) Diff {
	nonNil := func(s []string) []string {
		if s == nil {
			return []string{}
		}
		return s
	}
	return Diff{Added: nonNil(added), Changed: nonNil(changed), Removed: nonNil(removed)}
}

func diffNamed[T any](old, cur []T, name func(T) string) Diff {
	d := Diff{Added: []string{}, Changed: []string{}, Removed: []string{}}
	byName := make(map[string]T, len(old))
	for _, x := range old {
		byName[name(x)] = x
	}
	seen := map[string]bool{}
	for _, x := range cur {
		n := name(x)
		seen[n] = true
		if o, ok := byName[n]; !ok {
			d.Added = append(d.Added, n)
		} else if !reflect.DeepEqual(o, x) {
			d.Changed = append(d.Changed, n)
		}
	}
	for _, x := range old {
		if !seen[name(x)] {
			d.Removed = append(d.Removed, name(x))
		}
	}
	return d
}

// pluginWatcher reloads a plugin when its file's content changes on disk
// (written in place or renamed into place); a configuration reload changes
// the set of files with set.
type pluginWatcher struct {
	w      *filewatch.Watcher
	mu     sync.Mutex
	byFile map[string][]string // absolute path → plugin names
}

func newPluginWatcher(plugins []config.Plugin, log *slog.Logger, reload func(ctx context.Context, name string) error) (*pluginWatcher, error) {
	pw := &pluginWatcher{}
	w, err := filewatch.New(log, 0, func(path string) {
		pw.mu.Lock()
		names := append([]string(nil), pw.byFile[path]...)
		pw.mu.Unlock()
		for _, name := range names {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			if err := reload(ctx, name); err != nil {
				log.Error("plugin file changed; reload failed", "plugin", name, "file", path, "err", err)
			}
			cancel()
		}
	})
	if err != nil {
		return nil, fmt.Errorf("watch plugin files: %w", err)
	}
	pw.w = w
	if err := pw.set(plugins); err != nil {
		w.Close()
		return nil, err
	}
	return pw, nil
}

func (pw *pluginWatcher) set(plugins []config.Plugin) error {
	byFile := map[string][]string{}
	var files []string
	for _, p := range plugins {
		abs, err := filepath.Abs(p.File)
		if err != nil {
			return fmt.Errorf("watch plugin %q: %w", p.Name, err)
		}
		if byFile[abs] == nil {
			files = append(files, abs)
		}
		byFile[abs] = append(byFile[abs], p.Name)
	}
	pw.mu.Lock()
	pw.byFile = byFile
	pw.mu.Unlock()
	if err := pw.w.Set(files); err != nil {
		return fmt.Errorf("watch plugin files: %w", err)
	}
	return nil
}

func (pw *pluginWatcher) Close() error { return pw.w.Close() }
