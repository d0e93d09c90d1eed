//go:build !wasip1

package sdk

import "unsafe"

// Host-side stand-ins so the package builds and its pure parts test
// outside Wasm: every host function answers StatusUnimplemented.

var _ unsafe.Pointer

func proxyLog(level uint32, msg unsafe.Pointer, size uint32) uint32 {
	return uint32(StatusUnimplemented)
}

func proxyGetLogLevel(ret *uint32) uint32 { return uint32(StatusUnimplemented) }

func proxyGetCurrentTimeNanoseconds(ret *uint64) uint32 { return uint32(StatusUnimplemented) }

func proxySetTickPeriodMilliseconds(ms uint32) uint32 { return uint32(StatusUnimplemented) }

func proxySetEffectiveContext(id uint32) uint32 { return uint32(StatusUnimplemented) }

func proxyDone() uint32 { return uint32(StatusUnimplemented) }

func proxyGetBufferBytes(typ, start, max uint32, retData, retSize *uint32) uint32 {
	return uint32(StatusUnimplemented)
}

func proxySetBufferBytes(typ, start, size uint32, data unsafe.Pointer, dataSize uint32) uint32 {
	return uint32(StatusUnimplemented)
}

func proxyGetBufferStatus(typ uint32, retSize, retFlags *uint32) uint32 {
	return uint32(StatusUnimplemented)
}

func proxyGetHeaderMapPairs(typ uint32, retData, retSize *uint32) uint32 {
	return uint32(StatusUnimplemented)
}

func proxySetHeaderMapPairs(typ uint32, data unsafe.Pointer, size uint32) uint32 {
	return uint32(StatusUnimplemented)
}

func proxyGetHeaderMapValue(typ uint32, key unsafe.Pointer, keySize uint32, retData, retSize *uint32) uint32 {
	return uint32(StatusUnimplemented)
}

func proxyAddHeaderMapValue(typ uint32, key unsafe.Pointer, keySize uint32, val unsafe.Pointer, valSize uint32) uint32 {
	return uint32(StatusUnimplemented)
}

func proxyReplaceHeaderMapValue(typ uint32, key unsafe.Pointer, keySize uint32, val unsafe.Pointer, valSize uint32) uint32 {
	return uint32(StatusUnimplemented)
}

func proxyRemoveHeaderMapValue(typ uint32, key unsafe.Pointer, keySize uint32) uint32 {
	return uint32(StatusUnimplemented)
}

func proxyContinueStream(typ uint32) uint32 { return uint32(StatusUnimplemented) }

func proxyCloseStream(typ uint32) uint32 { return uint32(StatusUnimplemented) }

func proxyGetStatus(retCode, retData, retSize *uint32) uint32 { return uint32(StatusUnimplemented) }

func proxySendLocalResponse(status uint32, details unsafe.Pointer, detailsSize uint32, body unsafe.Pointer, bodySize uint32, headers unsafe.Pointer, headersSize uint32, grpcStatus uint32) uint32 {
	return uint32(StatusUnimplemented)
}

func proxyHTTPCall(upstream unsafe.Pointer, upstreamSize uint32, headers unsafe.Pointer, headersSize uint32, body unsafe.Pointer, bodySize uint32, trailers unsafe.Pointer, trailersSize uint32, timeoutMS uint32, retID *uint32) uint32 {
	return uint32(StatusUnimplemented)
}

func proxySetSharedData(key unsafe.Pointer, keySize uint32, val unsafe.Pointer, valSize uint32, cas uint32) uint32 {
	return uint32(StatusUnimplemented)
}

func proxyGetSharedData(key unsafe.Pointer, keySize uint32, retData, retSize, retCAS *uint32) uint32 {
	return uint32(StatusUnimplemented)
}

func proxyDefineMetric(typ uint32, name unsafe.Pointer, nameSize uint32, retID *uint32) uint32 {
	return uint32(StatusUnimplemented)
}

func proxyIncrementMetric(id uint32, delta int64) uint32 { return uint32(StatusUnimplemented) }

func proxyRecordMetric(id uint32, value uint64) uint32 { return uint32(StatusUnimplemented) }

func proxyGetMetric(id uint32, ret *uint64) uint32 { return uint32(StatusUnimplemented) }

func proxyGetProperty(path unsafe.Pointer, pathSize uint32, retData, retSize *uint32) uint32 {
	return uint32(StatusUnimplemented)
}

func proxySetProperty(path unsafe.Pointer, pathSize uint32, val unsafe.Pointer, valSize uint32) uint32 {
	return uint32(StatusUnimplemented)
}

func proxyCallForeignFunction(name unsafe.Pointer, nameSize uint32, args unsafe.Pointer, argsSize uint32, retData, retSize *uint32) uint32 {
	return uint32(StatusUnimplemented)
}
