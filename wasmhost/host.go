// Package wasmhost runs proxy-wasm (ABI v0.2.1 and 0.2.0) plugins on wazero
// and plugs them into the proxy through the gateway/chain seam.
//
// Why it is shaped this way:
//
//   - A plugin is compiled once per version (compiler engine, on-disk
//     compilation cache) and runs in a bounded pool of VMs. A VM is one
//     module instance in a runtime with the plugin's memory limit; calls
//     into it are serialized, and a request keeps the VM it started on
//     because its context lives in that VM's linear memory.
//   - CPU limits: every module is instrumented by wasmhost/internal/meter
//     (fuel charged per block, a yield to the host every ~1 ms of guest
//     work) and runs without WithCloseOnContextDone, whose per-call
//     goroutine and per-loop-iteration exit cost 5-10x on small calls. A
//     module the meter refuses falls back to WithCloseOnContextDone plus one
//     watchdog goroutine that closes overdue modules; never unprotected.
//     Calls use contexts with no Done channel.
//   - A trap, timeout or out-of-memory poisons the VM: it is discarded, a
//     fresh one replaces it (with backoff when it keeps crashing), and the
//     plugin's failure_policy answers the requests it held. Nothing a guest
//     does reaches the proxy as a panic or an unbounded wait.
//   - A plugin's configured name is a slot; versions of the module come and
//     go behind it (Reload) with an atomic swap, so chains built once keep
//     working across hot reloads and requests in flight finish on the
//     version they started on.
//
// # ABI coverage
//
// Every host function of the v0.2.1 spec is provided in module "env", so
// any module built against it links. Served: proxy_log, proxy_get_log_level,
// proxy_get_current_time_nanoseconds, proxy_set_tick_period_milliseconds,
// proxy_set_effective_context, proxy_done, proxy_get_buffer_bytes,
// proxy_set_buffer_bytes, proxy_get_buffer_status, proxy_get_header_map_size,
// proxy_get_header_map_pairs, proxy_set_header_map_pairs,
// proxy_get_header_map_value, proxy_add_header_map_value,
// proxy_replace_header_map_value, proxy_remove_header_map_value,
// proxy_continue_stream and proxy_close_stream (HTTP_REQUEST,
// HTTP_RESPONSE), proxy_get_status, proxy_send_local_response,
// proxy_http_call, proxy_set_shared_data, proxy_get_shared_data,
// proxy_register_shared_queue, proxy_resolve_shared_queue,
// proxy_enqueue_shared_queue, proxy_dequeue_shared_queue,
// proxy_define_metric, proxy_record_metric, proxy_increment_metric,
// proxy_get_metric, proxy_get_property, proxy_set_property,
// proxy_call_foreign_function. Return UNIMPLEMENTED: proxy_grpc_call,
// proxy_grpc_stream, proxy_grpc_send, proxy_grpc_cancel, proxy_grpc_close,
// and proxy_continue_stream/proxy_close_stream on the TCP stream types
// (DOWNSTREAM, UPSTREAM). Trailer maps are empty and read-only (the proxy
// has no trailers). wasi_snapshot_preview1 is wazero's, with no files, no
// environment, no arguments, real clocks, crypto randomness, and stdout /
// stderr to the log (INFO / ERROR) with the plugin's name, rate-limited.
//
// Host choices the spec leaves open: vm_id is the plugin name (shared data
// and queues are shared by a plugin's VMs and versions); plugin_root_id is
// ""; proxy_on_http_call_response and proxy_on_queue_ready go to the root
// context that made the call or registered the queue; response callbacks
// run in reverse chain order, as in Envoy; SSE responses arrive as one
// event per proxy_on_response_body.
package wasmhost

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tetratelabs/wazero"

	"github.com/wasmgate/wasmgate/gateway/chain"
	"github.com/wasmgate/wasmgate/gateway/config"
	"github.com/wasmgate/wasmgate/wasmhost/internal/meter"
)

// Options configures a Host.
type Options struct {
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// CacheDir is the on-disk compilation cache; "" compiles in memory only.
	CacheDir string
	// MaxCallsInFlight caps Wasm calls running at once across all plugins
	// (wasm.max_calls_in_flight); 0 means 1024.
	MaxCallsInFlight int
	// HTTP serves proxy_http_call; nil makes every http_call fail with
	// INTERNAL_FAILURE.
	HTTP HTTPCaller
	// Foreign are the functions plugins reach with
	// proxy_call_foreign_function, by name.
	Foreign map[string]ForeignFunc

	// noCPULimit runs guests without the CPU-limit mechanism. Benchmarks
	// use it to price the mechanism; never set in production.
	noCPULimit bool
	// noMeter uses the watchdog mechanism (WithCloseOnContextDone plus
	// CloseWithExitCode) even for modules the meter can instrument.
	noMeter bool
}

// HTTPCaller sends a plugin's proxy_http_call through the gateway's upstream
// pools. headers carries ":method", ":path" and ":authority"; upstream names
// the configured upstream.
type HTTPCaller interface {
	Call(ctx context.Context, upstream string, headers chain.Headers, body []byte, timeout time.Duration) (status int, respHeaders chain.Headers, respBody []byte, err error)
}

// ForeignFunc is a host function a plugin calls by name with
// proxy_call_foreign_function. It must not block for long.
type ForeignFunc func(plugin string, args []byte) ([]byte, error)

// PluginStatus describes one configured plugin for the admin API.
type PluginStatus struct {
	Name      string    `json:"name"`
	File      string    `json:"file"`
	SHA256    string    `json:"sha256"`
	Version   int       `json:"version"`
	LoadedAt  time.Time `json:"loaded_at"`
	LastError string    `json:"last_error,omitempty"`
	ErrorAt   time.Time `json:"last_error_at,omitzero"`
	VMs       int       `json:"vms"`
	InFlight  int       `json:"requests_in_flight"`
	Failures  uint64    `json:"vm_failures"`
	ABI       string    `json:"abi"`
	// CPULimit is how cpu_limit is enforced for the current version:
	// "meter" (instrumented module) or "watchdog" (the fallback).
	CPULimit string `json:"cpu_limit_mechanism"`
}

// Host runs every configured plugin. It is safe for concurrent use.
type Host struct {
	log     *slog.Logger
	opts    Options
	cache   wazero.CompilationCache
	metrics *hostMetrics
	calls   chan struct{} // one token per Wasm call in flight
	slots   map[string]*slot
	order   []string
	shared  *sharedRegistry
	dog     *watchdog

	// slots and order are replaced whole (never mutated once published)
	// by a configuration update, under slotsMu; see update.go.
	slotsMu  sync.RWMutex
	draining map[*slot]struct{} // replaced by an update, not closed yet

	ctx    context.Context // canceled by Close: background work stops
	cancel context.CancelFunc
	bgMu   sync.Mutex
	bg     sync.WaitGroup
	closed atomic.Bool
	ready  atomic.Bool // every slot exists (metrics may iterate them)
	slice  int64       // meter units per slice; 0: metering off
	rate   meter.Rate  // calibrated guest work per second
}

// New compiles and starts every plugin. The error names the plugin that
// failed; nothing is left running when it is returned.
func New(ctx context.Context, plugins []config.Plugin, opts Options) (*Host, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	if opts.MaxCallsInFlight <= 0 {
		opts.MaxCallsInFlight = 1024
	}
	h := &Host{
		log:   opts.Logger,
		opts:  opts,
		calls: make(chan struct{}, opts.MaxCallsInFlight),
		slots: map[string]*slot{},
	}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	h.shared = newSharedRegistry(h)
	var err error
	if h.metrics, err = newHostMetrics(opts.Registerer, h); err != nil {
		return nil, err
	}
	if opts.CacheDir != "" {
		if err := os.MkdirAll(opts.CacheDir, 0o755); err != nil {
			return nil, fmt.Errorf("wasm compilation cache %s: %w", opts.CacheDir, err)
		}
		if h.cache, err = wazero.NewCompilationCacheWithDir(opts.CacheDir); err != nil {
			return nil, fmt.Errorf("wasm compilation cache %s: %w", opts.CacheDir, err)
		}
	} else {
		h.cache = wazero.NewCompilationCache()
	}
	if !opts.noCPULimit && !opts.noMeter {
		h.rate = meterRate(ctx, h.log)
		h.slice = h.rate.Slice()
	}
	h.dog = newWatchdog(plugins)
	h.dog.enabled = !opts.noCPULimit
	if !opts.noCPULimit {
		h.bg.Add(1)
		go func() { defer h.bg.Done(); h.dog.run(h.ctx) }()
	}
	for _, p := range plugins {
		s := newSlot(h, p)
		h.slots[p.Name] = s
		h.order = append(h.order, p.Name)
		if err := s.loadInitial(ctx); err != nil {
			_ = h.Close(context.Background())
			return nil, err
		}
	}
	h.ready.Store(true)
	return h, nil
}

// Build implements chain.Builder: the chain runs the named plugins in order
// on requests and in reverse order on responses, as Envoy does. A reference
// with its own config gets its own root context (proxy_on_configure is
// called with it now; a false return is an error).
func (h *Host) Build(route string, refs []config.PluginRef) (chain.Chain, error) {
	slots, _ := h.snapshot()
	return h.build(slots, route, refs)
}

func (h *Host) build(slots map[string]*slot, route string, refs []config.PluginRef) (chain.Chain, error) {
	if len(refs) == 0 {
		return chain.Nop, nil
	}
	c := &hostChain{host: h, route: route}
	for _, ref := range refs {
		s, ok := slots[ref.Name]
		if !ok {
			return nil, fmt.Errorf("route %q: unknown plugin %q", route, ref.Name)
		}
		cfg, err := ref.ConfigJSON()
		if err != nil {
			return nil, fmt.Errorf("route %q: plugin %q: %w", route, ref.Name, err)
		}
		idx := 0
		if ref.Config != nil {
			if idx, err = s.addConfig(cfg); err != nil {
				return nil, fmt.Errorf("route %q: plugin %q: %w", route, ref.Name, err)
			}
		}
		c.entries = append(c.entries, chainEntry{slot: s, config: idx})
	}
	return c, nil
}

// Status reports every plugin, in configuration order.
func (h *Host) Status() []PluginStatus {
	slots, order := h.snapshot()
	out := make([]PluginStatus, 0, len(order))
	for _, name := range order {
		out = append(out, slots[name].status())
	}
	return out
}

// Reload compiles the plugin's file again, starts and configures a full
// pool of the new version off the request path, and only then swaps it in.
// Requests in flight finish on the old VMs, which close when drained. On
// error the old version keeps serving and the error is reported by Status.
func (h *Host) Reload(ctx context.Context, name string) error {
	slots, _ := h.snapshot()
	s, ok := slots[name]
	if !ok {
		return fmt.Errorf("reload: unknown plugin %q", name)
	}
	if h.closed.Load() {
		return errors.New("reload: host is closed")
	}
	return s.reload(ctx)
}

// Plugins lists the configured plugin names in order.
func (h *Host) Plugins() []string {
	_, order := h.snapshot()
	return append([]string(nil), order...)
}

// Close stops every plugin: timers, HTTP calls in flight, VMs, runtimes.
// Streams still open fail per policy afterwards.
func (h *Host) Close(ctx context.Context) error {
	h.bgMu.Lock() // no goBG between this and bg.Wait
	first := h.closed.CompareAndSwap(false, true)
	h.bgMu.Unlock()
	if !first {
		return nil
	}
	h.cancel()
	slots, order := h.snapshot()
	names := append([]string(nil), order...)
	sort.Strings(names)
	all := make([]*slot, 0, len(names))
	for _, n := range names {
		all = append(all, slots[n])
	}
	h.slotsMu.Lock()
	for s := range h.draining {
		all = append(all, s)
	}
	h.draining = nil
	h.slotsMu.Unlock()
	for _, s := range all {
		s.close(ctx)
	}
	done := make(chan struct{})
	go func() { h.bg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("close plugin host: %w", ctx.Err())
	}
	for _, s := range all {
		s.closeRuntimes(ctx)
	}
	if h.cache != nil {
		_ = h.cache.Close(ctx)
	}
	h.metrics.unregister()
	return nil
}

// go runs f in the background, tracked so Close waits for it.
func (h *Host) goBG(f func()) bool {
	h.bgMu.Lock()
	if h.closed.Load() {
		h.bgMu.Unlock()
		return false
	}
	h.bg.Add(1)
	h.bgMu.Unlock()
	go func() {
		defer h.bg.Done()
		f()
	}()
	return true
}

// acquireCall takes one global call slot, waiting until deadline at most.
func (h *Host) acquireCall(deadline time.Time) bool { return sendBy(h.calls, deadline) }

// sendBy takes a slot of a semaphore channel, waiting until deadline at most.
// The fast path allocates no timer.
func sendBy(sem chan struct{}, deadline time.Time) bool {
	select {
	case sem <- struct{}{}:
		return true
	default:
	}
	d := time.Until(deadline)
	if d <= 0 {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case sem <- struct{}{}:
		return true
	case <-t.C:
		return false
	}
}

func (h *Host) releaseCall() { <-h.calls }

// tryEnter takes m's lock and a call slot if both are free now.
func (h *Host) tryEnter(m *vm) bool {
	if !m.lock.tryLock() {
		return false
	}
	select {
	case h.calls <- struct{}{}:
		return true
	default:
		m.lock.unlock()
		return false
	}
}
