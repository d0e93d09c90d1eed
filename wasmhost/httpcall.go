package wasmhost

import (
	"strconv"
	"time"

	"github.com/wasmgate/wasmgate/gateway/chain"
)

// httpCallResult is what proxy_on_http_call_response may read.
type httpCallResult struct {
	status  int
	message string
	headers chain.Headers
	body    []byte
}

// UpstreamChecker may be implemented by an HTTPCaller so that
// proxy_http_call refuses an unknown upstream at once with BAD_ARGUMENT,
// as the spec asks, instead of failing later in the callback.
type UpstreamChecker interface {
	HasUpstream(name string) bool
}

const (
	defaultHTTPCallTimeout = 10 * time.Second
	maxHTTPCallTimeout     = 60 * time.Second
)

// hHTTPCall sends the request through Options.HTTP on a background
// goroutine; the answer (or the failure, as zero headers) comes back as
// proxy_on_http_call_response on the calling root context, under the VM
// lock like every other callback.
func hHTTPCall(m *vm, s []uint64) uint32 {
	upstream, ok1 := m.readString(s[0], s[1])
	rawHdr, ok2 := m.read(s[2], s[3])
	body, ok3 := m.read(s[4], s[5])
	_, ok4 := m.read(s[6], s[7])
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return statusInvalidMemoryAccess
	}
	if _, ok := m.mem.Read(uint32(s[9]), 4); !ok {
		return statusInvalidMemoryAccess
	}
	if len(body) > maxBufferBytes {
		return statusBadArgument
	}
	if st := m.checkMap(rawHdr); st != statusOK {
		return st
	}
	hdrs, err := m.parseMap(rawHdr)
	if err != nil {
		return statusBadArgument
	}
	authority, okA := hdrs.Get(":authority")
	_, okM := hdrs.Get(":method")
	_, okP := hdrs.Get(":path")
	if !okA || !okM || !okP {
		return statusBadArgument
	}
	if upstream == "" {
		upstream = authority
	}
	root := m.effRoot
	if root == nil {
		return statusBadArgument
	}
	h := m.ver.s.h
	m.callsMu.Lock()
	outstanding := len(m.calls)
	m.callsMu.Unlock()
	if h.opts.HTTP == nil {
		return statusInternalFailure
	}
	if outstanding >= m.ver.s.cfg.Limits.HTTPCalls {
		return m.refuse(limitHTTPCalls, statusInternalFailure, "in_flight", outstanding)
	}
	if k, ok := h.opts.HTTP.(UpstreamChecker); ok && !k.HasUpstream(upstream) {
		return statusBadArgument
	}
	timeout := time.Duration(uint32(s[8])) * time.Millisecond
	if timeout <= 0 {
		timeout = defaultHTTPCallTimeout
	}
	timeout = min(timeout, maxHTTPCallTimeout)
	m.nextID++
	id := m.nextID
	body = append([]byte(nil), body...)
	m.callsMu.Lock()
	m.calls[id] = root
	m.callsMu.Unlock()
	sm := m.ver.s.m
	started := h.goBG(func() {
		t0 := time.Now()
		status, rh, rb, err := h.opts.HTTP.Call(h.ctx, upstream, hdrs, body, timeout)
		res := &httpCallResult{status: status, body: rb}
		if err != nil {
			sm.httpCalls.WithLabelValues("error").Inc()
			res = &httpCallResult{message: err.Error()}
		} else {
			sm.httpCalls.WithLabelValues(strconv.Itoa(status / 100 * 100)).Inc()
			res.headers = make(chain.Headers, 0, len(rh)+1)
			res.headers = append(res.headers, chain.Header{Name: ":status", Value: strconv.Itoa(status)})
			for _, f := range rh {
				if len(f.Name) > 0 && f.Name[0] != ':' {
					res.headers = append(res.headers, f)
				}
			}
		}
		sm.httpCallSeconds.Observe(time.Since(t0).Seconds())
		m.runBackground(cbHTTPCallResponse, func() {
			m.callsMu.Lock()
			r, ok := m.calls[id]
			m.callsMu.Unlock()
			if !ok {
				return
			}
			f := m.fns[cbHTTPCallResponse]
			if f == nil {
				return
			}
			m.setEffRoot(r)
			m.callResp = res
			_, err := m.call(cbHTTPCallResponse, f, uint64(r.id), uint64(id), uint64(len(res.headers)), uint64(len(res.body)), 0)
			m.callResp = nil
			if err != nil {
				m.ver.poison(m, err.Error())
			}
		})
		// Delivered or not (VM busy past the bound, or gone), the call
		// no longer counts against the VM's limit.
		m.callsMu.Lock()
		delete(m.calls, id)
		m.callsMu.Unlock()
	})
	if !started {
		m.callsMu.Lock()
		delete(m.calls, id)
		m.callsMu.Unlock()
		return statusInternalFailure
	}
	if !m.putU32(s[9], id) {
		return statusInvalidMemoryAccess
	}
	return statusOK
}
