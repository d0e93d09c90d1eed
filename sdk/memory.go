package sdk

import "unsafe"

// The host returns data by calling proxy_on_memory_allocate during a host
// call and writing the block's address into a return slot. Blocks are Go
// byte slices kept in pending until the call returns, so the collector
// cannot free them in between; take hands the matching one to the caller
// and forgets the rest. The first small block of a host call is the
// reused buffer small instead: a header value costs no allocation in the
// allocator, only the string the caller makes of it.
var (
	pending        [][]byte
	retPtr, retLen uint32
	retAux         uint32

	small     [smallBlock]byte
	smallUsed bool
)

const smallBlock = 256

// takeSmall returns the block at retPtr when it is small (valid until the
// next host call) and ok false otherwise.
func takeSmall() (b []byte, ok bool) {
	if !smallUsed || retPtr != uint32(uintptr(unsafe.Pointer(&small[0]))) || retLen > smallBlock {
		return nil, false
	}
	return small[:retLen], true
}

// take returns the block the host wrote at retPtr/retLen and clears
// pending. It returns nil for an empty or unknown block.
func take() []byte {
	var out []byte
	if b, ok := takeSmall(); ok && len(b) > 0 {
		out = make([]byte, len(b)) // not append: no growslice
		copy(out, b)
	}
	for i, b := range pending {
		if uint32(uintptr(unsafe.Pointer(&b[0]))) == retPtr && int(retLen) <= len(b) {
			out = b[:retLen:retLen]
		}
		pending[i] = nil
	}
	pending = pending[:0]
	smallUsed = false
	return out
}

// takeString is string(take()) with one copy fewer for a small block.
// A small block equal to a recently returned string returns that string:
// header values repeat from request to request (content types, keys), and
// a Go allocation runs thousands of guest instructions.
func takeString() string {
	if b, ok := takeSmall(); ok {
		s := internString(b)
		drop()
		return s
	}
	return string(take())
}

// recent holds the last string takeString made of a small block of each
// length modulo 8 (no loop: a backward jump is dear in Go's Wasm code).
var recent [8]string

func internString(b []byte) string {
	r := &recent[len(b)%len(recent)]
	if string(b) == *r {
		return *r
	}
	s := string(b)
	*r = s
	return s
}

// drop forgets blocks of a host call whose status said failure.
func drop() {
	for i := range pending {
		pending[i] = nil
	}
	pending = pending[:0]
	smallUsed = false
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
