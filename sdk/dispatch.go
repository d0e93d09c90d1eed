//go:build wasip1

package sdk

import "runtime"

var (
	thePlugin Plugin = DefaultPlugin{}
	gcEvery          = 1000
	roots            = map[uint32]RootContext{}
	streams          = map[uint32]HTTPContext{}
	gcCount   int
)

// SetPlugin installs the plugin; call it from an init function of the
// main package.
func SetPlugin(p Plugin) { thePlugin = p }

// SetGCInterval sets how many callbacks run between forced collections
// (0 disables them; the heap then grows until the VM is recycled). The
// default of 1000 keeps linear memory flat (see gc_test.go and
// examples/README.md for the measurements).
func SetGCInterval(n int) { gcEvery = n }

// enter marks the start of a callback on context id and runs the periodic
// collection Go's runtime does not run by itself in reactor mode.
func enter(id uint32) {
	current = id
	if gcEvery > 0 {
		if gcCount++; gcCount >= gcEvery {
			gcCount = 0
			runtime.GC()
		}
	}
}

func onContextCreate(id, parent uint32) {
	enter(id)
	if parent == 0 {
		if r := thePlugin.NewRootContext(id); r != nil {
			roots[id] = r
		}
		return
	}
	if r, ok := roots[parent]; ok {
		if h := r.NewHTTPContext(id); h != nil {
			streams[id] = h
		}
	}
}

func onVMStart(id, size uint32) bool {
	enter(id)
	return thePlugin.OnVMStart(int(size))
}

func onConfigure(id, size uint32) bool {
	enter(id)
	r, ok := roots[id]
	if !ok {
		return false
	}
	return r.OnConfigure(int(size))
}

func onTick(id uint32) {
	enter(id)
	if r, ok := roots[id]; ok {
		r.OnTick()
	}
}

func onDone(id uint32) bool {
	enter(id)
	if r, ok := roots[id]; ok {
		return r.OnDone()
	}
	return true
}

func onLog(id uint32) {
	enter(id)
	if h, ok := streams[id]; ok {
		h.OnLog()
	}
}

func onDelete(id uint32) {
	enter(id)
	if h, ok := streams[id]; ok {
		h.OnDelete()
		delete(streams, id)
		return
	}
	delete(roots, id)
}

func httpPhase(id uint32, f func(HTTPContext) Action) uint32 {
	enter(id)
	h, ok := streams[id]
	if !ok {
		return uint32(Continue)
	}
	return uint32(f(h))
}

func onHTTPCallResponse(root, callID, numHeaders, bodySize, numTrailers uint32) {
	enter(root)
	cb, ok := callbacks[callID]
	if !ok {
		return
	}
	delete(callbacks, callID)
	if cb.context != root {
		if proxySetEffectiveContext(cb.context) != 0 {
			return // the request is gone
		}
		current = cb.context
	}
	cb.fn(int(numHeaders), int(bodySize), int(numTrailers))
}
