//go:build wasip1

package sdk

import (
	"runtime"
	"runtime/metrics"
)

var (
	thePlugin Plugin = DefaultPlugin{}
	roots            = map[uint32]RootContext{}
	streams          = map[uint32]HTTPContext{}

	// The HTTP context of the last callback: a request's callbacks come
	// one after another, so most skip the lookup.
	lastID     uint32
	lastStream HTTPContext
	lastRootID uint32
	lastRoot   RootContext

	// slots hold the HTTP contexts of the requests in flight before the
	// streams map does: a VM holds few at once, and a scan of a small
	// array is far cheaper in Wasm than a map insert and delete per
	// request (each map operation runs thousands of guest instructions).
	slots [slotCount]slot

	gcEvery     = 256     // callbacks between heap checks; 0: never collect
	gcThreshold = 1 << 20 // bytes allocated since the last collection that trigger one
	gcCount     int
	gcSpacing   = 256  // callbacks until the next check: gcEvery up to gcEvery*gcMaxStretch
	gcChecked   uint64 // heap bytes allocated (cumulative) at the last check
	gcLast      uint64 // heap bytes allocated (cumulative) at the last collection
	gcSample    = []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
)

// SetPlugin installs the plugin; call it from an init function of the
// main package.
func SetPlugin(p Plugin) { thePlugin = p }

// SetGCInterval sets how many callbacks run between checks of the heap
// (default 256); 0 disables forced collections (the heap then grows until
// the VM is recycled). A check reads the runtime's allocation counter and
// runs runtime.GC once [SetGCThreshold] bytes were allocated since the
// last collection.
//
// While the plugin allocates little (less than a quarter of the threshold
// between two checks) the spacing of checks doubles, up to 16n callbacks,
// and it returns to n at the first check that finds more: a check reads
// the runtime's metrics, which costs as much guest work as several
// requests of a plugin that does not allocate.
func SetGCInterval(n int) { gcEvery, gcSpacing = n, n }

// gcMaxStretch bounds how far checks spread out for a quiet heap.
const gcMaxStretch = 16

// SetGCThreshold sets how many bytes the plugin may allocate between
// forced collections (default 1 MiB). 0 collects at every check, that is
// every [SetGCInterval] callbacks. A collection costs about the same
// whatever the garbage (it marks the live heap: ~0.5 ms for the example),
// so a plugin that allocates little is collected rarely.
func SetGCThreshold(bytes int) { gcThreshold = bytes }

// enter marks the start of a callback on context id and runs the periodic
// collection Go's runtime does not run by itself in reactor mode.
func enter(id uint32) {
	current = id
	if gcEvery > 0 {
		if gcCount++; gcCount >= gcSpacing {
			gcCount = 0
			collectIfDue()
		}
	}
}

func collectIfDue() {
	metrics.Read(gcSample)
	allocated := uint64(0)
	if gcSample[0].Value.Kind() == metrics.KindUint64 {
		allocated = gcSample[0].Value.Uint64()
	}
	since := allocated - gcChecked
	gcChecked = allocated
	if allocated < gcLast || since >= uint64(gcThreshold)/4 || gcThreshold == 0 {
		gcSpacing = gcEvery
	} else if gcSpacing < gcEvery*gcMaxStretch {
		gcSpacing *= 2
	}
	if gcThreshold > 0 && allocated-gcLast < uint64(gcThreshold) && allocated >= gcLast {
		return
	}
	runtime.GC()
	gcLast = allocated
}

const slotCount = 256

type slot struct {
	id uint32 // 0: free (context ids start at 1)
	h  HTTPContext
}

// Slot id%slotCount holds an HTTP context, or the streams map when it is
// taken (or for id 0, which marks a free slot). No loop: in Go's Wasm
// code every backward jump re-enters the function's dispatch, so even a
// 16-slot scan costs more than the map.
//
//go:noinline
func putStream(id uint32, h HTTPContext) {
	sl := &slots[id%slotCount]
	if id != 0 {
		if sl.id == id {
			sl.h = h
			return
		}
		if sl.id == 0 {
			if len(streams) == 0 {
				*sl = slot{id, h}
				return
			}
			if _, ok := streams[id]; !ok {
				*sl = slot{id, h}
				return
			}
		}
	}
	streams[id] = h
}

func lookupStream(id uint32) (HTTPContext, bool) {
	if sl := &slots[id%slotCount]; id != 0 && sl.id == id {
		return sl.h, true
	}
	h, ok := streams[id]
	return h, ok
}

func deleteStream(id uint32) {
	if sl := &slots[id%slotCount]; id != 0 && sl.id == id {
		*sl = slot{}
		return
	}
	delete(streams, id)
}

func onContextCreate(id, parent uint32) {
	enter(id)
	if parent == 0 {
		if r := thePlugin.NewRootContext(id); r != nil {
			roots[id] = r
			if id == lastRootID {
				lastRootID, lastRoot = 0, nil
			}
		}
		return
	}
	if r, ok := root(parent); ok {
		if h := r.NewHTTPContext(id); h != nil {
			putStream(id, h)
			lastID, lastStream = id, h
		}
	}
}

// root returns the root context id; the last one found is remembered
// (a plugin has one per configuration, usually one).
func root(id uint32) (RootContext, bool) {
	if id == lastRootID && lastRoot != nil {
		return lastRoot, true
	}
	r, ok := roots[id]
	if ok {
		lastRootID, lastRoot = id, r
	}
	return r, ok
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

// stream returns the HTTP context id.
func stream(id uint32) (HTTPContext, bool) {
	if id == lastID && lastStream != nil {
		return lastStream, true
	}
	h, ok := lookupStream(id)
	if ok {
		lastID, lastStream = id, h
	}
	return h, ok
}

func onDone(id uint32) bool {
	enter(id)
	if id == lastID && lastStream != nil {
		return true // an HTTP context
	}
	if id != 0 && slots[id%slotCount].id == id {
		return true // an HTTP context
	}
	if r, ok := root(id); ok {
		return r.OnDone()
	}
	return true
}

func onLog(id uint32) {
	enter(id)
	if h, ok := stream(id); ok {
		h.OnLog()
	}
}

func onDelete(id uint32) {
	enter(id)
	if h, ok := stream(id); ok {
		h.OnDelete()
		deleteStream(id)
		lastID, lastStream = 0, nil
		return
	}
	delete(roots, id)
	if id == lastRootID {
		lastRootID, lastRoot = 0, nil
	}
}

// phaseStream starts an HTTP phase callback on context id and returns its
// HTTP context, or nil (the export then answers Continue). Each export
// calls its method directly: in Go's Wasm code a switch over the phase
// or a closure call costs thousands of guest instructions per callback.
func phaseStream(id uint32) HTTPContext {
	enter(id)
	if h, ok := stream(id); ok {
		return h
	}
	return nil
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
