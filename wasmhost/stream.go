package wasmhost

import (
	"fmt"
	"slices"
	"time"

	"github.com/wasmgate/wasmgate/gateway/chain"
)

type chainEntry struct {
	slot   *slot
	config int // index into slot.configs
}

// hostChain is the chain of one route.
type hostChain struct {
	host    *Host
	route   string
	entries []chainEntry
}

func (c *hostChain) Len() int { return len(c.entries) }

// NewStream implements chain.Chain. It only allocates: VMs are taken on the
// first callback, where waiting is bounded and resolved per policy.
func (c *hostChain) NewStream(info *chain.Info) (chain.Stream, error) {
	if c.host.closed.Load() {
		return nil, fmt.Errorf("plugin host is closed")
	}
	s := &stream{c: c, info: *info}
	if len(c.entries) <= len(s.one) {
		s.ps = s.one[:len(c.entries)]
	} else {
		s.ps = make([]pluginStream, len(c.entries))
	}
	s.req.pos, s.resp.pos = -1, -1
	for i := range s.ps {
		s.ps[i].e = &c.entries[i]
	}
	return s, nil
}

// bodyState tracks a Buffer request in one direction: plugins before pos
// have already processed the first prefix bytes of what the proxy passes.
type bodyState struct {
	pos    int
	prefix int
}

type stream struct {
	c         *hostChain
	info      chain.Info // a copy: the proxy may reuse its own
	ps        []pluginStream
	one       [1]pluginStream // ps of a one-plugin chain, without a second allocation
	req, resp bodyState
	done      bool
}

// pluginStream is one plugin's part of a stream.
type pluginStream struct {
	e    *chainEntry
	ver  *version
	vm   *vm
	ctx  *httpCtx
	skip bool // fail_open plugin that failed or had no capacity
}

func (s *stream) RequestHeaders(h *chain.Headers, eos bool) chain.Result {
	for i := range s.ps {
		p := &s.ps[i]
		res := s.invoke(p, cbRequestHeaders, phaseRequestHeaders, uint64(len(*h)), eos, func(c *httpCtx) {
			c.reqHeaders = h
		}, func(c *httpCtx) {
			c.reqHeaders = nil
			c.reqSnap = *h
		})
		if res.Action == chain.Respond {
			return res
		}
	}
	return chain.Result{}
}

func (s *stream) ResponseHeaders(h *chain.Headers, eos bool) chain.Result {
	for i := len(s.ps) - 1; i >= 0; i-- {
		p := &s.ps[i]
		res := s.invoke(p, cbResponseHeaders, phaseResponseHeaders, uint64(len(*h)), eos, func(c *httpCtx) {
			c.respHeaders = h
		}, func(c *httpCtx) {
			c.respHeaders = nil
			c.respSnap = *h
		})
		if res.Action == chain.Respond {
			return res
		}
	}
	return chain.Result{}
}

func (s *stream) RequestBody(body *[]byte, eos bool) chain.Result {
	return s.bodies(&s.req, cbRequestBody, phaseRequestBody, bufferRequestBody, body, eos, false)
}

func (s *stream) ResponseBody(body *[]byte, eos bool) chain.Result {
	return s.bodies(&s.resp, cbResponseBody, phaseResponseBody, bufferResponseBody, body, eos, true)
}

// bodies runs the body callback of each plugin in direction order. When a
// plugin pauses on a chunk that is not the last, the proxy buffers (Buffer)
// and calls again with everything so far; plugins before the buffering one
// then see only the new bytes, so no plugin processes a byte twice.
func (s *stream) bodies(st *bodyState, cb callback, ph phase, bufType int, body *[]byte, eos, reverse bool) chain.Result {
	n := len(s.ps)
	at := func(k int) *pluginStream {
		if reverse {
			return &s.ps[n-1-k]
		}
		return &s.ps[k]
	}
	start := 0
	if st.pos >= 0 {
		if st.pos > 0 && st.prefix <= len(*body) {
			prefix := (*body)[:st.prefix:st.prefix]
			suffix := append([]byte(nil), (*body)[st.prefix:]...)
			for k := 0; k < st.pos; k++ {
				res, _ := s.bodyOne(at(k), cb, ph, bufType, &suffix, eos)
				if res.Action == chain.Respond {
					return res
				}
			}
			*body = append(prefix, suffix...)
		}
		start = st.pos
		st.pos = -1
	}
	for k := start; k < n; k++ {
		res, buffer := s.bodyOne(at(k), cb, ph, bufType, body, eos)
		if res.Action == chain.Respond {
			return res
		}
		if buffer {
			st.pos, st.prefix = k, len(*body)
			return chain.Result{Action: chain.Buffer}
		}
	}
	return chain.Result{}
}

func (s *stream) bodyOne(p *pluginStream, cb callback, ph phase, bufType int, body *[]byte, eos bool) (chain.Result, bool) {
	buffer := false
	res := s.invoke(p, cb, ph, uint64(len(*body)), eos, func(c *httpCtx) {
		c.body, c.bodyBuf = body, bufType
	}, func(c *httpCtx) {
		c.body = nil
	})
	if res.Action == chain.Buffer {
		buffer = true
		res.Action = chain.Continue
	}
	return res, buffer
}

// invoke runs one phase callback of one plugin and resolves everything the
// proxy must not see: capacity waits, Pause (bounded by pause_timeout),
// local responses and failures (per failure_policy). It returns Buffer only
// for a body chunk that is not the last one.
func (s *stream) invoke(p *pluginStream, cb callback, ph phase, n uint64, eos bool, setup, teardown func(*httpCtx)) chain.Result {
	if p.skip {
		return chain.Result{}
	}
	sl := p.e.slot
	cfg := &sl.cfg
	if p.vm == nil {
		if res, ok := s.start(p); !ok {
			return res
		}
	}
	m, c := p.vm, p.ctx
	if m.poisoned.Load() || m.dead.Load() {
		return s.fail(p, "its VM failed while holding the request", 500)
	}
	if m.fns[cb] == nil {
		// The guest does not export this callback: no VM lock, no call;
		// only the phase's bookkeeping and what another callback (a
		// tick, an HTTP call response) may have decided meanwhile.
		c.mu.Lock()
		setup(c)
		c.phase = ph
		teardown(c)
		local, closed := c.local, c.closed
		c.mu.Unlock()
		return s.outcome(p, local, closed)
	}
	h := s.c.host
	if !h.tryEnter(m) {
		// Slow path: wait, bounded by queue_timeout, and time the wait.
		waitStart := time.Now()
		deadline := waitStart.Add(cfg.QueueTimeout.D())
		if !m.tryLock(deadline) {
			return s.capacity(p, "VM busy")
		}
		if !h.acquireCall(deadline) {
			m.unlock()
			return s.capacity(p, "wasm.max_calls_in_flight reached")
		}
		sl.m.queueWait.Observe(time.Since(waitStart).Seconds())
	}
	if m.poisoned.Load() || m.dead.Load() {
		h.releaseCall()
		m.unlock()
		return s.fail(p, "its VM failed while holding the request", 500)
	}
	c.mu.Lock()
	setup(c)
	c.phase = ph
	if c.resume != nil {
		select {
		case <-c.resume:
		default:
		}
	}
	c.mu.Unlock()
	m.setEffHTTP(c)
	var ret uint64
	var err error
	if f := m.fns[cb]; f != nil {
		ret, err = m.call(cb, f, uint64(c.id), n, b2u(eos))
	}
	if err != nil {
		m.ver.poison(m, err.Error())
	}
	paused := err == nil && uint32(ret) == actionPause
	c.mu.Lock()
	local, closed := c.local, c.closed
	wait := paused && local == nil && !closed && (eos || (ph != phaseRequestBody && ph != phaseResponseBody))
	if wait {
		c.waiting = true
		if c.resume == nil {
			c.resume = make(chan struct{}, 1)
		}
	} else {
		teardown(c)
	}
	c.mu.Unlock()
	h.releaseCall()
	m.unlock()
	if err != nil {
		return s.fail(p, err.Error(), 500)
	}
	if p.ver.crashes.Load() != 0 {
		p.ver.crashes.Store(0) // a request callback succeeded: not a crash loop
	}
	if !wait && m.overRecycle() {
		m.ver.recycle(m)
	}
	if wait {
		local, closed, err = s.pause(p, c, teardown)
		if err != nil {
			status := 504
			if m.poisoned.Load() {
				status = 500
			}
			return s.failStatus(p, err.Error(), status)
		}
	}
	if paused && !wait && local == nil && !closed {
		return chain.Result{Action: chain.Buffer}
	}
	return s.outcome(p, local, closed)
}

// outcome is a callback's result once it did not pause: a local response
// or a closed stream answer the client; otherwise the request goes on.
func (s *stream) outcome(p *pluginStream, local *chain.LocalResponse, closed bool) chain.Result {
	sl := p.e.slot
	if local != nil {
		return chain.Result{Action: chain.Respond, Response: local, Plugin: sl.name}
	}
	if closed {
		return chain.Result{Action: chain.Respond, Plugin: sl.name, Response: &chain.LocalResponse{
			Status: 502, Body: []byte("stream closed by plugin " + sl.name + "\n"),
			Details: fmt.Sprintf("plugin %q closed the stream", sl.name)}}
	}
	return chain.Result{}
}

// pause blocks until the plugin resumes the stream (proxy_continue_stream,
// proxy_send_local_response, proxy_close_stream from another callback), its
// VM fails, or pause_timeout passes.
func (s *stream) pause(p *pluginStream, c *httpCtx, teardown func(*httpCtx)) (*chain.LocalResponse, bool, error) {
	sl := p.e.slot
	t := time.NewTimer(sl.cfg.PauseTimeout.D())
	defer t.Stop()
	timedOut := false
	select {
	case <-c.resume:
	case <-t.C:
		timedOut = true
	}
	c.mu.Lock()
	c.waiting = false
	teardown(c)
	local, closed := c.local, c.closed
	c.mu.Unlock()
	if p.vm.poisoned.Load() {
		return nil, false, fmt.Errorf("its VM failed while the request was paused")
	}
	if timedOut && local == nil && !closed {
		sl.m.errors.WithLabelValues("pause_timeout").Inc()
		return nil, false, fmt.Errorf("did not resume the request within pause_timeout (%s)", sl.cfg.PauseTimeout)
	}
	return local, closed, nil
}

// start takes a VM for the plugin and creates the stream context in it.
func (s *stream) start(p *pluginStream) (chain.Result, bool) {
	sl := p.e.slot
	v := sl.cur.Load()
	if v == nil {
		return s.capacity(p, "no loaded version"), false
	}
	waitStart := time.Now()
	deadline := waitStart.Add(sl.cfg.QueueTimeout.D())
	m := v.acquire(deadline)
	for m == nil {
		// A reload may have retired v between loading and acquiring it.
		if nv := sl.cur.Load(); nv != nil && nv != v && time.Now().Before(deadline) {
			v = nv
			m = v.acquire(deadline)
			continue
		}
		return s.capacity(p, "no VM available within queue_timeout"), false
	}
	p.ver, p.vm = v, m
	h := s.c.host
	if !m.tryLock(deadline) {
		return s.capacity(p, "VM busy"), false
	}
	if !h.acquireCall(deadline) {
		m.unlock()
		return s.capacity(p, "wasm.max_calls_in_flight reached"), false
	}
	defer func() {
		h.releaseCall()
		m.unlock()
	}()
	sl.m.queueWait.Observe(time.Since(waitStart).Seconds())
	if m.poisoned.Load() || m.dead.Load() {
		return s.fail(p, "its VM failed", 500), false
	}
	r := m.root(p.e.config)
	if r == nil {
		// A VM started while a route override was being added.
		cfgs := sl.configsSnapshot()
		if p.e.config >= len(cfgs) {
			return s.fail(p, "unknown configuration", 500), false
		}
		if err := m.addRootLocked(p.e.config, cfgs[p.e.config], false); err != nil {
			if m.poisoned.Load() {
				m.ver.poison(m, err.Error())
			}
			return s.fail(p, err.Error(), 500), false
		}
		r = m.root(p.e.config)
	}
	m.nextID++
	c := &httpCtx{id: m.nextID, root: r, vm: m, info: &s.info}
	m.streams[c.id] = c
	p.ctx = c
	if f := m.fns[cbContextCreate]; f != nil {
		m.setEffHTTP(c)
		if _, err := m.call(cbContextCreate, f, uint64(c.id), uint64(r.id)); err != nil {
			m.ver.poison(m, err.Error())
			return s.fail(p, err.Error(), 500), false
		}
	}
	return chain.Result{}, true
}

// capacity resolves "no VM or call slot within queue_timeout".
func (s *stream) capacity(p *pluginStream, why string) chain.Result {
	sl := p.e.slot
	sl.m.errors.WithLabelValues("capacity").Inc()
	if sl.failOpen() {
		p.skip = true
		return chain.Result{}
	}
	return chain.Result{Action: chain.Respond, Plugin: sl.name, Response: &chain.LocalResponse{
		Status:  503,
		Body:    []byte("plugin " + sl.name + " is at capacity\n"),
		Details: fmt.Sprintf("plugin %q: %s", sl.name, why),
	}}
}

func (s *stream) fail(p *pluginStream, why string, status int) chain.Result {
	return s.failStatus(p, why, status)
}

// failStatus applies failure_policy: fail_open continues as if the plugin
// were absent for the rest of the stream; fail_closed answers status.
func (s *stream) failStatus(p *pluginStream, why string, status int) chain.Result {
	sl := p.e.slot
	p.skip = true
	if sl.failOpen() {
		sl.logs.warn("plugin failed; continuing without it (fail_open)", "reason", why)
		return chain.Result{}
	}
	sl.logs.warn("plugin failed; answering per fail_closed", "status", status, "reason", why)
	return chain.Result{Action: chain.Respond, Plugin: sl.name, Response: &chain.LocalResponse{
		Status:  status,
		Body:    []byte("plugin " + sl.name + " failed\n"),
		Details: fmt.Sprintf("plugin %q failed: %s", sl.name, why),
	}}
}

// Done runs proxy_on_done, proxy_on_log and proxy_on_delete for every
// plugin that created a context, then releases the VMs.
func (s *stream) Done() {
	if s.done {
		return
	}
	s.done = true
	for i := len(s.ps) - 1; i >= 0; i-- {
		p := &s.ps[i]
		if p.vm == nil {
			continue
		}
		m, c, v := p.vm, p.ctx, p.ver
		if c == nil || m.dead.Load() || m.poisoned.Load() {
			v.release(m)
			continue
		}
		cfg := &p.e.slot.cfg
		deadline := time.Now().Add(cfg.QueueTimeout.D() + cfg.CPULimit.D())
		if m.tryLock(deadline) {
			got := s.c.host.acquireCall(deadline)
			m.endStream(c)
			if got {
				s.c.host.releaseCall()
			}
			m.unlock()
			v.release(m)
			continue
		}
		// The VM stays busy: finish in the background so Done stays bounded.
		if !s.c.host.goBG(func() {
			m.runBackground(cbDone, func() { m.endStream(c) })
			v.release(m)
		}) {
			v.release(m)
		}
	}
}

// endStream runs the end-of-stream callbacks. Caller holds the VM lock.
func (m *vm) endStream(c *httpCtx) {
	if m.dead.Load() || m.poisoned.Load() {
		return
	}
	c.mu.Lock()
	c.phase = phaseDone
	c.reqHeaders, c.respHeaders, c.body = nil, nil, nil
	c.mu.Unlock()
	m.setEffHTTP(c)
	if f := m.fns[cbDone]; f != nil {
		ret, err := m.call(cbDone, f, uint64(c.id))
		if err != nil {
			m.ver.poison(m, err.Error())
			return
		}
		if uint32(ret) == 0 && m.pendingDone() < 1024 {
			// The context outlives the request: its header snapshots
			// must not share the proxy's slices, which it reuses.
			c.mu.Lock()
			c.reqSnap, c.respSnap = slices.Clone(c.reqSnap), slices.Clone(c.respSnap)
			c.mu.Unlock()
			c.pending = true
			return
		}
	}
	m.finalize(c)
}

func (m *vm) pendingDone() int {
	n := 0
	for _, c := range m.streams {
		if c.pending {
			n++
		}
	}
	return n
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}
