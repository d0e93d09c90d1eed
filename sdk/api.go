package sdk

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// ---- logging ---------------------------------------------------------------

// Log writes msg to the gateway log at level.
func Log(level LogLevel, msg string) { proxyLog(uint32(level), strPtr(msg), uint32(len(msg))) }

// Logf formats and logs at level.
func Logf(level LogLevel, format string, args ...any) { Log(level, fmt.Sprintf(format, args...)) }

// Debugf logs at debug level.
func Debugf(format string, args ...any) { Logf(LogDebug, format, args...) }

// Infof logs at info level.
func Infof(format string, args ...any) { Logf(LogInfo, format, args...) }

// Warnf logs at warn level.
func Warnf(format string, args ...any) { Logf(LogWarn, format, args...) }

// Errorf logs at error level.
func Errorf(format string, args ...any) { Logf(LogError, format, args...) }

// HostLogLevel is the host's current log level: messages below it are
// discarded, so a plugin can skip building them.
func HostLogLevel() (LogLevel, error) {
	if st := proxyGetLogLevel(&retAux); st != 0 {
		return 0, Status(st)
	}
	return LogLevel(retAux), nil
}

// ---- buffers ----------------------------------------------------------------

// GetBuffer reads up to max bytes from start of a buffer.
func GetBuffer(t BufferType, start, max int) ([]byte, error) {
	if st := proxyGetBufferBytes(uint32(t), uint32(start), uint32(max), &retPtr, &retLen); st != 0 {
		drop()
		return nil, Status(st)
	}
	return take(), nil
}

// BufferSize returns a buffer's size.
func BufferSize(t BufferType) (int, error) {
	if st := proxyGetBufferStatus(uint32(t), &retLen, &retAux); st != 0 {
		return 0, Status(st)
	}
	return int(retLen), nil
}

// ReplaceBuffer replaces size bytes at start of a buffer with data
// (start 0 and size 0 prepend; start past the end appends).
func ReplaceBuffer(t BufferType, start, size int, data []byte) error {
	return err(proxySetBufferBytes(uint32(t), uint32(start), uint32(size), bytesPtr(data), uint32(len(data))))
}

// wholeBuffer reads all of a buffer whose size a callback announced.
func wholeBuffer(t BufferType, size int) ([]byte, error) {
	if size == 0 {
		return nil, nil
	}
	return GetBuffer(t, 0, size)
}

// PluginConfig returns the plugin configuration (in OnConfigure).
func PluginConfig() ([]byte, error) {
	n, e := BufferSize(BufferPluginConfiguration)
	if e != nil || n == 0 {
		if e == StatusNotFound {
			e = nil
		}
		return nil, e
	}
	return GetBuffer(BufferPluginConfiguration, 0, n)
}

// UnmarshalPluginConfig decodes the JSON plugin configuration into v (in
// OnConfigure). An empty configuration leaves v as it is.
func UnmarshalPluginConfig(v any) error {
	b, e := PluginConfig()
	if e != nil {
		return fmt.Errorf("sdk: read plugin configuration: %w", e)
	}
	if len(b) == 0 {
		return nil
	}
	if e := json.Unmarshal(b, v); e != nil {
		return fmt.Errorf("sdk: plugin configuration: %w", e)
	}
	return nil
}

// VMConfig returns the VM configuration (in OnVMStart).
func VMConfig() ([]byte, error) {
	n, e := BufferSize(BufferVMConfiguration)
	if e != nil || n == 0 {
		return nil, e
	}
	return GetBuffer(BufferVMConfiguration, 0, n)
}

// RequestBody returns the request body chunk (in OnRequestBody).
func RequestBody(size int) ([]byte, error) { return wholeBuffer(BufferRequestBody, size) }

// SetRequestBody replaces the request body chunk of the given size.
func SetRequestBody(size int, body []byte) error {
	return ReplaceBuffer(BufferRequestBody, 0, size, body)
}

// ResponseBody returns the response body chunk (in OnResponseBody).
func ResponseBody(size int) ([]byte, error) { return wholeBuffer(BufferResponseBody, size) }

// SetResponseBody replaces the response body chunk of the given size.
func SetResponseBody(size int, body []byte) error {
	return ReplaceBuffer(BufferResponseBody, 0, size, body)
}

// ---- SSE ----------------------------------------------------------------------

// ResponseEvent parses the SSE event in the response body (in
// OnResponseBody of a text/event-stream response, where the host delivers
// exactly one complete event per call). It returns nil for an empty call.
func ResponseEvent(size int) (*Event, error) {
	b, e := ResponseBody(size)
	if e != nil || len(b) == 0 {
		return nil, e
	}
	return ParseEvent(b), nil
}

// SetResponseEvent replaces the event of the given original size with ev.
func SetResponseEvent(size int, ev *Event) error { return SetResponseBody(size, ev.Bytes()) }

// DropResponseEvent removes the event of the given size from the stream.
func DropResponseEvent(size int) error { return SetResponseBody(size, nil) }

// IsEventStream reports whether a content-type value is text/event-stream.
func IsEventStream(contentType string) bool {
	const want = "text/event-stream"
	if len(contentType) < len(want) {
		return false
	}
	if contentType == want {
		return true
	}
	ct := strings.TrimSpace(contentType)
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = strings.TrimSpace(ct[:i])
	}
	return strings.EqualFold(ct, want)
}

// ---- header maps ----------------------------------------------------------------

// GetHeader returns one header of a map; ok is false when it is absent.
func GetHeader(m MapType, name string) (value string, ok bool, e error) {
	st := proxyGetHeaderMapValue(uint32(m), strPtr(name), uint32(len(name)), &retPtr, &retLen)
	switch st {
	case 0:
		return takeString(), true, nil
	case uint32(StatusNotFound):
		drop()
		return "", false, nil
	}
	drop()
	return "", false, Status(st)
}

// Headers returns all pairs of a map.
func Headers(m MapType) ([]Header, error) {
	if st := proxyGetHeaderMapPairs(uint32(m), &retPtr, &retLen); st != 0 {
		drop()
		return nil, Status(st)
	}
	return DecodeHeaders(take())
}

// SetHeaders replaces a whole map.
func SetHeaders(m MapType, h []Header) error {
	b := EncodeHeaders(h)
	return err(proxySetHeaderMapPairs(uint32(m), bytesPtr(b), uint32(len(b))))
}

// AddHeader appends a header.
func AddHeader(m MapType, name, value string) error {
	return err(proxyAddHeaderMapValue(uint32(m), strPtr(name), uint32(len(name)), strPtr(value), uint32(len(value))))
}

// ReplaceHeader sets a header, replacing any value it had.
func ReplaceHeader(m MapType, name, value string) error {
	return err(proxyReplaceHeaderMapValue(uint32(m), strPtr(name), uint32(len(name)), strPtr(value), uint32(len(value))))
}

// RemoveHeader deletes a header.
func RemoveHeader(m MapType, name string) error {
	return err(proxyRemoveHeaderMapValue(uint32(m), strPtr(name), uint32(len(name))))
}

// RequestHeader returns a request header (in OnRequestHeaders or OnLog).
func RequestHeader(name string) (string, bool) {
	v, ok, _ := GetHeader(MapRequestHeaders, name)
	return v, ok
}

// ResponseHeader returns a response header (in OnResponseHeaders or OnLog).
func ResponseHeader(name string) (string, bool) {
	v, ok, _ := GetHeader(MapResponseHeaders, name)
	return v, ok
}

// SetRequestHeader sets a request header.
func SetRequestHeader(name, value string) error { return ReplaceHeader(MapRequestHeaders, name, value) }

// SetResponseHeader sets a response header.
func SetResponseHeader(name, value string) error {
	return ReplaceHeader(MapResponseHeaders, name, value)
}

// ---- stream control --------------------------------------------------------------

// ContinueRequest resumes a paused request.
func ContinueRequest() error { return err(proxyContinueStream(uint32(StreamRequest))) }

// ContinueResponse resumes a paused response.
func ContinueResponse() error { return err(proxyContinueStream(uint32(StreamResponse))) }

// CloseStream resets a stream.
func CloseStream(t StreamType) error { return err(proxyCloseStream(uint32(t))) }

// SendLocalResponse answers the client instead of the upstream; return
// Pause from the callback afterwards. details is a short reason for the
// gateway's logs and session record.
func SendLocalResponse(status int, headers []Header, body []byte, details string) error {
	h := EncodeHeaders(headers)
	return err(proxySendLocalResponse(uint32(status), strPtr(details), uint32(len(details)),
		bytesPtr(body), uint32(len(body)), bytesPtr(h), uint32(len(h)), 0))
}

// SetEffectiveContext makes id the current context (e.g. from a tick, to
// resume a request paused earlier).
func SetEffectiveContext(id uint32) error {
	if st := proxySetEffectiveContext(id); st != 0 {
		return Status(st)
	}
	current = id
	return nil
}

// Done tells the host a root context that returned false from OnDone has
// finished.
func Done() error { return err(proxyDone()) }

// ---- properties -------------------------------------------------------------------

// Property reads a host property by its path segments, e.g.
// Property("session", "id"). On the wire the segments are joined with NUL
// bytes; hosts that only know dotted names are asked again with dots.
func Property(path ...string) ([]byte, error) {
	p := strings.Join(path, "\x00")
	st := proxyGetProperty(strPtr(p), uint32(len(p)), &retPtr, &retLen)
	if st == uint32(StatusNotFound) && len(path) > 1 {
		drop()
		p = strings.Join(path, ".")
		st = proxyGetProperty(strPtr(p), uint32(len(p)), &retPtr, &retLen)
	}
	if st != 0 {
		drop()
		return nil, Status(st)
	}
	return take(), nil
}

// SetProperty sets a property for later plugins and the host.
func SetProperty(value []byte, path ...string) error {
	p := strings.Join(path, "\x00")
	return err(proxySetProperty(strPtr(p), uint32(len(p)), bytesPtr(value), uint32(len(value))))
}

func propString(path ...string) string {
	b, _ := Property(path...)
	return string(b)
}

// SessionID is the gateway session of the current request ("" if none).
func SessionID() string { return propString("session", "id") }

// RouteName is the route the request matched.
func RouteName() string { return propString("route", "name") }

// UpstreamName is the route's upstream.
func UpstreamName() string { return propString("upstream", "name") }

// PluginName is this plugin's name in the gateway configuration.
func PluginName() string { return propString("plugin_name") }

// RequestPath is the request's path.
func RequestPath() string { return propString("request", "path") }

// ClientAddress is the client's ip:port.
func ClientAddress() string { return propString("source", "address") }

// ---- time and ticks -------------------------------------------------------------------

// SetTickPeriod makes the host call OnTick every d (0 stops it).
func SetTickPeriod(d time.Duration) error {
	return err(proxySetTickPeriodMilliseconds(uint32(d / time.Millisecond)))
}

// Now is the host's current time.
func Now() time.Time {
	var ns uint64
	proxyGetCurrentTimeNanoseconds(&ns)
	return time.Unix(0, int64(ns))
}

// ---- shared data ------------------------------------------------------------------------

// GetSharedData returns a value shared by the plugin's VMs and its CAS.
func GetSharedData(key string) (value []byte, cas uint32, e error) {
	if st := proxyGetSharedData(strPtr(key), uint32(len(key)), &retPtr, &retLen, &retAux); st != 0 {
		drop()
		return nil, 0, Status(st)
	}
	return take(), retAux, nil
}

// SetSharedData stores value; a non-zero cas must match the current one
// (StatusCASMismatch otherwise).
func SetSharedData(key string, value []byte, cas uint32) error {
	return err(proxySetSharedData(strPtr(key), uint32(len(key)), bytesPtr(value), uint32(len(value)), cas))
}

// ---- metrics ------------------------------------------------------------------------------

// Metric is a metric defined by the plugin; the gateway exports it on
// /metrics labelled with the plugin.
type Metric uint32

// DefineMetric defines (or finds) a metric.
func DefineMetric(t MetricType, name string) (Metric, error) {
	var id uint32
	if st := proxyDefineMetric(uint32(t), strPtr(name), uint32(len(name)), &id); st != 0 {
		return 0, Status(st)
	}
	return Metric(id), nil
}

// Increment adds delta (counters only go up).
func (m Metric) Increment(delta int64) error { return err(proxyIncrementMetric(uint32(m), delta)) }

// Record sets a gauge or records a histogram value.
func (m Metric) Record(v uint64) error { return err(proxyRecordMetric(uint32(m), v)) }

// Value reads the metric.
func (m Metric) Value() (uint64, error) {
	var v uint64
	if st := proxyGetMetric(uint32(m), &v); st != 0 {
		return 0, Status(st)
	}
	return v, nil
}

// ---- HTTP calls -----------------------------------------------------------------------------

// DispatchHTTPCall sends a request to a gateway upstream; headers must
// hold :method, :path and :authority. cb runs when the response arrives (or
// the call fails: numHeaders 0) with the calling context made current
// again, so it may ContinueRequest or SendLocalResponse.
func DispatchHTTPCall(upstream string, headers []Header, body []byte, trailers []Header,
	timeout time.Duration, cb func(numHeaders, bodySize, numTrailers int)) (uint32, error) {
	h, t := EncodeHeaders(headers), EncodeHeaders(trailers)
	var id uint32
	st := proxyHTTPCall(strPtr(upstream), uint32(len(upstream)), bytesPtr(h), uint32(len(h)),
		bytesPtr(body), uint32(len(body)), bytesPtr(t), uint32(len(t)), uint32(timeout/time.Millisecond), &id)
	if st != 0 {
		return 0, Status(st)
	}
	callbacks[id] = httpCallback{context: current, fn: cb}
	return id, nil
}

// HTTPCallResponseHeaders returns the headers of the response being
// delivered to a DispatchHTTPCall callback.
func HTTPCallResponseHeaders() ([]Header, error) { return Headers(MapHTTPCallResponseHeaders) }

// HTTPCallStatus returns the status code and message of the HTTP call
// whose response is being delivered.
func HTTPCallStatus() (code uint32, msg string, e error) {
	if st := proxyGetStatus(&retAux, &retPtr, &retLen); st != 0 {
		drop()
		return 0, "", Status(st)
	}
	return retAux, takeString(), nil
}

// HTTPCallResponseBody returns the body of that response.
func HTTPCallResponseBody(size int) ([]byte, error) {
	return wholeBuffer(BufferHTTPCallResponseBody, size)
}

// ---- foreign functions ------------------------------------------------------------------------

// CallForeignFunction calls a host function by name (see the gateway's
// documentation for the names it registers).
func CallForeignFunction(name string, args []byte) ([]byte, error) {
	if st := proxyCallForeignFunction(strPtr(name), uint32(len(name)), bytesPtr(args), uint32(len(args)), &retPtr, &retLen); st != 0 {
		drop()
		return nil, Status(st)
	}
	return take(), nil
}
