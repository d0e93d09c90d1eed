package wasmhost

import (
	"encoding/binary"
	"errors"

	"github.com/wasmgate/wasmgate/gateway/chain"
)

// proxy-wasm ABI v0.2.1 enumerations (spec "Types").

type status = uint32

const (
	statusOK                   status = 0
	statusNotFound             status = 1
	statusBadArgument          status = 2
	statusSerializationFailure status = 3
	statusParseFailure         status = 4
	statusInvalidMemoryAccess  status = 6
	statusEmpty                status = 7
	statusCASMismatch          status = 8
	statusInternalFailure      status = 10
	statusUnimplemented        status = 12
)

// proxy_action_t
const (
	actionContinue = 0
	actionPause    = 1
)

// proxy_buffer_type_t
const (
	bufferRequestBody      = 0
	bufferResponseBody     = 1
	bufferDownstreamData   = 2
	bufferUpstreamData     = 3
	bufferHTTPCallResponse = 4
	bufferGRPCMessage      = 5
	bufferVMConfiguration  = 6
	bufferPluginConfig     = 7
	bufferForeignArgs      = 8
)

// proxy_map_type_t
const (
	mapRequestHeaders      = 0
	mapRequestTrailers     = 1
	mapResponseHeaders     = 2
	mapResponseTrailers    = 3
	mapGRPCInitialMetadata = 4
	mapGRPCTrailing        = 5
	mapHTTPCallHeaders     = 6
	mapHTTPCallTrailers    = 7
)

// proxy_stream_type_t
const (
	streamHTTPRequest  = 0
	streamHTTPResponse = 1
	streamDownstream   = 2
	streamUpstream     = 3
)

// proxy_metric_type_t
const (
	metricCounter   = 0
	metricGauge     = 1
	metricHistogram = 2
)

// proxy_log_level_t
const (
	logTrace    = 0
	logDebug    = 1
	logInfo     = 2
	logWarn     = 3
	logError    = 4
	logCritical = 5
)

// Limits on what a guest can make the host hold through the ABI, beside
// the configurable plugins[].limits (header maps, shared data, queue
// items, HTTP calls in flight): each is far above what a sane filter needs
// and low enough that a hostile one cannot grow host memory much.
const (
	maxBufferBytes    = 64 << 20 // a body buffer a guest may build
	maxQueues         = 256      // per vm_id
	maxMetricsPerVM   = 1000     // per plugin
	maxUserProperties = 64       // proxy_set_property keys per context
	maxPropertyBytes  = 64 << 10
)

// Names of the configurable limits: the limit label of
// wasmgate_plugin_limit_refusals_total and, with "limits.", the config key.
const (
	limitHeaderMapBytes  = "header_map_bytes"
	limitHeaderMapFields = "header_map_fields"
	limitSharedDataBytes = "shared_data_bytes"
	limitSharedDataKeys  = "shared_data_keys"
	limitQueueItems      = "queue_items"
	limitHTTPCalls       = "http_calls"
)

var errMalformedMap = errors.New("malformed serialized map")

// serializedSize is the size of h in the spec's serialized map form.
func serializedSize(h chain.Headers) int {
	n := 4
	for _, f := range h {
		n += 8 + len(f.Name) + 1 + len(f.Value) + 1
	}
	return n
}

// appendSerialized appends h in the spec's form: a count, the
// (key length, value length) pairs, then each key and value followed by NUL.
func appendSerialized(dst []byte, h chain.Headers) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(h)))
	for _, f := range h {
		dst = binary.LittleEndian.AppendUint32(dst, uint32(len(f.Name)))
		dst = binary.LittleEndian.AppendUint32(dst, uint32(len(f.Value)))
	}
	for _, f := range h {
		dst = append(dst, f.Name...)
		dst = append(dst, 0)
		dst = append(dst, f.Value...)
		dst = append(dst, 0)
	}
	return dst
}

// errTooManyFields is a serialized map over the header_map_fields limit.
var errTooManyFields = errors.New("serialized map over limits.header_map_fields")

// parseSerialized decodes the spec's map form, of at most maxFields pairs.
// An empty input or a single NUL byte is the empty map. Names are
// lower-cased (HTTP/2 style), as the chain contract requires.
func parseSerialized(b []byte, maxFields int) (chain.Headers, error) {
	if len(b) == 0 || (len(b) == 1 && b[0] == 0) {
		return nil, nil
	}
	if len(b) < 4 {
		return nil, errMalformedMap
	}
	n := int(binary.LittleEndian.Uint32(b))
	if 4+8*n > len(b) || n < 0 {
		return nil, errMalformedMap
	}
	if n > maxFields {
		return nil, errTooManyFields
	}
	sizes := b[4 : 4+8*n]
	data := b[4+8*n:]
	h := make(chain.Headers, 0, n)
	for i := 0; i < n; i++ {
		kl := int(binary.LittleEndian.Uint32(sizes[8*i:]))
		vl := int(binary.LittleEndian.Uint32(sizes[8*i+4:]))
		if kl < 0 || vl < 0 || kl+1+vl+1 > len(data) {
			return nil, errMalformedMap
		}
		k := string(data[:kl])
		data = data[kl+1:]
		v := string(data[:vl])
		data = data[vl+1:]
		h = append(h, chain.Header{Name: lowerASCII(k), Value: v})
	}
	return h, nil
}

func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; c >= 'A' && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
