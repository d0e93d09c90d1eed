package wasmhost

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/wasmgate/wasmgate/wasmhost/internal/meter"

	"github.com/wasmgate/wasmgate/gateway/config"
)

// slot is one configured plugin; versions of its module come and go behind
// it. Chains hold slots, never versions.
type slot struct {
	h        *Host
	name     string
	cfg      config.Plugin
	vmConfig []byte
	m        *pluginMetrics
	logs     *logLimiter

	reloadMu sync.Mutex // one reload or config addition at a time

	mu       sync.Mutex
	configs  [][]byte // root context configurations; 0 is the plugin's own
	cur      atomic.Pointer[version]
	retired  []*version
	nextVer  int
	lastErr  string
	errAt    time.Time
	failures atomic.Uint64
}

func newSlot(h *Host, p config.Plugin) *slot {
	p.SetDefaults()
	s := &slot{h: h, name: p.Name, cfg: p, m: h.metrics.plugin(p.Name)}
	s.logs = newLogLimiter(h.log.With("plugin", p.Name), s.m)
	return s
}

func (s *slot) failOpen() bool { return s.cfg.FailurePolicy == config.FailOpen }

func (s *slot) loadInitial(ctx context.Context) error {
	cfg, err := s.cfg.ConfigJSON()
	if err != nil {
		return fmt.Errorf("plugin %q: %w", s.name, err)
	}
	if s.vmConfig, err = s.cfg.VMConfigJSON(); err != nil {
		return fmt.Errorf("plugin %q: %w", s.name, err)
	}
	s.configs = [][]byte{cfg}
	v, err := s.startVersion(ctx)
	if err != nil {
		s.recordError(err)
		return err
	}
	s.cur.Store(v)
	return nil
}

func (s *slot) recordError(err error) {
	s.mu.Lock()
	s.lastErr = err.Error()
	s.errAt = time.Now()
	s.mu.Unlock()
}

// addConfig registers a route's configuration override and creates its
// root context in every VM of the current version.
func (s *slot) addConfig(cfg []byte) (int, error) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	s.mu.Lock()
	for i, c := range s.configs {
		if bytes.Equal(c, cfg) {
			s.mu.Unlock()
			return i, nil
		}
	}
	idx := len(s.configs)
	s.configs = append(s.configs, cfg)
	s.mu.Unlock()
	v := s.cur.Load()
	if v == nil {
		return idx, nil
	}
	if err := v.addConfig(idx, cfg); err != nil {
		s.mu.Lock()
		s.configs = s.configs[:idx]
		s.mu.Unlock()
		return 0, err
	}
	return idx, nil
}

func (s *slot) configsSnapshot() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.configs...)
}

func (s *slot) reload(ctx context.Context) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	start := time.Now()
	v, err := s.startVersion(ctx)
	if err != nil {
		s.recordError(err)
		s.m.reloads.WithLabelValues("error").Inc()
		s.h.log.Error("plugin reload failed; previous version keeps serving", "plugin", s.name, "err", err)
		return err
	}
	old := s.cur.Swap(v)
	s.mu.Lock()
	s.lastErr, s.errAt = "", time.Time{}
	if old != nil {
		s.retired = append(s.retired, old)
	}
	s.mu.Unlock()
	if old != nil {
		old.retire()
	}
	s.m.reloads.WithLabelValues("ok").Inc()
	s.m.reloadSeconds.Observe(time.Since(start).Seconds())
	s.h.log.Info("plugin reloaded", "plugin", s.name, "version", v.n, "sha256", v.sha[:12], "took", time.Since(start))
	return nil
}

// startVersion reads, validates and compiles the plugin file and starts a
// full pool of VMs, each with every root context configured.
func (s *slot) startVersion(ctx context.Context) (*version, error) {
	wasm, err := os.ReadFile(s.cfg.File)
	if err != nil {
		return nil, fmt.Errorf("plugin %q: %w", s.name, err)
	}
	s.mu.Lock()
	s.nextVer++
	n := s.nextVer
	s.mu.Unlock()
	sum := sha256.Sum256(wasm)
	v := &version{
		s:         s,
		n:         n,
		sha:       hex.EncodeToString(sum[:]),
		loadedAt:  time.Now(),
		memPages:  uint32(int64(s.cfg.MemoryLimit) / 65536),
		recycleAt: uint32(int64(s.cfg.RecycleMemory) / 65536),
		changed:   make(chan struct{}),
		configs:   s.configsSnapshot(),
	}
	if v.memPages < 1 {
		v.memPages = 1
	}
	rt, compiled, abi, metered, err := compilePlugin(ctx, s.h, s.name, wasm, v.memPages, s.cfg.CPUFallback == config.CPUFallbackWatchdog)
	if err != nil {
		return nil, fmt.Errorf("plugin %q (%s): %w", s.name, s.cfg.File, err)
	}
	v.rt, v.mod, v.abi, v.metered = rt, compiled, abi, metered
	for i := 0; i < s.cfg.PoolSize; i++ {
		vm, err := v.newVM(ctx)
		if err != nil {
			v.closeAll(ctx)
			return nil, fmt.Errorf("plugin %q (%s): start VM: %w", s.name, s.cfg.File, err)
		}
		v.mu.Lock() // its ticks may already run and discard it
		v.vms = append(v.vms, vm)
		v.mu.Unlock()
	}
	v.mu.Lock()
	live := len(v.vms)
	v.mu.Unlock()
	s.m.vms.Add(float64(live))
	return v, nil
}

// compilePlugin makes the runtime of one plugin version: the host modules
// (env with the proxy-wasm functions, WASI, the meter's yield) and the
// validated, compiled guest. Memory limits are per runtime in wazero, hence
// one per version.
//
// CPU limits: a module the meter can instrument runs metered, without
// WithCloseOnContextDone (no per-call goroutine, no exit to Go per loop
// iteration). A module it cannot handle is refused with the meter's reason
// or, with cpu_fallback: watchdog, runs with WithCloseOnContextDone plus the
// watchdog (its custom sections stripped, see meter.StripCustomSections): never
// unprotected. The meter decodes all of Wasm 2.0, so what it refuses is in
// practice malformed or hostile.
func compilePlugin(ctx context.Context, h *Host, name string, wasm []byte, memPages uint32, fallback bool) (wazero.Runtime, wazero.CompiledModule, string, bool, error) {
	metered := false
	if h.slice > 0 {
		inst, err := instrumentCached(wasm)
		switch {
		case err == nil:
			wasm, metered = inst, true
		case !fallback:
			return nil, nil, "", false, fmt.Errorf("compile: refused by the CPU-limit meter: %w (cpu_fallback: watchdog runs a module the meter cannot instrument without it)", err)
		default:
			h.log.Warn("plugin cannot be metered; using the watchdog CPU limit (cpu_fallback: watchdog)", "plugin", name, "err", err)
		}
	}
	if !metered {
		stripped, err := meter.StripCustomSections(wasm)
		if err != nil {
			return nil, nil, "", false, fmt.Errorf("compile: %w", err)
		}
		wasm = stripped
	}
	rc := wazero.NewRuntimeConfigCompiler().
		WithMemoryLimitPages(memPages).
		WithCloseOnContextDone(!metered && !h.opts.noCPULimit).
		WithCompilationCache(h.cache)
	rt := wazero.NewRuntimeWithConfig(ctx, rc)
	fail := func(err error) (wazero.Runtime, wazero.CompiledModule, string, bool, error) {
		rt.Close(ctx)
		return nil, nil, "", false, err
	}
	if err := instantiateWASI(ctx, rt); err != nil {
		return fail(fmt.Errorf("instantiate WASI: %w", err))
	}
	if err := instantiateEnv(ctx, rt); err != nil {
		return fail(fmt.Errorf("instantiate proxy-wasm host functions: %w", err))
	}
	if metered {
		if err := meter.Instantiate(ctx, rt); err != nil {
			return fail(err)
		}
	}
	compiled, err := compileGuarded(ctx, rt, wasm)
	if err != nil {
		return fail(fmt.Errorf("compile: %w", err))
	}
	abi, err := validate(rt, compiled)
	if err != nil {
		return fail(err)
	}
	return rt, compiled, abi, metered, nil
}

var (
	calibrateOnce sync.Once
	calibrated    meter.Rate
)

// meterRate calibrates the meter once per process: how many units of
// guest work this machine runs per second.
func meterRate(ctx context.Context, log *slog.Logger) meter.Rate {
	calibrateOnce.Do(func() {
		rate, err := meter.Calibrate(ctx)
		if err != nil || rate.UnitsPerSecond <= 0 {
			log.Warn("meter calibration failed; assuming one slice per millisecond", "err", err)
			rate = meter.Rate{UnitsPerSecond: meter.DefaultSlice * 1000}
		}
		calibrated = rate
		log.Debug("meter calibrated", "units_per_second", int64(rate.UnitsPerSecond), "slice", rate.Slice())
	})
	return calibrated
}

func (s *slot) status() PluginStatus {
	st := PluginStatus{Name: s.name, File: s.cfg.File, Failures: s.failures.Load()}
	s.mu.Lock()
	st.LastError, st.ErrorAt = s.lastErr, s.errAt
	retired := append([]*version(nil), s.retired...)
	s.mu.Unlock()
	if v := s.cur.Load(); v != nil {
		st.SHA256, st.Version, st.LoadedAt, st.ABI = v.sha, v.n, v.loadedAt, v.abi
		st.CPULimit = "watchdog"
		if v.metered {
			st.CPULimit = "meter"
		}
		vms, inflight := v.counts()
		st.VMs += vms
		st.InFlight += inflight
	}
	for _, v := range retired {
		vms, inflight := v.counts()
		st.VMs += vms
		st.InFlight += inflight
	}
	return st
}

func (s *slot) close(ctx context.Context) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	s.mu.Lock()
	all := append([]*version(nil), s.retired...)
	s.mu.Unlock()
	if v := s.cur.Load(); v != nil {
		all = append(all, v)
	}
	for _, v := range all {
		v.shutdown(ctx)
	}
}

func (s *slot) closeRuntimes(ctx context.Context) {
	s.mu.Lock()
	all := append([]*version(nil), s.retired...)
	s.retired = nil
	s.mu.Unlock()
	if v := s.cur.Load(); v != nil {
		all = append(all, v)
	}
	for _, v := range all {
		v.closeRuntime(ctx)
	}
}

// forgetRetired drops a fully drained version from the slot.
func (s *slot) forgetRetired(v *version) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, r := range s.retired {
		if r == v {
			s.retired = append(s.retired[:i], s.retired[i+1:]...)
			return
		}
	}
}

// version is one compiled module of a plugin with its pool of VMs.
type version struct {
	s         *slot
	n         int
	sha       string
	abi       string
	loadedAt  time.Time
	memPages  uint32
	recycleAt uint32
	rt        wazero.Runtime
	mod       wazero.CompiledModule
	metered   bool // CPU limit by the meter's budget, not the watchdog

	mu       sync.Mutex
	vms      []*vm
	configs  [][]byte
	changed  chan struct{} // closed when a VM may have become available
	retired  bool
	down     bool         // shutdown: no new VMs, no new streams
	crashes  atomic.Int32 // consecutive VM failures (crash-loop backoff)
	rtClosed bool
	seq      int
}

func (v *version) counts() (vms, inflight int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, m := range v.vms {
		vms++
		inflight += m.active
	}
	return
}

// notifyLocked wakes goroutines waiting for a VM. Caller holds v.mu.
func (v *version) notifyLocked() {
	close(v.changed)
	v.changed = make(chan struct{})
}

// acquire picks the least busy serving VM and counts a stream on it,
// waiting until deadline at most. It returns nil at once when v was
// retired by a reload (the caller retries on the current version).
func (v *version) acquire(deadline time.Time) *vm {
	var t *time.Timer
	defer func() {
		if t != nil {
			t.Stop()
		}
	}()
	for {
		v.mu.Lock()
		var best *vm
		for _, m := range v.vms {
			if m.serving() && (best == nil || m.active < best.active) {
				best = m
			}
		}
		if best != nil {
			best.active++
			v.mu.Unlock()
			return best
		}
		if v.down || v.retired {
			v.mu.Unlock()
			return nil
		}
		ch := v.changed
		v.mu.Unlock()
		d := time.Until(deadline)
		if d <= 0 {
			return nil
		}
		if t == nil {
			t = time.NewTimer(d)
		} else {
			t.Reset(d)
		}
		select {
		case <-ch:
		case <-t.C:
			return nil
		}
	}
}

// release ends a stream's hold on m; a draining VM closes with its last.
func (v *version) release(m *vm) {
	v.mu.Lock()
	m.active--
	closeNow := m.active == 0 && m.draining && !m.closed
	v.mu.Unlock()
	if closeNow {
		v.closeVM(m, "drained")
	}
}

// poison discards m after a trap, timeout or OOM and schedules a fresh VM,
// backing off when VMs of this version keep failing. The caller holds m's
// lock.
func (v *version) poison(m *vm, why string) {
	v.s.failures.Add(1)
	v.mu.Lock()
	if m.draining || m.closed {
		v.mu.Unlock()
		return
	}
	m.draining = true
	crashes := int(v.crashes.Add(1))
	replace := !v.retired && !v.down
	v.mu.Unlock()
	// Streams paused on this VM fail now rather than at pause_timeout.
	// The caller holds m's lock, so m.streams is stable.
	for _, c := range m.streams {
		c.mu.Lock()
		c.wakeLocked()
		c.mu.Unlock()
	}
	v.s.m.replacements.Inc()
	v.s.h.log.Warn("plugin VM discarded", "plugin", v.s.name, "version", v.n, "vm", m.id, "reason", why)
	v.closeVM(m, why)
	if replace {
		v.replaceLater(backoff(crashes))
	}
}

// recycle drains m because its memory passed recycle_memory: no new streams;
// it closes when its last one ends. A fresh VM takes its place at once.
func (v *version) recycle(m *vm) {
	v.mu.Lock()
	if m.draining || m.closed || v.retired || v.down {
		v.mu.Unlock()
		return
	}
	m.draining = true
	closeNow := m.active == 0
	v.mu.Unlock()
	v.s.m.recycled.Inc()
	v.s.h.log.Info("plugin VM recycled: memory over recycle_memory", "plugin", v.s.name, "vm", m.id, "pages", m.pages.Load())
	if closeNow {
		v.closeVM(m, "recycled")
	}
	v.replaceLater(0)
}

// backoff is the delay before replacing a failed VM: none for the first
// failures, then doubling up to 30s while the version keeps crashing.
func backoff(crashes int) time.Duration {
	if crashes <= 2 {
		return 0
	}
	d := 50 * time.Millisecond << min(crashes-3, 10)
	return min(d, 30*time.Second)
}

func (v *version) replaceLater(delay time.Duration) {
	h := v.s.h
	h.goBG(func() {
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-h.ctx.Done():
				t.Stop()
				return
			}
		}
		for attempt := 0; ; attempt++ {
			v.mu.Lock()
			stop := v.retired || v.down
			v.mu.Unlock()
			if stop || h.ctx.Err() != nil {
				return
			}
			m, err := v.newVM(h.ctx)
			if err == nil {
				v.mu.Lock()
				if v.retired || v.down {
					v.mu.Unlock()
					v.closeVM(m, "version retired")
					return
				}
				v.vms = append(v.vms, m)
				v.notifyLocked()
				v.mu.Unlock()
				v.s.m.vms.Inc()
				return
			}
			v.s.recordError(err)
			v.s.h.log.Error("plugin VM failed to start", "plugin", v.s.name, "err", err)
			t := time.NewTimer(backoff(attempt + 3))
			select {
			case <-t.C:
			case <-h.ctx.Done():
				t.Stop()
				return
			}
		}
	})
}

// closeVM removes m from the pool and closes its module.
func (v *version) closeVM(m *vm, why string) {
	v.mu.Lock()
	if m.closed {
		v.mu.Unlock()
		return
	}
	m.closed = true
	for i, x := range v.vms {
		if x == m {
			v.vms = append(v.vms[:i], v.vms[i+1:]...)
			break
		}
	}
	empty := len(v.vms) == 0 && v.retired
	v.notifyLocked()
	v.mu.Unlock()
	v.s.m.vms.Dec()
	m.close(why)
	if empty {
		v.s.forgetRetired(v)
		v.closeRuntime(context.Background())
	}
}

// retire stops new streams on v; its VMs close as they drain.
func (v *version) retire() {
	v.mu.Lock()
	v.retired = true
	var idle []*vm
	for _, m := range v.vms {
		m.draining = true
		if m.active == 0 {
			idle = append(idle, m)
		}
	}
	empty := len(v.vms) == 0
	v.notifyLocked()
	v.mu.Unlock()
	for _, m := range idle {
		v.closeVM(m, "replaced by a new version")
	}
	if empty {
		v.s.forgetRetired(v)
		v.closeRuntime(context.Background())
	}
}

// shutdown closes every VM now (host Close).
func (v *version) shutdown(ctx context.Context) {
	v.mu.Lock()
	v.down = true
	vms := append([]*vm(nil), v.vms...)
	v.notifyLocked()
	v.mu.Unlock()
	for _, m := range vms {
		v.closeVM(m, "host closed")
	}
}

// closeAll is shutdown for a version that never served.
func (v *version) closeAll(ctx context.Context) {
	v.mu.Lock()
	v.down = true
	vms := append([]*vm(nil), v.vms...)
	v.vms = nil
	v.mu.Unlock()
	for _, m := range vms {
		m.close("start failed")
	}
	v.closeRuntime(ctx)
}

func (v *version) closeRuntime(ctx context.Context) {
	v.mu.Lock()
	if v.rtClosed || v.rt == nil {
		v.mu.Unlock()
		return
	}
	v.rtClosed = true
	v.mu.Unlock()
	_ = v.rt.Close(ctx)
}

// addConfig creates a root context for a new configuration in every VM.
func (v *version) addConfig(idx int, cfg []byte) error {
	v.mu.Lock()
	if len(v.configs) <= idx {
		v.configs = append(v.configs, cfg)
	}
	vms := append([]*vm(nil), v.vms...)
	v.mu.Unlock()
	for _, m := range vms {
		if err := m.addRoot(idx, cfg); err != nil {
			return fmt.Errorf("plugin %q: %w", v.s.name, err)
		}
	}
	return nil
}

// instantiateWASI adds wasi_snapshot_preview1. What a guest can reach
// through it is set per instance in newVM: no files, no env, no args,
// stdout/stderr to the log, real clocks and crypto randomness.
func instantiateWASI(ctx context.Context, rt wazero.Runtime) error {
	_, err := wasi_snapshot_preview1.Instantiate(ctx, rt)
	return err
}
