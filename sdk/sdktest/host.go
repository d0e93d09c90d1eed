// Package sdktest is a small proxy-wasm v0.2.1 host on wazero for testing
// plugins without a gateway: it loads a module, configures it, and drives
// HTTP contexts one callback at a time, so a test can check exactly what a
// plugin did to headers, bodies and SSE events.
//
// It is a test harness, not the gateway's host (package wasmhost): one VM,
// no pools, no limits beyond an optional memory cap, calls serialized by
// the caller. It exists so that SDK and example tests run real guests
// under a real runtime instead of mocks, and so a plugin author can do the
// same.
package sdktest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// Status codes of the ABI (proxy_status_t).
const (
	OK                 = 0
	NotFound           = 1
	BadArgument        = 2
	InvalidMemory      = 6
	Empty              = 7
	CASMismatch        = 8
	InternalFailure    = 10
	Unimplemented      = 12
	rootContextID      = 1
	firstStreamContext = 2
)

// Action is a callback result (proxy_action_t).
type Action uint32

// Actions.
const (
	Continue Action = 0
	Pause    Action = 1
)

// Options configures a Host.
type Options struct {
	// Config reaches proxy_on_configure; VMConfig reaches proxy_on_vm_start.
	Config, VMConfig []byte
	// Properties answer proxy_get_property, keyed by dotted path
	// ("session.id"); the guest may ask with NUL- or dot-separated paths.
	Properties map[string]string
	// MemoryLimitPages caps linear memory (0: 4096 pages = 256 MiB).
	MemoryLimitPages uint32
	// Cache, when set, shares compiled code between Hosts, so that New
	// measures instantiation rather than compilation.
	Cache wazero.CompilationCache
}

// LocalResponse is what a plugin sent with proxy_send_local_response.
type LocalResponse struct {
	Status  int
	Details string
	Body    []byte
	Headers [][2]string
}

// HTTPCall is a call a plugin made with proxy_http_call.
type HTTPCall struct {
	ID       uint32
	Upstream string
	Headers  [][2]string
	Body     []byte
	Timeout  uint32
	Context  uint32
}

// Host runs one instance of a plugin.
type Host struct {
	ctx     context.Context
	rt      *Runtime
	owner   *Runtime
	mod     api.Module
	alloc   api.Function
	exports map[string]api.Function
	out     bytes.Buffer

	props      map[string]string
	cfg, vmcfg []byte
	current    uint32
	nextID     uint32
	streams    map[uint32]*Stream
	logs       []string
	shared     map[string]sharedValue
	metrics    []metric
	tickMS     uint32
	calls      []HTTPCall
	callResp   *callResponse
	foreignRet []byte
}

type sharedValue struct {
	value []byte
	cas   uint32
}

type metric struct {
	name  string
	kind  uint32
	value int64
}

type callResponse struct {
	headers [][2]string
	body    []byte
}

// Runtime holds a compiled plugin; each Instantiate makes a new VM of it
// (a Host), so a benchmark can price instantiation apart from compilation.
type Runtime struct {
	ctx   context.Context
	rt    wazero.Runtime
	cm    wazero.CompiledModule
	hosts map[api.Module]*Host
	n     int
}

// NewRuntime compiles wasm. MemoryLimitPages and Cache of opts apply.
func NewRuntime(ctx context.Context, wasm []byte, opts Options) (*Runtime, error) {
	limit := opts.MemoryLimitPages
	if limit == 0 {
		limit = 4096
	}
	rc := wazero.NewRuntimeConfigCompiler().WithMemoryLimitPages(limit)
	if opts.Cache != nil {
		rc = rc.WithCompilationCache(opts.Cache)
	}
	r := &Runtime{ctx: ctx, rt: wazero.NewRuntimeWithConfig(ctx, rc), hosts: map[api.Module]*Host{}}
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, r.rt); err != nil {
		r.Close()
		return nil, err
	}
	if err := r.instantiateEnv(); err != nil {
		r.Close()
		return nil, fmt.Errorf("sdktest: env module: %w", err)
	}
	cm, err := r.rt.CompileModule(ctx, wasm)
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("sdktest: compile: %w", err)
	}
	r.cm = cm
	return r, nil
}

// Close releases the runtime and every Host made from it.
func (r *Runtime) Close() { r.rt.Close(r.ctx) }

// New compiles and starts wasm in a runtime of its own; Close releases both.
func New(ctx context.Context, wasm []byte, opts Options) (*Host, error) {
	r, err := NewRuntime(ctx, wasm, opts)
	if err != nil {
		return nil, err
	}
	h, err := r.Instantiate(opts)
	if err != nil {
		r.Close()
		return nil, err
	}
	h.owner = r
	return h, nil
}

// Instantiate starts a new VM: _initialize (or _start), a root context,
// proxy_on_vm_start and proxy_on_configure. Either returning false is an
// error.
func (r *Runtime) Instantiate(opts Options) (*Host, error) {
	ctx := r.ctx
	h := &Host{
		ctx:     ctx,
		rt:      r,
		exports: map[string]api.Function{},
		props:   map[string]string{},
		cfg:     opts.Config,
		vmcfg:   opts.VMConfig,
		nextID:  firstStreamContext,
		streams: map[uint32]*Stream{},
		shared:  map[string]sharedValue{},
	}
	for k, v := range opts.Properties {
		h.props[strings.ReplaceAll(k, ".", "\x00")] = v
	}
	r.n++
	mod, err := r.rt.InstantiateModule(ctx, r.cm, wazero.NewModuleConfig().WithStartFunctions().
		WithStdout(&h.out).WithStderr(&h.out).WithName(fmt.Sprintf("plugin-%d", r.n)))
	if err != nil {
		return nil, fmt.Errorf("sdktest: instantiate: %w", err)
	}
	h.mod = mod
	r.hosts[mod] = h
	for name := range r.cm.ExportedFunctions() {
		h.exports[name] = mod.ExportedFunction(name)
	}
	if _, ok := h.exports["proxy_abi_version_0_2_1"]; !ok {
		if _, ok := h.exports["proxy_abi_version_0_2_0"]; !ok {
			h.Close()
			return nil, errors.New("sdktest: module exports no proxy_abi_version_0_2_x marker")
		}
	}
	h.alloc = h.exports["proxy_on_memory_allocate"]
	if h.alloc == nil {
		h.alloc = h.exports["malloc"]
	}
	if h.alloc == nil {
		h.Close()
		return nil, errors.New("sdktest: module exports no proxy_on_memory_allocate")
	}
	start := "_initialize"
	if _, ok := h.exports[start]; !ok {
		start = "_start"
	}
	if _, err := h.call(start); err != nil {
		h.Close()
		return nil, err
	}
	if _, err := h.call("proxy_on_context_create", rootContextID, 0); err != nil {
		h.Close()
		return nil, err
	}
	if r, err := h.callOK("proxy_on_vm_start", rootContextID, uint64(len(h.vmcfg))); err != nil || r == 0 {
		h.Close()
		return nil, fmt.Errorf("sdktest: proxy_on_vm_start refused (%v)", err)
	}
	if r, err := h.callOK("proxy_on_configure", rootContextID, uint64(len(h.cfg))); err != nil || r == 0 {
		logs := strings.Join(h.logs, "; ")
		h.Close()
		return nil, fmt.Errorf("sdktest: proxy_on_configure refused (%v); logs: %s", err, logs)
	}
	return h, nil
}

// Close releases the VM (and its runtime when New made it).
func (h *Host) Close() {
	delete(h.rt.hosts, h.mod)
	h.mod.Close(h.ctx)
	if h.owner != nil {
		h.owner.Close()
	}
}

// MemoryPages is the guest's linear memory size in 64 KiB pages.
func (h *Host) MemoryPages() uint32 { return h.mod.Memory().Size() / 65536 }

// Logs returns what the plugin logged (proxy_log as "level: msg", then
// anything written to stdout/stderr).
func (h *Host) Logs() []string {
	out := append([]string(nil), h.logs...)
	if h.out.Len() > 0 {
		out = append(out, h.out.String())
	}
	return out
}

// TickPeriod is the period the plugin asked for, in ms.
func (h *Host) TickPeriod() uint32 { return h.tickMS }

// Tick calls proxy_on_tick on the root context.
func (h *Host) Tick() error { _, err := h.call("proxy_on_tick", rootContextID); return err }

// Metric returns a metric's value by name.
func (h *Host) Metric(name string) (int64, bool) {
	for _, m := range h.metrics {
		if m.name == name {
			return m.value, true
		}
	}
	return 0, false
}

// SharedData returns a shared value.
func (h *Host) SharedData(key string) ([]byte, bool) {
	v, ok := h.shared[key]
	return v.value, ok
}

// HTTPCalls returns the calls made so far.
func (h *Host) HTTPCalls() []HTTPCall { return h.calls }

// RespondHTTPCall delivers a response to call id through
// proxy_on_http_call_response on the root context.
func (h *Host) RespondHTTPCall(id uint32, headers [][2]string, body []byte) error {
	h.callResp = &callResponse{headers: headers, body: body}
	defer func() { h.callResp = nil }()
	_, err := h.call("proxy_on_http_call_response", rootContextID, uint64(id), uint64(len(headers)), uint64(len(body)), 0)
	return err
}

// call runs an export if the module has it; a missing callback is a no-op.
func (h *Host) call(name string, params ...uint64) (uint64, error) {
	f := h.exports[name]
	if f == nil {
		return 0, nil
	}
	if len(params) > 0 {
		h.current = uint32(params[0])
	}
	res, err := f.Call(h.ctx, params...)
	if err != nil {
		return 0, fmt.Errorf("sdktest: %s: %w", name, err)
	}
	if len(res) > 0 {
		return res[0], nil
	}
	return 0, nil
}

// callOK is call where a missing export counts as success (returns 1).
func (h *Host) callOK(name string, params ...uint64) (uint64, error) {
	if h.exports[name] == nil {
		return 1, nil
	}
	return h.call(name, params...)
}

// Stream is one HTTP context.
type Stream struct {
	h                   *Host
	ID                  uint32
	RequestHeaders      [][2]string
	ResponseHeaders     [][2]string
	body                []byte
	bodyType            uint32
	Local               *LocalResponse
	Continued           int
	requestT, responseT [][2]string
}

// NewStream creates an HTTP context (proxy_on_context_create).
func (h *Host) NewStream() (*Stream, error) {
	s := &Stream{h: h, ID: h.nextID}
	h.nextID++
	h.streams[s.ID] = s
	_, err := h.call("proxy_on_context_create", uint64(s.ID), rootContextID)
	return s, err
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// OnRequestHeaders sets the request headers and calls the plugin.
func (s *Stream) OnRequestHeaders(headers [][2]string, eos bool) (Action, error) {
	s.RequestHeaders = headers
	r, err := s.h.call("proxy_on_request_headers", uint64(s.ID), uint64(len(headers)), b2u(eos))
	return Action(r), err
}

// OnResponseHeaders sets the response headers and calls the plugin.
func (s *Stream) OnResponseHeaders(headers [][2]string, eos bool) (Action, error) {
	s.ResponseHeaders = headers
	r, err := s.h.call("proxy_on_response_headers", uint64(s.ID), uint64(len(headers)), b2u(eos))
	return Action(r), err
}

// OnRequestBody passes a request body chunk and returns what the plugin
// left in the buffer.
func (s *Stream) OnRequestBody(body []byte, eos bool) ([]byte, Action, error) {
	return s.onBody(0, "proxy_on_request_body", body, eos)
}

// OnResponseBody passes a response body chunk (for SSE: one whole event)
// and returns what the plugin left in the buffer.
func (s *Stream) OnResponseBody(body []byte, eos bool) ([]byte, Action, error) {
	return s.onBody(1, "proxy_on_response_body", body, eos)
}

func (s *Stream) onBody(typ uint32, name string, body []byte, eos bool) ([]byte, Action, error) {
	s.body = append(s.body[:0], body...)
	s.bodyType = typ
	r, err := s.h.call(name, uint64(s.ID), uint64(len(body)), b2u(eos))
	return s.body, Action(r), err
}

// Done ends the context: proxy_on_done, proxy_on_log, proxy_on_delete.
func (s *Stream) Done() error {
	if _, err := s.h.call("proxy_on_done", uint64(s.ID)); err != nil {
		return err
	}
	if _, err := s.h.call("proxy_on_log", uint64(s.ID)); err != nil {
		return err
	}
	_, err := s.h.call("proxy_on_delete", uint64(s.ID))
	delete(s.h.streams, s.ID)
	return err
}

// ---- serialization -------------------------------------------------------

// EncodeMap serializes header pairs in the ABI's map format.
func EncodeMap(pairs [][2]string) []byte {
	if len(pairs) == 0 {
		return nil
	}
	size := 4 + 8*len(pairs)
	for _, p := range pairs {
		size += len(p[0]) + len(p[1]) + 2
	}
	b := make([]byte, 4+8*len(pairs), size)
	binary.LittleEndian.PutUint32(b, uint32(len(pairs)))
	for i, p := range pairs {
		binary.LittleEndian.PutUint32(b[4+8*i:], uint32(len(p[0])))
		binary.LittleEndian.PutUint32(b[8+8*i:], uint32(len(p[1])))
	}
	for _, p := range pairs {
		b = append(append(append(append(b, p[0]...), 0), p[1]...), 0)
	}
	return b
}

// DecodeMap parses the ABI's map format.
func DecodeMap(b []byte) ([][2]string, error) {
	if len(b) <= 1 {
		return nil, nil
	}
	if len(b) < 4 {
		return nil, errors.New("map shorter than its count")
	}
	n := int(binary.LittleEndian.Uint32(b))
	if n > (len(b)-4)/8 {
		return nil, fmt.Errorf("map count %d exceeds its size", n)
	}
	off := 4 + 8*n
	out := make([][2]string, 0, n)
	for i := 0; i < n; i++ {
		kl := int(binary.LittleEndian.Uint32(b[4+8*i:]))
		vl := int(binary.LittleEndian.Uint32(b[8+8*i:]))
		if kl < 0 || vl < 0 || off+kl+vl+2 > len(b) {
			return nil, fmt.Errorf("map pair %d overruns", i)
		}
		out = append(out, [2]string{string(b[off : off+kl]), string(b[off+kl+1 : off+kl+1+vl])})
		off += kl + vl + 2
	}
	return out, nil
}
