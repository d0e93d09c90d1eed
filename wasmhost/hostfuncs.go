package wasmhost

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/wasmgate/wasmgate/gateway/chain"
	"github.com/wasmgate/wasmgate/internal/ascii"
)

// hostFunc is one proxy-wasm host function: it reads its parameters from
// stack and returns a proxy_status_t.
type hostFunc func(m *vm, s []uint64) uint32

type hostDef struct {
	name   string
	params []api.ValueType
	fn     hostFunc
}

const i32, i64 = api.ValueTypeI32, api.ValueTypeI64

func p32(n int) []api.ValueType {
	out := make([]api.ValueType, n)
	for i := range out {
		out[i] = i32
	}
	return out
}

// hostDefs lists every host function of the proxy-wasm ABI v0.2.1 spec.
// gRPC functions and the TCP stream types are not served: they return
// UNIMPLEMENTED so that modules built with them still link.
func hostDefs() []hostDef {
	return []hostDef{
		{"proxy_log", p32(3), hLog},
		{"proxy_get_log_level", p32(1), hGetLogLevel},
		{"proxy_get_current_time_nanoseconds", p32(1), hCurrentTime},
		{"proxy_set_tick_period_milliseconds", p32(1), hSetTickPeriod},
		{"proxy_done", nil, hDone},
		{"proxy_set_effective_context", p32(1), hSetEffectiveContext},

		{"proxy_get_buffer_bytes", p32(5), hGetBufferBytes},
		{"proxy_set_buffer_bytes", p32(5), hSetBufferBytes},
		{"proxy_get_buffer_status", p32(3), hGetBufferStatus},

		{"proxy_get_header_map_size", p32(2), hGetHeaderMapSize},
		{"proxy_get_header_map_pairs", p32(3), hGetHeaderMapPairs},
		{"proxy_set_header_map_pairs", p32(3), hSetHeaderMapPairs},
		{"proxy_get_header_map_value", p32(5), hGetHeaderMapValue},
		{"proxy_add_header_map_value", p32(5), hAddHeaderMapValue},
		{"proxy_replace_header_map_value", p32(5), hReplaceHeaderMapValue},
		{"proxy_remove_header_map_value", p32(3), hRemoveHeaderMapValue},

		{"proxy_continue_stream", p32(1), hContinueStream},
		{"proxy_close_stream", p32(1), hCloseStream},
		{"proxy_get_status", p32(3), hGetStatus},
		{"proxy_send_local_response", p32(8), hSendLocalResponse},

		{"proxy_http_call", p32(10), hHTTPCall},
		{"proxy_grpc_call", p32(12), hUnimplemented},
		{"proxy_grpc_stream", p32(9), hUnimplemented},
		{"proxy_grpc_send", p32(4), hUnimplemented},
		{"proxy_grpc_cancel", p32(1), hUnimplemented},
		{"proxy_grpc_close", p32(1), hUnimplemented},

		{"proxy_set_shared_data", p32(5), hSetSharedData},
		{"proxy_get_shared_data", p32(5), hGetSharedData},
		{"proxy_register_shared_queue", p32(3), hRegisterQueue},
		{"proxy_resolve_shared_queue", p32(5), hResolveQueue},
		{"proxy_enqueue_shared_queue", p32(3), hEnqueue},
		{"proxy_dequeue_shared_queue", p32(3), hDequeue},

		{"proxy_define_metric", p32(4), hDefineMetric},
		{"proxy_record_metric", []api.ValueType{i32, i64}, hRecordMetric},
		{"proxy_increment_metric", []api.ValueType{i32, i64}, hIncrementMetric},
		{"proxy_get_metric", p32(2), hGetMetric},

		{"proxy_get_property", p32(4), hGetProperty},
		{"proxy_set_property", p32(4), hSetProperty},
		{"proxy_call_foreign_function", p32(6), hCallForeign},
	}
}

// instantiateEnv adds the "env" host module to a runtime.
func instantiateEnv(ctx context.Context, rt wazero.Runtime) error {
	b := rt.NewHostModuleBuilder("env")
	for _, d := range hostDefs() {
		fn := d.fn
		b.NewFunctionBuilder().
			WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, _ api.Module, stack []uint64) {
				m, _ := ctx.Value(vmKey{}).(*vm)
				if m == nil {
					stack[0] = uint64(statusInternalFailure)
					return
				}
				stack[0] = uint64(fn(m, stack))
			}), d.params, []api.ValueType{i32}).
			Export(d.name)
	}
	_, err := b.Instantiate(ctx)
	return err
}

func hUnimplemented(*vm, []uint64) uint32 { return statusUnimplemented }

// refuse answers st for an operation a plugins[].limits key refused:
// counted, and logged (rate-limited) with the key to raise.
func (m *vm) refuse(limit string, st uint32, args ...any) uint32 {
	s := m.ver.s
	s.m.limitRefusals.WithLabelValues(limit).Inc()
	s.logs.warn("plugin limit reached; the host function failed", append([]any{"limit", "limits." + limit}, args...)...)
	return st
}

// checkMap refuses a serialized map over limits.header_map_bytes.
func (m *vm) checkMap(raw []byte) uint32 {
	if len(raw) > m.ver.s.cfg.Limits.HeaderMapBytes.N() {
		return m.refuse(limitHeaderMapBytes, statusBadArgument, "bytes", len(raw))
	}
	return statusOK
}

// parseMap is parseSerialized under limits.header_map_fields.
func (m *vm) parseMap(raw []byte) (chain.Headers, error) {
	h, err := parseSerialized(raw, m.ver.s.cfg.Limits.HeaderMapFields)
	if err == errTooManyFields {
		m.refuse(limitHeaderMapFields, statusBadArgument)
	}
	return h, err
}

// Memory helpers. A guest pointer that does not fit its memory is
// INVALID_MEMORY_ACCESS, never a host panic.

func (m *vm) read(ptr, size uint64) ([]byte, bool) {
	return m.mem.Read(uint32(ptr), uint32(size))
}

func (m *vm) readString(ptr, size uint64) (string, bool) {
	b, ok := m.read(ptr, size)
	return string(b), ok
}

func (m *vm) putU32(ptr uint64, v uint32) bool { return m.mem.WriteUint32Le(uint32(ptr), v) }

// out copies data into memory allocated with the guest's allocator and
// writes its address and size to the return pointers.
func (m *vm) out(data []byte, retPtr, retSize uint64) uint32 {
	addr, st := m.outAlloc(len(data), retPtr, retSize)
	if st != statusOK {
		return st
	}
	if !m.mem.Write(addr, data) {
		return statusInvalidMemoryAccess
	}
	return statusOK
}

// outString is out for a string, without a copy on the host.
func (m *vm) outString(data string, retPtr, retSize uint64) uint32 {
	addr, st := m.outAlloc(len(data), retPtr, retSize)
	if st != statusOK {
		return st
	}
	if !m.mem.WriteString(addr, data) {
		return statusInvalidMemoryAccess
	}
	return statusOK
}

// outAlloc checks the return pointers, allocates n bytes in the guest and
// writes the block's address and size to them.
func (m *vm) outAlloc(n int, retPtr, retSize uint64) (uint32, uint32) {
	if _, ok := m.mem.Read(uint32(retPtr), 4); !ok {
		return 0, statusInvalidMemoryAccess
	}
	if _, ok := m.mem.Read(uint32(retSize), 4); !ok {
		return 0, statusInvalidMemoryAccess
	}
	addr, ok := m.alloc(m.ctx, n)
	if !ok {
		return 0, statusInvalidMemoryAccess
	}
	if !m.putU32(retPtr, addr) || !m.putU32(retSize, uint32(n)) {
		return 0, statusInvalidMemoryAccess
	}
	return addr, statusOK
}

// keepScratch bounds what the per-VM scratch buffer keeps between calls.
const keepScratch = 64 << 10

// outScratch sends m.scratch[:n] to the guest and lets go of a large one.
func (m *vm) outScratch(retPtr, retSize uint64) uint32 {
	st := m.out(m.scratch, retPtr, retSize)
	if cap(m.scratch) > keepScratch {
		m.scratch = nil
	} else {
		m.scratch = m.scratch[:0]
	}
	return st
}

// Logging.

func hLog(m *vm, s []uint64) uint32 {
	lvl, ok := slogLevel(uint32(s[0]))
	if !ok {
		return statusBadArgument
	}
	msg, ok := m.readString(s[1], s[2])
	if !ok {
		return statusInvalidMemoryAccess
	}
	m.ver.s.logs.guest(lvl, msg)
	return statusOK
}

func slogLevel(l uint32) (slog.Level, bool) {
	switch l {
	case logTrace:
		return slog.LevelDebug - 4, true
	case logDebug:
		return slog.LevelDebug, true
	case logInfo:
		return slog.LevelInfo, true
	case logWarn:
		return slog.LevelWarn, true
	case logError:
		return slog.LevelError, true
	case logCritical:
		return slog.LevelError + 4, true
	}
	return 0, false
}

func hGetLogLevel(m *vm, s []uint64) uint32 {
	l := m.ver.s.logs.minLevel()
	if !m.putU32(s[0], l) {
		return statusInvalidMemoryAccess
	}
	return statusOK
}

func hCurrentTime(m *vm, s []uint64) uint32 {
	if !m.mem.WriteUint64Le(uint32(s[0]), uint64(time.Now().UnixNano())) {
		return statusInvalidMemoryAccess
	}
	return statusOK
}

// Timers and contexts.

func hSetTickPeriod(m *vm, s []uint64) uint32 {
	if m.effRoot == nil {
		return statusBadArgument
	}
	p := time.Duration(uint32(s[0])) * time.Millisecond
	if p > 0 && p < time.Millisecond {
		p = time.Millisecond
	}
	m.effRoot.setTick(p)
	return statusOK
}

func hDone(m *vm, _ []uint64) uint32 {
	c := m.effHTTP
	if c == nil || !c.pending {
		return statusNotFound
	}
	c.pending = false
	m.doneReq = append(m.doneReq, c)
	return statusOK
}

func hSetEffectiveContext(m *vm, s []uint64) uint32 {
	id := uint32(s[0])
	if c, ok := m.streams[id]; ok {
		m.setEffHTTP(c)
		return statusOK
	}
	for _, r := range m.roots {
		if r != nil && r.id == id {
			m.setEffRoot(r)
			return statusOK
		}
	}
	return statusBadArgument
}

// Buffers.

// buffer resolves a buffer for the effective context. For the HTTP bodies
// the caller must hold c.mu (returned, locked) and unlock it.
func (m *vm) buffer(t uint32) (buf *[]byte, writable bool, c *httpCtx, st uint32) {
	switch t {
	case bufferRequestBody, bufferResponseBody:
		if c := m.effHTTP; c != nil {
			c.mu.Lock()
			if c.body != nil && uint32(c.bodyBuf) == t {
				return c.body, true, c, statusOK
			}
			c.mu.Unlock()
		}
		if t == bufferResponseBody && m.callResp != nil {
			return &m.callResp.body, false, nil, statusOK
		}
		return nil, false, nil, statusNotFound
	case bufferHTTPCallResponse:
		if m.callResp != nil {
			return &m.callResp.body, false, nil, statusOK
		}
		return nil, false, nil, statusNotFound
	case bufferVMConfiguration:
		b := m.ver.s.vmConfig
		return &b, false, nil, statusOK
	case bufferPluginConfig:
		if m.effRoot != nil {
			b := m.effRoot.config
			return &b, false, nil, statusOK
		}
		return nil, false, nil, statusNotFound
	case bufferDownstreamData, bufferUpstreamData, bufferGRPCMessage, bufferForeignArgs:
		return nil, false, nil, statusNotFound
	}
	return nil, false, nil, statusBadArgument
}

func hGetBufferBytes(m *vm, s []uint64) uint32 {
	buf, _, c, st := m.buffer(uint32(s[0]))
	if st != statusOK {
		return st
	}
	b := *buf
	start, max := uint64(uint32(s[1])), uint64(uint32(s[2]))
	if start > uint64(len(b)) {
		if c != nil {
			c.mu.Unlock()
		}
		return statusBadArgument
	}
	end := min(start+max, uint64(len(b)))
	if c == nil {
		return m.out(b[start:end], s[3], s[4])
	}
	// A live body may change once c.mu is released (a paused stream's
	// proxy side); copy what the guest asked for first.
	m.scratch = append(m.scratch[:0], b[start:end]...)
	c.mu.Unlock()
	return m.outScratch(s[3], s[4])
}

func hSetBufferBytes(m *vm, s []uint64) uint32 {
	buf, writable, c, st := m.buffer(uint32(s[0]))
	if st != statusOK {
		return st
	}
	if c != nil {
		defer c.mu.Unlock()
	}
	if !writable {
		return statusBadArgument
	}
	val, ok := m.read(s[3], s[4])
	if !ok {
		return statusInvalidMemoryAccess
	}
	b := *buf
	start, size := uint64(uint32(s[1])), uint64(uint32(s[2]))
	if start > uint64(len(b)) {
		start = uint64(len(b))
	}
	end := min(start+size, uint64(len(b)))
	if uint64(len(b))-(end-start)+uint64(len(val)) > maxBufferBytes {
		return statusBadArgument
	}
	nb := make([]byte, 0, uint64(len(b))-(end-start)+uint64(len(val)))
	nb = append(nb, b[:start]...)
	nb = append(nb, val...)
	nb = append(nb, b[end:]...)
	*buf = nb
	return statusOK
}

func hGetBufferStatus(m *vm, s []uint64) uint32 {
	buf, _, c, st := m.buffer(uint32(s[0]))
	if st != statusOK {
		return st
	}
	n := len(*buf)
	if c != nil {
		c.mu.Unlock()
	}
	if !m.putU32(s[1], uint32(n)) || !m.putU32(s[2], 0) {
		return statusInvalidMemoryAccess
	}
	return statusOK
}

// Header maps.

// headerMap resolves a map for the effective context. When c is returned
// its mutex is held and the caller unlocks it.
func (m *vm) headerMap(t uint32) (h *chain.Headers, writable bool, c *httpCtx, st uint32) {
	switch t {
	case mapRequestHeaders, mapResponseHeaders:
		c := m.effHTTP
		if c == nil {
			return nil, false, nil, statusNotFound
		}
		c.mu.Lock()
		h, w, _ := c.headers(t)
		return h, w, c, statusOK
	case mapRequestTrailers, mapResponseTrailers, mapGRPCInitialMetadata, mapGRPCTrailing, mapHTTPCallTrailers:
		e := chain.Headers(nil)
		return &e, false, nil, statusOK
	case mapHTTPCallHeaders:
		if m.callResp == nil {
			return nil, false, nil, statusNotFound
		}
		return &m.callResp.headers, false, nil, statusOK
	}
	return nil, false, nil, statusBadArgument
}

func hGetHeaderMapSize(m *vm, s []uint64) uint32 {
	h, _, c, st := m.headerMap(uint32(s[0]))
	if st != statusOK {
		return st
	}
	n := serializedSize(*h)
	if c != nil {
		c.mu.Unlock()
	}
	if !m.putU32(s[1], uint32(n)) {
		return statusInvalidMemoryAccess
	}
	return statusOK
}

func hGetHeaderMapPairs(m *vm, s []uint64) uint32 {
	h, _, c, st := m.headerMap(uint32(s[0]))
	if st != statusOK {
		return st
	}
	m.scratch = appendSerialized(m.scratch[:0], *h)
	if c != nil {
		c.mu.Unlock()
	}
	return m.outScratch(s[1], s[2])
}

func hSetHeaderMapPairs(m *vm, s []uint64) uint32 {
	raw, ok := m.read(s[1], s[2])
	if !ok {
		return statusInvalidMemoryAccess
	}
	if st := m.checkMap(raw); st != statusOK {
		return st
	}
	pairs, err := m.parseMap(raw)
	if err != nil {
		return statusBadArgument
	}
	h, writable, c, st := m.headerMap(uint32(s[0]))
	if st != statusOK {
		return st
	}
	if c != nil {
		defer c.mu.Unlock()
	}
	if !writable {
		return statusNotFound
	}
	*h = append((*h)[:0], pairs...)
	return statusOK
}

func hGetHeaderMapValue(m *vm, s []uint64) uint32 {
	// key is a view of guest memory: used before anything calls the guest.
	key, ok := m.read(s[1], s[2])
	if !ok {
		return statusInvalidMemoryAccess
	}
	h, _, c, st := m.headerMap(uint32(s[0]))
	if st != statusOK {
		return st
	}
	v, found := lookupHeader(*h, key)
	if c != nil {
		c.mu.Unlock()
	}
	if !found {
		return statusNotFound
	}
	return m.outString(v, s[3], s[4])
}

// lookupHeader is chain.Headers.Get for a name in guest memory, without
// making a string of it.
func lookupHeader(h chain.Headers, name []byte) (string, bool) {
	for _, f := range h {
		if ascii.EqualFold(f.Name, name) {
			return f.Value, true
		}
	}
	return "", false
}

// writableHeaderMap returns the header map of type t, locked for writing:
// when c is not nil the caller unlocks c.mu when done. A read-only map is
// NotFound.
func (m *vm) writableHeaderMap(t uint32) (h *chain.Headers, c *httpCtx, st uint32) {
	h, writable, c, st := m.headerMap(t)
	if st != statusOK {
		return nil, nil, st
	}
	if !writable {
		if c != nil {
			c.mu.Unlock()
		}
		return nil, nil, statusNotFound
	}
	return h, c, statusOK
}

func (m *vm) modifyHeader(s []uint64, op func(h *chain.Headers, k, v string)) uint32 {
	rawKey, ok := m.read(s[1], s[2])
	if !ok {
		return statusInvalidMemoryAccess
	}
	rawVal, ok := m.read(s[3], s[4])
	if !ok {
		return statusInvalidMemoryAccess
	}
	// One allocation for both: the key lower-cased, then the value.
	var b strings.Builder
	b.Grow(len(rawKey) + len(rawVal))
	for _, ch := range rawKey {
		if 'A' <= ch && ch <= 'Z' {
			ch += 'a' - 'A'
		}
		b.WriteByte(ch)
	}
	b.Write(rawVal)
	kv := b.String()
	key, val := kv[:len(rawKey)], kv[len(rawKey):]
	h, c, st := m.writableHeaderMap(uint32(s[0]))
	if st != statusOK {
		return st
	}
	if c != nil {
		defer c.mu.Unlock()
	}
	lim := &m.ver.s.cfg.Limits
	if len(*h) >= lim.HeaderMapFields {
		return m.refuse(limitHeaderMapFields, statusBadArgument, "header", key)
	}
	if serializedSize(*h)+len(key)+len(val)+10 > lim.HeaderMapBytes.N() {
		return m.refuse(limitHeaderMapBytes, statusBadArgument, "header", key)
	}
	op(h, key, val)
	return statusOK
}

func hAddHeaderMapValue(m *vm, s []uint64) uint32 {
	return m.modifyHeader(s, func(h *chain.Headers, k, v string) { h.Add(k, v) })
}

func hReplaceHeaderMapValue(m *vm, s []uint64) uint32 {
	return m.modifyHeader(s, func(h *chain.Headers, k, v string) { h.Set(k, v) })
}

func hRemoveHeaderMapValue(m *vm, s []uint64) uint32 {
	key, ok := m.readString(s[1], s[2])
	if !ok {
		return statusInvalidMemoryAccess
	}
	h, c, st := m.writableHeaderMap(uint32(s[0]))
	if st != statusOK {
		return st
	}
	if c != nil {
		defer c.mu.Unlock()
	}
	h.Del(key)
	return statusOK
}

// Stream control.

func hContinueStream(m *vm, s []uint64) uint32 {
	c, st := streamTarget(m, s)
	if c == nil {
		return st
	}
	c.mu.Lock()
	if c.resume == nil {
		c.resume = make(chan struct{}, 1)
	}
	c.wakeLocked()
	c.mu.Unlock()
	return statusOK
}

func hCloseStream(m *vm, s []uint64) uint32 {
	c, st := streamTarget(m, s)
	if c == nil {
		return st
	}
	c.mu.Lock()
	c.closed = true
	c.wakeLocked()
	c.mu.Unlock()
	return statusOK
}

// streamTarget checks the stream type argument of continue/close_stream and
// returns the effective HTTP context, or nil and the status to answer.
// The TCP stream types are served by no gateway route: Unimplemented.
func streamTarget(m *vm, s []uint64) (*httpCtx, uint32) {
	switch uint32(s[0]) {
	case streamHTTPRequest, streamHTTPResponse:
	case streamDownstream, streamUpstream:
		return nil, statusUnimplemented
	default:
		return nil, statusBadArgument
	}
	if m.effHTTP == nil {
		return nil, statusNotFound
	}
	return m.effHTTP, statusOK
}

func hGetStatus(m *vm, s []uint64) uint32 {
	r := m.callResp
	if r == nil {
		return statusNotFound
	}
	if !m.putU32(s[0], uint32(r.status)) {
		return statusInvalidMemoryAccess
	}
	return m.out([]byte(r.message), s[1], s[2])
}

func hSendLocalResponse(m *vm, s []uint64) uint32 {
	c := m.effHTTP
	if c == nil {
		return statusNotFound
	}
	code := int(uint32(s[0]))
	details, ok1 := m.readString(s[1], s[2])
	body, ok2 := m.read(s[3], s[4])
	rawHdr, ok3 := m.read(s[5], s[6])
	if !ok1 || !ok2 || !ok3 {
		return statusInvalidMemoryAccess
	}
	if code < 200 || code > 599 {
		m.ver.s.logs.warn("proxy_send_local_response with an invalid status refused", "status", code)
		return statusBadArgument
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
	if details == "" {
		details = "local response from plugin " + m.ver.s.name
	}
	c.mu.Lock()
	c.local = &chain.LocalResponse{Status: code, Headers: hdrs, Body: append([]byte(nil), body...), Details: details}
	c.wakeLocked()
	c.mu.Unlock()
	return statusOK
}
