package wasmhost

import (
	"sync"
	"time"

	"github.com/wasmgate/wasmgate/gateway/chain"
)

// rootCtx is a plugin (root) context: one per configuration per VM.
type rootCtx struct {
	id        uint32
	vm        *vm
	config    []byte
	cfgIdx    int
	inVMStart bool

	tickMu     sync.Mutex
	tickPeriod time.Duration
	tickTimer  *time.Timer
	tickStop   bool
}

type phase uint8

const (
	phaseNone phase = iota
	phaseRequestHeaders
	phaseRequestBody
	phaseResponseHeaders
	phaseResponseBody
	phaseDone
	phaseLog
)

// httpCtx is a stream context: one per request per plugin.
type httpCtx struct {
	id    uint32
	root  *rootCtx
	vm    *vm
	info  *chain.Info
	phase phase

	// mu guards what a callback on another goroutine (a tick or an HTTP
	// call response with proxy_set_effective_context) may touch while the
	// stream waits in Pause: the live header maps and body, and the
	// outcome fields.
	mu          sync.Mutex
	reqHeaders  *chain.Headers // live (writable) during its phase
	respHeaders *chain.Headers
	body        *[]byte
	bodyBuf     int // bufferRequestBody or bufferResponseBody
	reqSnap     chain.Headers
	respSnap    chain.Headers
	local       *chain.LocalResponse
	closed      bool
	waiting     bool
	resume      chan struct{}

	props   map[string][]byte
	pending bool // on_done returned false; waiting for proxy_done
}

// wake resumes a stream paused in a callback. Caller holds c.mu.
func (c *httpCtx) wakeLocked() {
	if c.resume != nil {
		select {
		case c.resume <- struct{}{}:
		default:
		}
	}
}

// headers returns the map for a map type, whether it may be written, and
// whether it exists at all in this phase. Caller holds c.mu.
func (c *httpCtx) headers(mapType uint32) (h *chain.Headers, writable, ok bool) {
	switch mapType {
	case mapRequestHeaders:
		if c.reqHeaders != nil {
			return c.reqHeaders, true, true
		}
		return &c.reqSnap, false, true
	case mapResponseHeaders:
		if c.respHeaders != nil {
			return c.respHeaders, true, true
		}
		return &c.respSnap, false, true
	}
	return nil, false, false
}

func (r *rootCtx) stopTicker() {
	r.tickMu.Lock()
	r.tickStop = true
	if r.tickTimer != nil {
		r.tickTimer.Stop()
	}
	r.tickMu.Unlock()
}

// setTick arms proxy_on_tick every period (0 disables). One timer per root
// context; the next tick is armed only after the previous one ran, so a
// slow on_tick never piles up calls.
func (r *rootCtx) setTick(period time.Duration) {
	r.tickMu.Lock()
	defer r.tickMu.Unlock()
	r.tickPeriod = period
	if r.tickTimer != nil {
		r.tickTimer.Stop()
		r.tickTimer = nil
	}
	if period <= 0 || r.tickStop {
		return
	}
	r.tickTimer = time.AfterFunc(period, r.fireTick)
}

func (r *rootCtx) fireTick() {
	m := r.vm
	h := m.ver.s.h
	h.goBG(func() {
		m.runBackground(cbTick, func() {
			if f := m.fns[cbTick]; f != nil {
				m.setEffRoot(r)
				if _, err := m.call(cbTick, f, uint64(r.id)); err != nil {
					m.ver.poison(m, err.Error())
				}
			}
		})
		r.tickMu.Lock()
		if !r.tickStop && r.tickPeriod > 0 && !m.dead.Load() {
			r.tickTimer = time.AfterFunc(r.tickPeriod, r.fireTick)
		}
		r.tickMu.Unlock()
	})
}

// runBackground runs f under the VM lock and a global call slot for a
// callback not tied to a request (tick, HTTP call response, queue ready).
// It gives up (counted) when the VM stays busy past a generous bound.
func (m *vm) runBackground(cb callback, f func()) {
	if m.dead.Load() || m.poisoned.Load() {
		return
	}
	h := m.ver.s.h
	deadline := time.Now().Add(m.ver.s.cfg.QueueTimeout.D() + 10*m.ver.s.cfg.CPULimit.D())
	if !m.tryLock(deadline) {
		m.ver.s.m.errors.WithLabelValues("busy_" + callbackNames[cb]).Inc()
		return
	}
	if !h.acquireCall(deadline) {
		m.unlock()
		m.ver.s.m.errors.WithLabelValues("busy_" + callbackNames[cb]).Inc()
		return
	}
	if !m.dead.Load() && !m.poisoned.Load() {
		f()
	}
	h.releaseCall()
	m.unlock()
}
