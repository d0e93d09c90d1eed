package sdktest

import (
	"context"
	"fmt"
	"time"

	"github.com/tetratelabs/wazero/api"
)

type hostFn func(h *Host, m api.Module, p []uint64) uint32

// instantiateEnv provides every host function of the v0.2.1 spec in module
// "env". Those this harness does not serve (gRPC, queues) answer
// Unimplemented, so any module links.
func (r *Runtime) instantiateEnv() error {
	b := r.rt.NewHostModuleBuilder("env")
	add := func(name string, n int, fn hostFn, i64 ...int) {
		params := make([]api.ValueType, n)
		for i := range params {
			params[i] = api.ValueTypeI32
		}
		for _, i := range i64 {
			params[i] = api.ValueTypeI64
		}
		b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, m api.Module, stack []uint64) {
			for i, t := range params { // i32 arguments may carry stale high bits
				if t == api.ValueTypeI32 {
					stack[i] = uint64(uint32(stack[i]))
				}
			}
			h := r.hosts[m]
			if h == nil {
				stack[0] = InternalFailure
				return
			}
			stack[0] = uint64(fn(h, m, stack[:n]))
		}), params, []api.ValueType{api.ValueTypeI32}).Export(name)
	}
	unimpl := func(h *Host, m api.Module, p []uint64) uint32 { return Unimplemented }

	add("proxy_log", 3, func(h *Host, m api.Module, p []uint64) uint32 {
		msg, ok := m.Memory().Read(uint32(p[1]), uint32(p[2]))
		if !ok {
			return InvalidMemory
		}
		h.logs = append(h.logs, fmt.Sprintf("%d: %s", p[0], msg))
		return OK
	})
	add("proxy_get_log_level", 1, func(h *Host, m api.Module, p []uint64) uint32 {
		return h.writeU32(m, p[0], 0)
	})
	add("proxy_get_current_time_nanoseconds", 1, func(h *Host, m api.Module, p []uint64) uint32 {
		if !m.Memory().WriteUint64Le(uint32(p[0]), uint64(time.Now().UnixNano())) {
			return InvalidMemory
		}
		return OK
	})
	add("proxy_set_tick_period_milliseconds", 1, func(h *Host, m api.Module, p []uint64) uint32 {
		h.tickMS = uint32(p[0])
		return OK
	})
	add("proxy_done", 0, func(h *Host, m api.Module, p []uint64) uint32 { return OK })
	add("proxy_set_effective_context", 1, func(h *Host, m api.Module, p []uint64) uint32 {
		id := uint32(p[0])
		if id != rootContextID && h.streams[id] == nil {
			return BadArgument
		}
		h.current = id
		return OK
	})

	add("proxy_get_buffer_bytes", 5, func(h *Host, m api.Module, p []uint64) uint32 {
		buf, st := h.buffer(uint32(p[0]))
		if st != OK {
			return st
		}
		start, max := uint64(uint32(p[1])), uint64(uint32(p[2]))
		if start > uint64(len(buf)) {
			return BadArgument
		}
		end := start + max
		if end > uint64(len(buf)) {
			end = uint64(len(buf))
		}
		return h.returnBytes(m, p[3], p[4], buf[start:end])
	})
	add("proxy_set_buffer_bytes", 5, func(h *Host, m api.Module, p []uint64) uint32 {
		s := h.streams[h.current]
		typ := uint32(p[0])
		if s == nil || typ > 1 || typ != s.bodyType {
			return NotFound
		}
		val, ok := m.Memory().Read(uint32(p[3]), uint32(p[4]))
		if !ok {
			return InvalidMemory
		}
		start, size := int(uint32(p[1])), int(uint32(p[2]))
		if start > len(s.body) {
			start = len(s.body)
		}
		end := start + size
		if size < 0 || end > len(s.body) || end < start {
			end = len(s.body)
		}
		nb := make([]byte, 0, len(s.body)-(end-start)+len(val))
		nb = append(append(append(nb, s.body[:start]...), val...), s.body[end:]...)
		s.body = nb
		return OK
	})
	add("proxy_get_buffer_status", 3, func(h *Host, m api.Module, p []uint64) uint32 {
		buf, st := h.buffer(uint32(p[0]))
		if st != OK {
			return st
		}
		if st := h.writeU32(m, p[1], uint32(len(buf))); st != OK {
			return st
		}
		return h.writeU32(m, p[2], 0)
	})

	add("proxy_get_header_map_size", 2, func(h *Host, m api.Module, p []uint64) uint32 {
		hm, st := h.headerMap(uint32(p[0]))
		if st != OK {
			return st
		}
		return h.writeU32(m, p[1], uint32(len(EncodeMap(*hm))))
	})
	add("proxy_get_header_map_pairs", 3, func(h *Host, m api.Module, p []uint64) uint32 {
		hm, st := h.headerMap(uint32(p[0]))
		if st != OK {
			return st
		}
		return h.returnBytes(m, p[1], p[2], EncodeMap(*hm))
	})
	add("proxy_set_header_map_pairs", 3, func(h *Host, m api.Module, p []uint64) uint32 {
		hm, st := h.headerMap(uint32(p[0]))
		if st != OK {
			return st
		}
		raw, ok := m.Memory().Read(uint32(p[1]), uint32(p[2]))
		if !ok {
			return InvalidMemory
		}
		pairs, err := DecodeMap(raw)
		if err != nil {
			return BadArgument
		}
		*hm = pairs
		return OK
	})
	add("proxy_get_header_map_value", 5, func(h *Host, m api.Module, p []uint64) uint32 {
		hm, st := h.headerMap(uint32(p[0]))
		if st != OK {
			return st
		}
		key, ok := m.Memory().Read(uint32(p[1]), uint32(p[2]))
		if !ok {
			return InvalidMemory
		}
		for _, kv := range *hm {
			if kv[0] == string(key) {
				return h.returnBytes(m, p[3], p[4], []byte(kv[1]))
			}
		}
		return NotFound
	})
	edit := func(mode int) hostFn {
		return func(h *Host, m api.Module, p []uint64) uint32 {
			hm, st := h.headerMap(uint32(p[0]))
			if st != OK {
				return st
			}
			key, ok := m.Memory().Read(uint32(p[1]), uint32(p[2]))
			if !ok {
				return InvalidMemory
			}
			var val []byte
			if mode != 2 {
				if val, ok = m.Memory().Read(uint32(p[3]), uint32(p[4])); !ok {
					return InvalidMemory
				}
			}
			k := string(key)
			switch mode {
			case 0: // add
				*hm = append(*hm, [2]string{k, string(val)})
			case 1: // replace
				for i := range *hm {
					if (*hm)[i][0] == k {
						(*hm)[i][1] = string(val)
						return OK
					}
				}
				*hm = append(*hm, [2]string{k, string(val)})
			case 2: // remove
				out := (*hm)[:0]
				for _, kv := range *hm {
					if kv[0] != k {
						out = append(out, kv)
					}
				}
				*hm = out
			}
			return OK
		}
	}
	add("proxy_add_header_map_value", 5, edit(0))
	add("proxy_replace_header_map_value", 5, edit(1))
	add("proxy_remove_header_map_value", 3, edit(2))

	add("proxy_continue_stream", 1, func(h *Host, m api.Module, p []uint64) uint32 {
		s := h.streams[h.current]
		if s == nil || p[0] > 1 {
			return BadArgument
		}
		s.Continued++
		return OK
	})
	add("proxy_close_stream", 1, func(h *Host, m api.Module, p []uint64) uint32 { return OK })
	add("proxy_get_status", 3, func(h *Host, m api.Module, p []uint64) uint32 {
		if st := h.writeU32(m, p[0], 200); st != OK {
			return st
		}
		return h.returnBytes(m, p[1], p[2], nil)
	})
	add("proxy_send_local_response", 8, func(h *Host, m api.Module, p []uint64) uint32 {
		s := h.streams[h.current]
		if s == nil {
			return BadArgument
		}
		details, ok1 := m.Memory().Read(uint32(p[1]), uint32(p[2]))
		body, ok2 := m.Memory().Read(uint32(p[3]), uint32(p[4]))
		hdr, ok3 := m.Memory().Read(uint32(p[5]), uint32(p[6]))
		if !ok1 || !ok2 || !ok3 {
			return InvalidMemory
		}
		pairs, err := DecodeMap(hdr)
		if err != nil {
			return BadArgument
		}
		s.Local = &LocalResponse{Status: int(uint32(p[0])), Details: string(details), Body: append([]byte(nil), body...), Headers: pairs}
		return OK
	})
	add("proxy_http_call", 10, func(h *Host, m api.Module, p []uint64) uint32 {
		up, ok1 := m.Memory().Read(uint32(p[0]), uint32(p[1]))
		hdr, ok2 := m.Memory().Read(uint32(p[2]), uint32(p[3]))
		body, ok3 := m.Memory().Read(uint32(p[4]), uint32(p[5]))
		if !ok1 || !ok2 || !ok3 {
			return InvalidMemory
		}
		pairs, err := DecodeMap(hdr)
		if err != nil {
			return BadArgument
		}
		id := uint32(len(h.calls) + 1)
		h.calls = append(h.calls, HTTPCall{ID: id, Upstream: string(up), Headers: pairs,
			Body: append([]byte(nil), body...), Timeout: uint32(p[8]), Context: h.current})
		return h.writeU32(m, p[9], id)
	})
	add("proxy_grpc_call", 12, unimpl)
	add("proxy_grpc_stream", 9, unimpl)
	add("proxy_grpc_send", 4, unimpl)
	add("proxy_grpc_cancel", 1, unimpl)
	add("proxy_grpc_close", 1, unimpl)

	add("proxy_set_shared_data", 5, func(h *Host, m api.Module, p []uint64) uint32 {
		key, ok1 := m.Memory().Read(uint32(p[0]), uint32(p[1]))
		val, ok2 := m.Memory().Read(uint32(p[2]), uint32(p[3]))
		if !ok1 || !ok2 {
			return InvalidMemory
		}
		cur := h.shared[string(key)]
		if cas := uint32(p[4]); cas != 0 && cas != cur.cas {
			return CASMismatch
		}
		h.shared[string(key)] = sharedValue{value: append([]byte(nil), val...), cas: cur.cas + 1}
		return OK
	})
	add("proxy_get_shared_data", 5, func(h *Host, m api.Module, p []uint64) uint32 {
		key, ok := m.Memory().Read(uint32(p[0]), uint32(p[1]))
		if !ok {
			return InvalidMemory
		}
		v, found := h.shared[string(key)]
		if !found {
			return NotFound
		}
		if st := h.returnBytes(m, p[2], p[3], v.value); st != OK {
			return st
		}
		return h.writeU32(m, p[4], v.cas)
	})
	add("proxy_register_shared_queue", 3, unimpl)
	add("proxy_resolve_shared_queue", 5, unimpl)
	add("proxy_enqueue_shared_queue", 3, unimpl)
	add("proxy_dequeue_shared_queue", 3, unimpl)

	add("proxy_define_metric", 4, func(h *Host, m api.Module, p []uint64) uint32 {
		if p[0] > 2 {
			return BadArgument
		}
		name, ok := m.Memory().Read(uint32(p[1]), uint32(p[2]))
		if !ok {
			return InvalidMemory
		}
		h.metrics = append(h.metrics, metric{name: string(name), kind: uint32(p[0])})
		return h.writeU32(m, p[3], uint32(len(h.metrics)))
	})
	add("proxy_record_metric", 2, func(h *Host, m api.Module, p []uint64) uint32 {
		i := int(uint32(p[0])) - 1
		if i < 0 || i >= len(h.metrics) {
			return NotFound
		}
		h.metrics[i].value = int64(p[1])
		return OK
	}, 1)
	add("proxy_increment_metric", 2, func(h *Host, m api.Module, p []uint64) uint32 {
		i := int(uint32(p[0])) - 1
		if i < 0 || i >= len(h.metrics) {
			return NotFound
		}
		if h.metrics[i].kind == 0 && int64(p[1]) < 0 {
			return BadArgument
		}
		h.metrics[i].value += int64(p[1])
		return OK
	}, 1)
	add("proxy_get_metric", 2, func(h *Host, m api.Module, p []uint64) uint32 {
		i := int(uint32(p[0])) - 1
		if i < 0 || i >= len(h.metrics) {
			return NotFound
		}
		if !m.Memory().WriteUint64Le(uint32(p[1]), uint64(h.metrics[i].value)) {
			return InvalidMemory
		}
		return OK
	})

	add("proxy_get_property", 4, func(h *Host, m api.Module, p []uint64) uint32 {
		path, ok := m.Memory().Read(uint32(p[0]), uint32(p[1]))
		if !ok {
			return InvalidMemory
		}
		key := string(path)
		v, found := h.props[key]
		if !found {
			v, found = h.props[dotsToNUL(key)]
		}
		if !found {
			return NotFound
		}
		return h.returnBytes(m, p[2], p[3], []byte(v))
	})
	add("proxy_set_property", 4, func(h *Host, m api.Module, p []uint64) uint32 {
		path, ok1 := m.Memory().Read(uint32(p[0]), uint32(p[1]))
		val, ok2 := m.Memory().Read(uint32(p[2]), uint32(p[3]))
		if !ok1 || !ok2 {
			return InvalidMemory
		}
		h.props[dotsToNUL(string(path))] = string(val)
		return OK
	})
	add("proxy_call_foreign_function", 6, func(h *Host, m api.Module, p []uint64) uint32 { return NotFound })

	_, err := b.Instantiate(r.ctx)
	return err
}

func dotsToNUL(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c == '.' {
			b[i] = 0
		}
	}
	return string(b)
}

func (h *Host) writeU32(m api.Module, addr uint64, v uint32) uint32 {
	if !m.Memory().WriteUint32Le(uint32(addr), v) {
		return InvalidMemory
	}
	return OK
}

// returnBytes allocates len(b) bytes in the guest (proxy_on_memory_allocate),
// copies b there and writes the address and size to the return slots.
func (h *Host) returnBytes(m api.Module, retPtr, retLen uint64, b []byte) uint32 {
	var addr uint32
	if len(b) > 0 {
		res, err := h.alloc.Call(h.ctx, uint64(len(b)))
		if err != nil || res[0] == 0 {
			return InternalFailure
		}
		addr = uint32(res[0])
		if !m.Memory().Write(addr, b) {
			return InvalidMemory
		}
	}
	if !m.Memory().WriteUint32Le(uint32(retPtr), addr) || !m.Memory().WriteUint32Le(uint32(retLen), uint32(len(b))) {
		return InvalidMemory
	}
	return OK
}

func (h *Host) buffer(typ uint32) ([]byte, uint32) {
	switch typ {
	case 0, 1:
		s := h.streams[h.current]
		if s == nil || s.bodyType != typ {
			return nil, NotFound
		}
		return s.body, OK
	case 4:
		if h.callResp == nil {
			return nil, NotFound
		}
		return h.callResp.body, OK
	case 6:
		return h.vmcfg, OK
	case 7:
		return h.cfg, OK
	case 8:
		return h.foreignRet, OK
	case 2, 3, 5:
		return nil, NotFound
	}
	return nil, BadArgument
}

var emptyMap [][2]string

func (h *Host) headerMap(typ uint32) (*[][2]string, uint32) {
	switch typ {
	case 0, 2:
		s := h.streams[h.current]
		if s == nil {
			return nil, NotFound
		}
		if typ == 0 {
			return &s.RequestHeaders, OK
		}
		return &s.ResponseHeaders, OK
	case 1, 3:
		s := h.streams[h.current]
		if s == nil {
			return nil, NotFound
		}
		if typ == 1 {
			return &s.requestT, OK
		}
		return &s.responseT, OK
	case 6:
		if h.callResp == nil {
			return nil, NotFound
		}
		return &h.callResp.headers, OK
	case 4, 5, 7:
		emptyMap = emptyMap[:0]
		return &emptyMap, OK
	}
	return nil, BadArgument
}
