//go:build wasip1

package sdk

import "unsafe"

var zeroBlock [1]byte

// allocate is the body of proxy_on_memory_allocate: a Go slice kept in
// pending until the host call that asked for it returns (see take).
func allocate(size uint32) uint32 {
	if size == 0 {
		return uint32(uintptr(unsafe.Pointer(&zeroBlock[0])))
	}
	b, ok := allocSmall(size)
	if !ok {
		b = make([]byte, size)
		pending = append(pending, b)
	}
	return uint32(uintptr(unsafe.Pointer(&b[0])))
}

// allocSmall returns small for a block that fits, once per host call.
func allocSmall(size uint32) ([]byte, bool) {
	if size > smallBlock || smallUsed {
		return nil, false
	}
	smallUsed = true
	return small[:size], true
}

// Callbacks of proxy-wasm v0.2.1 exported to the host. Those the SDK has
// no interface for (TCP, gRPC, queues, foreign functions) are exported as
// no-ops so that a host calling them finds them.

//go:wasmexport proxy_abi_version_0_2_1
func proxyABIVersion() {}

//go:wasmexport proxy_on_memory_allocate
func proxyOnMemoryAllocate(size uint32) uint32 { return allocate(size) }

//go:wasmexport proxy_on_context_create
func proxyOnContextCreate(id, parent uint32) { onContextCreate(id, parent) }

//go:wasmexport proxy_on_vm_start
func proxyOnVMStart(id, size uint32) bool { return onVMStart(id, size) }

//go:wasmexport proxy_on_configure
func proxyOnConfigure(id, size uint32) bool { return onConfigure(id, size) }

//go:wasmexport proxy_on_tick
func proxyOnTick(id uint32) { onTick(id) }

//go:wasmexport proxy_on_done
func proxyOnDone(id uint32) bool { return onDone(id) }

//go:wasmexport proxy_on_log
func proxyOnLog(id uint32) { onLog(id) }

//go:wasmexport proxy_on_delete
func proxyOnDelete(id uint32) { onDelete(id) }

//go:wasmexport proxy_on_request_headers
func proxyOnRequestHeaders(id, n uint32, eos bool) uint32 {
	if h := phaseStream(id); h != nil {
		return uint32(h.OnRequestHeaders(int(n), eos))
	}
	return uint32(Continue)
}

//go:wasmexport proxy_on_request_body
func proxyOnRequestBody(id, size uint32, eos bool) uint32 {
	if h := phaseStream(id); h != nil {
		return uint32(h.OnRequestBody(int(size), eos))
	}
	return uint32(Continue)
}

//go:wasmexport proxy_on_request_trailers
func proxyOnRequestTrailers(id, n uint32) uint32 {
	if h := phaseStream(id); h != nil {
		return uint32(h.OnRequestTrailers(int(n)))
	}
	return uint32(Continue)
}

//go:wasmexport proxy_on_response_headers
func proxyOnResponseHeaders(id, n uint32, eos bool) uint32 {
	if h := phaseStream(id); h != nil {
		return uint32(h.OnResponseHeaders(int(n), eos))
	}
	return uint32(Continue)
}

//go:wasmexport proxy_on_response_body
func proxyOnResponseBody(id, size uint32, eos bool) uint32 {
	if h := phaseStream(id); h != nil {
		return uint32(h.OnResponseBody(int(size), eos))
	}
	return uint32(Continue)
}

//go:wasmexport proxy_on_response_trailers
func proxyOnResponseTrailers(id, n uint32) uint32 {
	if h := phaseStream(id); h != nil {
		return uint32(h.OnResponseTrailers(int(n)))
	}
	return uint32(Continue)
}

//go:wasmexport proxy_on_http_call_response
func proxyOnHTTPCallResponse(root, callID, numHeaders, bodySize, numTrailers uint32) {
	onHTTPCallResponse(root, callID, numHeaders, bodySize, numTrailers)
}

//go:wasmexport proxy_on_queue_ready
func proxyOnQueueReady(root, queueID uint32) {}

//go:wasmexport proxy_on_foreign_function
func proxyOnForeignFunction(root, functionID, size uint32) {}

//go:wasmexport proxy_on_new_connection
func proxyOnNewConnection(id uint32) uint32 { return uint32(Continue) }

//go:wasmexport proxy_on_downstream_data
func proxyOnDownstreamData(id, size uint32, eos bool) uint32 { return uint32(Continue) }

//go:wasmexport proxy_on_upstream_data
func proxyOnUpstreamData(id, size uint32, eos bool) uint32 { return uint32(Continue) }

//go:wasmexport proxy_on_downstream_connection_close
func proxyOnDownstreamConnectionClose(id, peer uint32) {}

//go:wasmexport proxy_on_upstream_connection_close
func proxyOnUpstreamConnectionClose(id, peer uint32) {}

//go:wasmexport proxy_on_grpc_receive_initial_metadata
func proxyOnGRPCReceiveInitialMetadata(root, callID, n uint32) {}

//go:wasmexport proxy_on_grpc_receive
func proxyOnGRPCReceive(root, callID, size uint32) {}

//go:wasmexport proxy_on_grpc_receive_trailing_metadata
func proxyOnGRPCReceiveTrailingMetadata(root, callID, n uint32) {}

//go:wasmexport proxy_on_grpc_close
func proxyOnGRPCClose(root, callID, status uint32) {}
