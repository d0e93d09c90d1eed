package wasmhost

import (
	"encoding/binary"
	"net"
	"strconv"
	"strings"

	"github.com/wasmgate/wasmgate/gateway/chain"
)

// Properties (proxy_get_property). A path is a list of segments separated
// by NUL bytes ("request\x00path"). Strings are returned as their bytes;
// integers (request.time, *.port, response.code) as 8-byte little-endian
// int64, request.time in nanoseconds since the Unix epoch, as Envoy does.
//
//	request.path, request.url_path, request.method, request.host,
//	request.scheme, request.id, request.protocol, request.time,
//	request.headers.<name>, request.useragent, request.referer
//	source.address, source.port, destination.address, destination.port
//	response.code, response.headers.<name>
//	plugin_name, plugin_root_id, plugin_vm_id
//	session.id, route.name (also route_name), upstream.name
//
// proxy_set_property stores any other path on the stream context (bounded)
// so a plugin can read it back later in the same request.
func (m *vm) property(path string) ([]byte, bool) {
	s := m.ver.s
	switch path {
	case "plugin_name":
		return []byte(s.name), true
	case "plugin_root_id":
		return []byte{}, true
	case "plugin_vm_id":
		return []byte(m.vmID()), true
	}
	c := m.effHTTP
	if c == nil {
		return nil, false
	}
	if v, ok := c.props[path]; ok {
		return v, true
	}
	info := c.info
	c.mu.Lock()
	req, _, _ := c.headers(mapRequestHeaders)
	resp, _, _ := c.headers(mapResponseHeaders)
	reqH := *req
	respH := *resp
	c.mu.Unlock()
	hdr := func(h chain.Headers, name string) ([]byte, bool) {
		v, ok := h.Get(name)
		return []byte(v), ok
	}
	switch path {
	case "request.path":
		return hdr(reqH, ":path")
	case "request.url_path":
		p, ok := reqH.Get(":path")
		if i := strings.IndexByte(p, '?'); i >= 0 {
			p = p[:i]
		}
		return []byte(p), ok
	case "request.method":
		return hdr(reqH, ":method")
	case "request.host":
		return hdr(reqH, ":authority")
	case "request.scheme":
		if v, ok := reqH.Get(":scheme"); ok {
			return []byte(v), true
		}
		if info != nil && info.Scheme != "" {
			return []byte(info.Scheme), true
		}
		return nil, false
	case "request.useragent":
		return hdr(reqH, "user-agent")
	case "request.referer":
		return hdr(reqH, "referer")
	case "response.code":
		v, ok := respH.Get(":status")
		if !ok {
			return nil, false
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return nil, false
		}
		return le64(int64(n)), true
	}
	if name, ok := strings.CutPrefix(path, "request.headers."); ok {
		return hdr(reqH, name)
	}
	if name, ok := strings.CutPrefix(path, "response.headers."); ok {
		return hdr(respH, name)
	}
	if info == nil {
		return nil, false
	}
	str := func(v string) ([]byte, bool) { return []byte(v), v != "" }
	switch path {
	case "request.id":
		return str(info.RequestID)
	case "request.protocol":
		return str(info.Protocol)
	case "request.time":
		if info.StartTime.IsZero() {
			return nil, false
		}
		return le64(info.StartTime.UnixNano()), true
	case "source.address":
		return str(info.Client())
	case "source.port":
		return port(info.Client())
	case "destination.address":
		return str(info.Local())
	case "destination.port":
		return port(info.Local())
	case "session.id":
		return str(info.SessionID)
	case "route.name", "route_name":
		return str(info.Route)
	case "upstream.name":
		return str(info.Upstream)
	}
	return nil, false
}

func le64(v int64) []byte { return binary.LittleEndian.AppendUint64(nil, uint64(v)) }

func port(addr string) ([]byte, bool) {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, false
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		return nil, false
	}
	return le64(int64(n)), true
}

// propertyPath turns the NUL-separated segments into a dotted path.
func propertyPath(raw []byte) string {
	b := []byte(string(raw))
	for len(b) > 0 && b[len(b)-1] == 0 {
		b = b[:len(b)-1]
	}
	for i, c := range b {
		if c == 0 {
			b[i] = '.'
		}
	}
	return string(b)
}

func hGetProperty(m *vm, s []uint64) uint32 {
	raw, ok := m.read(s[0], s[1])
	if !ok {
		return statusInvalidMemoryAccess
	}
	v, found := m.property(propertyPath(raw))
	if !found {
		return statusNotFound
	}
	return m.out(v, s[2], s[3])
}

func hSetProperty(m *vm, s []uint64) uint32 {
	raw, ok1 := m.read(s[0], s[1])
	val, ok2 := m.read(s[2], s[3])
	if !ok1 || !ok2 {
		return statusInvalidMemoryAccess
	}
	c := m.effHTTP
	if c == nil {
		return statusNotFound
	}
	path := propertyPath(raw)
	if _, builtin := m.property(path); builtin && c.props[path] == nil {
		return statusBadArgument // built-in properties are read-only
	}
	if len(val) > maxPropertyBytes || (c.props[path] == nil && len(c.props) >= maxUserProperties) {
		return statusBadArgument
	}
	if c.props == nil {
		c.props = map[string][]byte{}
	}
	c.props[path] = append([]byte(nil), val...)
	return statusOK
}

func hCallForeign(m *vm, s []uint64) uint32 {
	name, ok1 := m.readString(s[0], s[1])
	args, ok2 := m.read(s[2], s[3])
	if !ok1 || !ok2 {
		return statusInvalidMemoryAccess
	}
	f, ok := m.ver.s.h.opts.Foreign[name]
	if !ok {
		return statusNotFound
	}
	out, err := f(m.ver.s.name, append([]byte(nil), args...))
	if err != nil {
		return statusInternalFailure
	}
	return m.out(out, s[4], s[5])
}
