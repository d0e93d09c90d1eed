package sdk

import "unsafe"

// The host returns data by calling proxy_on_memory_allocate during a host
// call and writing the block's address into a return slot. Blocks are Go
// byte slices kept in pending until the call returns, so the collector
// cannot free them in between; take hands the matching one to the caller
// and forgets the rest.
var (
	pending        [][]byte
	retPtr, retLen uint32
	retAux         uint32
)

// take returns the block the host wrote at retPtr/retLen and clears
// pending. It returns nil for an empty or unknown block.
func take() []byte {
	var out []byte
	for i, b := range pending {
		if uint32(uintptr(unsafe.Pointer(&b[0]))) == retPtr && int(retLen) <= len(b) {
			out = b[:retLen:retLen]
		}
		pending[i] = nil
	}
	pending = pending[:0]
	return out
}

// drop forgets blocks of a host call whose status said failure.
func drop() {
	for i := range pending {
		pending[i] = nil
	}
	pending = pending[:0]
}

func bytesPtr(b []byte) unsafe.Pointer {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Pointer(&b[0])
}

func strPtr(s string) unsafe.Pointer {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Pointer(unsafe.StringData(s))
}
