package wasmhost

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"

	"github.com/wasmgate/wasmgate/wasmhost/internal/meter"
)

// Callbacks the host calls, in the order of the metric label table.
type callback int

const (
	cbContextCreate callback = iota
	cbVMStart
	cbConfigure
	cbRequestHeaders
	cbRequestBody
	cbResponseHeaders
	cbResponseBody
	cbDone
	cbLog
	cbDelete
	cbTick
	cbHTTPCallResponse
	cbQueueReady
	cbInitialize
	cbAllocate
	numCallbacks
)

var callbackNames = [numCallbacks]string{
	"proxy_on_context_create", "proxy_on_vm_start", "proxy_on_configure",
	"proxy_on_request_headers", "proxy_on_request_body",
	"proxy_on_response_headers", "proxy_on_response_body",
	"proxy_on_done", "proxy_on_log", "proxy_on_delete", "proxy_on_tick",
	"proxy_on_http_call_response", "proxy_on_queue_ready", "_initialize",
	"proxy_on_memory_allocate",
}

// Exit codes the watchdog closes an overdue module with.
const exitCodeCPULimit = 0xC9

var vmSeq atomic.Uint64

type vmKey struct{}

// vm is one instance of a plugin version. Calls into it are serialized by
// lock; the fields below "under lock" are touched only by the goroutine
// holding it.
type vm struct {
	ver  *version
	id   uint64
	mod  api.Module
	mem  api.Memory
	fns  [numCallbacks]api.Function
	ctx  context.Context // carries the *vm to host functions; no Done channel
	lock vmLock

	// Guarded by ver.mu.
	active   int // streams holding this VM
	draining bool
	closed   bool

	poisoned atomic.Bool
	dead     atomic.Bool // module closed
	pages    atomic.Uint32

	// Metered VMs: the fuel global and the budget of the call in progress.
	fuel   api.MutableGlobal
	budget *meter.Budget

	// Watchdog: deadline of the outermost call in progress (unix nanos).
	deadline atomic.Int64
	timedOut atomic.Bool

	// Under lock.
	depth    int
	stack    [8]uint64
	nested   [2][8]uint64 // stacks of calls made from host functions (the allocator)
	scratch  []byte       // serialized maps and body copies on their way into the guest
	roots    []*rootCtx
	streams  map[uint32]*httpCtx
	nextID   uint32
	eff      uint32 // effective context id
	effRoot  *rootCtx
	effHTTP  *httpCtx
	callResp *httpCallResult
	callsMu  sync.Mutex
	calls    map[uint32]*rootCtx // outstanding http_call id → root context
	doneReq  []*httpCtx          // contexts that called proxy_done
	stdout   *lineWriter
	stderr   *lineWriter
}

func (m *vm) serving() bool { return !m.draining && !m.closed && !m.poisoned.Load() }

// newVM instantiates the module and runs its lifecycle: _initialize (and
// main) or _start, proxy_on_vm_start on the first root context, then a root
// context with proxy_on_configure for every configuration.
func (v *version) newVM(ctx context.Context) (*vm, error) {
	s := v.s
	m := &vm{
		ver:     v,
		id:      vmSeq.Add(1),
		lock:    newVMLock(),
		streams: map[uint32]*httpCtx{},
		calls:   map[uint32]*rootCtx{},
	}
	m.ctx = context.WithValue(context.Background(), vmKey{}, m)
	m.stdout = &lineWriter{logs: s.logs, stream: "stdout"}
	m.stderr = &lineWriter{logs: s.logs, stream: "stderr"}
	v.mu.Lock()
	v.seq++
	name := fmt.Sprintf("%s.v%d.%d", s.name, v.n, v.seq)
	configs := append([][]byte(nil), v.configs...)
	v.mu.Unlock()
	mc := wazero.NewModuleConfig().
		WithName(name).
		WithStartFunctions(). // run by hand below, under the watchdog
		WithStdout(m.stdout).
		WithStderr(m.stderr).
		WithSysWalltime().
		WithSysNanotime().
		WithRandSource(rand.Reader)
	mod, err := v.rt.InstantiateModule(ctx, v.mod, mc)
	if err != nil {
		return nil, fmt.Errorf("instantiate: %w", err)
	}
	m.mod = mod
	m.mem = mod.Memory()
	if v.metered {
		if m.fuel, err = meter.Fuel(mod); err != nil {
			mod.Close(ctx)
			return nil, err
		}
		m.budget = &meter.Budget{Slice: s.h.slice}
		m.ctx = meter.WithBudget(m.ctx, m.budget)
	}
	for i, n := range callbackNames {
		m.fns[i] = mod.ExportedFunction(n)
	}
	if m.fns[cbAllocate] == nil {
		m.fns[cbAllocate] = mod.ExportedFunction("malloc")
	}
	s.h.dog.add(m)
	m.lock.tryLock() // not shared yet: always free
	defer m.lock.unlock()
	fail := func(err error) (*vm, error) {
		m.close("start failed")
		return nil, err
	}
	if f := mod.ExportedFunction("_initialize"); f != nil {
		if _, err := m.call(cbInitialize, f); err != nil {
			return fail(fmt.Errorf("_initialize: %w", err))
		}
		if mainFn := mod.ExportedFunction("main"); mainFn != nil {
			if _, err := m.call(cbInitialize, mainFn, 0, 0); err != nil {
				return fail(fmt.Errorf("main: %w", err))
			}
		}
	} else if f := mod.ExportedFunction("_start"); f != nil {
		if _, err := m.call(cbInitialize, f); err != nil {
			return fail(fmt.Errorf("_start: %w", err))
		}
	}
	for idx, cfg := range configs {
		if err := m.addRootLocked(idx, cfg, idx == 0); err != nil {
			return fail(err)
		}
	}
	m.updatePages()
	return m, nil
}

// addRoot creates the root context for configuration idx (route override).
func (m *vm) addRoot(idx int, cfg []byte) error {
	if !m.tryLock(time.Now().Add(5 * time.Second)) {
		return errors.New("VM busy: could not configure a new root context")
	}
	defer m.unlock()
	if m.dead.Load() {
		return nil
	}
	if idx < len(m.roots) && m.roots[idx] != nil {
		return nil
	}
	err := m.addRootLocked(idx, cfg, false)
	if err != nil && m.poisoned.Load() {
		m.ver.poison(m, err.Error())
	}
	return err
}

func (m *vm) addRootLocked(idx int, cfg []byte, vmStart bool) error {
	m.nextID++
	r := &rootCtx{id: m.nextID, vm: m, config: cfg, cfgIdx: idx}
	for len(m.roots) <= idx {
		m.roots = append(m.roots, nil)
	}
	m.roots[idx] = r
	m.setEffRoot(r)
	if f := m.fns[cbContextCreate]; f != nil {
		if _, err := m.call(cbContextCreate, f, uint64(r.id), 0); err != nil {
			return fmt.Errorf("proxy_on_context_create (root): %w", err)
		}
	}
	if vmStart {
		if f := m.fns[cbVMStart]; f != nil {
			m.setEffRoot(r)
			r.inVMStart = true
			ret, err := m.call(cbVMStart, f, uint64(r.id), uint64(len(m.ver.s.vmConfig)))
			r.inVMStart = false
			if err != nil {
				return fmt.Errorf("proxy_on_vm_start: %w", err)
			}
			if uint32(ret) == 0 {
				return errors.New("proxy_on_vm_start returned false: the plugin refused its vm_config")
			}
		}
	}
	if f := m.fns[cbConfigure]; f != nil {
		m.setEffRoot(r)
		ret, err := m.call(cbConfigure, f, uint64(r.id), uint64(len(cfg)))
		if err != nil {
			return fmt.Errorf("proxy_on_configure: %w", err)
		}
		if uint32(ret) == 0 {
			return errors.New("proxy_on_configure returned false: the plugin refused its configuration")
		}
	}
	return nil
}

func (m *vm) root(idx int) *rootCtx {
	if idx < len(m.roots) {
		return m.roots[idx]
	}
	return nil
}

func (m *vm) setEffRoot(r *rootCtx) {
	m.eff, m.effRoot, m.effHTTP = r.id, r, nil
}

func (m *vm) setEffHTTP(c *httpCtx) {
	m.eff, m.effRoot, m.effHTTP = c.id, c.root, c
}

// tryLock takes the VM's call lock, waiting until deadline at most.
func (m *vm) tryLock(deadline time.Time) bool { return m.lock.lockBy(deadline) }

func (m *vm) unlock() {
	m.finishDone()
	m.lock.unlock()
}

// errPoisoned marks a failed call: the VM must not be used again.
type callError struct {
	kind string // trap, timeout, oom, closed
	cb   callback
	err  error
}

func (e *callError) Error() string {
	if e.kind == "timeout" {
		return fmt.Sprintf("%s exceeded cpu_limit", callbackNames[e.cb])
	}
	return fmt.Sprintf("%s: %s: %v", callbackNames[e.cb], e.kind, e.err)
}

func (e *callError) Unwrap() error { return e.err }

// call runs one export under the watchdog. Any error poisons the VM (the
// caller discards it): guest state after a trap cannot be trusted.
func (m *vm) call(cb callback, f api.Function, args ...uint64) (uint64, error) {
	if m.dead.Load() || m.poisoned.Load() {
		return 0, &callError{kind: "closed", cb: cb, err: errors.New("VM is closed")}
	}
	sm := m.ver.s.m
	outer := m.depth == 0
	m.depth++
	var start time.Time
	if outer {
		start = time.Now()
		switch {
		case m.budget != nil:
			// cpu_limit is guest work (calibrated units), so a call that
			// waits for a CPU on a loaded machine is not killed for it;
			// the wall clock is only a backstop at 10x.
			lim := m.ver.s.cfg.CPULimit.D()
			m.budget.MaxUnits = max(m.ver.s.h.rate.Units(lim), m.ver.s.h.slice)
			m.budget.Deadline = start.Add(10 * lim)
			m.budget.Start(m.fuel)
		case m.ver.s.h.dog.enabled:
			m.deadline.Store(start.Add(m.ver.s.cfg.CPULimit.D()).UnixNano())
		}
	}
	stack := m.stack[:]
	if !outer {
		if m.depth-2 < len(m.nested) {
			stack = m.nested[m.depth-2][:]
		} else {
			stack = make([]uint64, 8)
		}
	}
	copy(stack, args)
	err := f.CallWithStack(m.ctx, stack)
	m.depth--
	if err == nil && outer && m.poisoned.Load() {
		// A nested call (the guest's allocator, from a host function)
		// failed and was counted: the guest went on, but its state
		// cannot be trusted.
		return 0, &callError{cb: cb, kind: "trap", err: errors.New("a nested call into the guest failed")}
	}
	if outer {
		m.deadline.Store(0)
		if m.budget != nil {
			sm.cpuUnits.Add(float64(m.budget.Used(m.fuel)))
		}
		sm.calls[cb].Inc()
		sm.callSeconds.Observe(time.Since(start).Seconds())
	}
	if err != nil {
		m.poisoned.Store(true)
		ce := &callError{cb: cb, err: err, kind: "trap"}
		var exit *sys.ExitError
		switch {
		case m.timedOut.Load() || errors.Is(err, meter.ErrCPULimit):
			ce.kind = "timeout"
			sm.timeouts.Inc()
		case errors.As(err, &exit) && exit.ExitCode() == 0:
			// proc_exit(0) from a command module's _start: the instance
			// is gone, which is still a failure for a plugin.
			ce.kind = "exit"
			sm.traps.Inc()
		case m.memFull():
			ce.kind = "oom"
			sm.ooms.Inc()
		default:
			sm.traps.Inc()
		}
		sm.errors.WithLabelValues(ce.kind).Inc()
		return 0, ce
	}
	if outer {
		m.updatePages()
	}
	return stack[0], nil
}

// memFull reports whether the guest's memory reached the limit (or a
// memory.grow within the last page would exceed it).
func (m *vm) memFull() bool {
	if m.mem == nil {
		return false
	}
	margin := max(m.ver.memPages/4, 32)
	return m.mem.Size()/65536+margin >= m.ver.memPages
}

func (m *vm) updatePages() {
	if m.mem != nil {
		m.pages.Store(m.mem.Size() / 65536)
	}
}

// overRecycle reports whether the VM's memory passed recycle_memory.
func (m *vm) overRecycle() bool {
	return m.ver.recycleAt > 0 && m.pages.Load() > m.ver.recycleAt
}

// close closes the module. Safe to call while another goroutine is inside
// a call (the call ends with an error).
func (m *vm) close(why string) {
	if m.dead.Swap(true) {
		return
	}
	m.ver.s.h.dog.remove(m)
	for _, r := range m.roots {
		if r != nil {
			r.stopTicker()
		}
	}
	m.ver.s.h.shared.dropVM(m)
	if m.mod != nil {
		_ = m.mod.CloseWithExitCode(context.Background(), 0)
	}
	m.stdout.flush()
	m.stderr.flush()
}

// alloc reserves n bytes in guest memory with the guest's allocator.
func (m *vm) alloc(ctx context.Context, n int) (uint32, bool) {
	f := m.fns[cbAllocate]
	if f == nil {
		return 0, false
	}
	if n == 0 {
		n = 1
	}
	ret, err := m.call(cbAllocate, f, uint64(n))
	if err != nil || uint32(ret) == 0 {
		return 0, false
	}
	return uint32(ret), true
}

// finishDone runs proxy_on_log and proxy_on_delete for contexts whose
// plugin called proxy_done after returning false from proxy_on_done.
func (m *vm) finishDone() {
	for len(m.doneReq) > 0 && !m.dead.Load() && !m.poisoned.Load() {
		c := m.doneReq[0]
		m.doneReq = m.doneReq[1:]
		m.finalize(c)
	}
	m.doneReq = m.doneReq[:0]
}

// finalize calls proxy_on_log then proxy_on_delete and forgets the context.
func (m *vm) finalize(c *httpCtx) {
	m.setEffHTTP(c)
	c.phase = phaseLog
	if f := m.fns[cbLog]; f != nil {
		if _, err := m.call(cbLog, f, uint64(c.id)); err != nil {
			m.ver.poison(m, err.Error())
			return
		}
	}
	if f := m.fns[cbDelete]; f != nil {
		if _, err := m.call(cbDelete, f, uint64(c.id)); err != nil {
			m.ver.poison(m, err.Error())
			return
		}
	}
	delete(m.streams, c.id)
}

func trimNL(s string) string { return strings.TrimRight(s, "\r\n") }
