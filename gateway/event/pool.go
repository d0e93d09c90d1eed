package event

import (
	"sync"
	"sync/atomic"
)

// DefaultPoolLimit is how many released events the pool keeps unless
// [SetPoolLimit] says otherwise (storage.event_pool). At the recorder's
// defaults (queue_size 10,000; exchange_window, flush_interval and
// sync_interval 10ms) about 1,500–2,000 events are between New and Release
// at 40,000 requests/s, so this covers a burst of twice that. An event
// kept holds at least its initial storage (1,408 bytes: 4096 events are
// 5.5 MiB) and at most what Release still takes back (16 KiB of bytes and
// 128 header fields besides, about 22 KiB: 88 MiB for 4096 such events).
const DefaultPoolLimit = 4096

// The pool is a bounded stack of released events behind one mutex. A
// sync.Pool drops what it holds within two garbage collections, and under
// load the collector runs every few tens of milliseconds: the recorder then
// allocated most of its events afresh, each a 1.4 KiB object full of
// pointers for the collector to scan. This free list keeps its events
// until they are taken. Nothing overflows into a sync.Pool: an event that
// finds the list full is left to the collector and counted, so the limit
// is the bound. On two cores one uncontended lock is about as cheap as
// sync.Pool's per-P lists (BenchmarkNewRelease).
var free = struct {
	mu     sync.Mutex
	events []*Event
	limit  int
}{limit: DefaultPoolLimit}

// Pool statistics, counted outside the lock.
var (
	allocatedEvents atomic.Uint64
	discardedEvents atomic.Uint64
)

// SetPoolLimit sets how many released events the pool keeps for reuse: 0
// keeps none (every New allocates), a negative n restores
// DefaultPoolLimit. Events the pool holds past a lower limit are dropped
// and counted as discarded. Meant to be called once at start, before
// events flow; it is safe at any time.
func SetPoolLimit(n int) {
	if n < 0 {
		n = DefaultPoolLimit
	}
	free.mu.Lock()
	defer free.mu.Unlock()
	free.limit = n
	if k := len(free.events) - n; k > 0 {
		clear(free.events[n:])
		free.events = free.events[:n]
		discardedEvents.Add(uint64(k))
	}
	if cap(free.events) > 2*n {
		free.events = append([]*Event(nil), free.events...)
	}
}

// PoolLimit returns how many released events the pool keeps at most.
func PoolLimit() int {
	free.mu.Lock()
	defer free.mu.Unlock()
	return free.limit
}

// PoolStats describes the pool of events behind New and Release
// (process-wide: every producer shares it).
type PoolStats struct {
	// Free is how many released events wait for reuse now.
	Free int
	// Allocated counts events New allocated because none was free.
	Allocated uint64
	// Discarded counts released events the pool did not keep: it was
	// full, or the event's storage had grown past what is reused.
	Discarded uint64
}

// ReadPoolStats returns the pool's statistics (for metrics).
func ReadPoolStats() PoolStats {
	free.mu.Lock()
	n := len(free.events)
	free.mu.Unlock()
	return PoolStats{
		Free:      n,
		Allocated: allocatedEvents.Load(),
		Discarded: discardedEvents.Load(),
	}
}

// getEvent takes an event from the free list, or allocates one.
func getEvent() *Event {
	free.mu.Lock()
	if n := len(free.events) - 1; n >= 0 {
		e := free.events[n]
		free.events[n] = nil
		free.events = free.events[:n]
		free.mu.Unlock()
		return e
	}
	free.mu.Unlock()
	allocatedEvents.Add(1)
	return newPooledEvent()
}

// newPooledEvent allocates an event with its initial storage: one
// allocation with room for a typical event's headers and bytes (growing
// a new event's storage append by append cost a dozen).
func newPooledEvent() *Event {
	p := new(pooledEvent)
	p.Headers, p.own = p.headers[:0], p.bytes[:0]
	return &p.Event
}

// putEvent returns a reset event to the free list; false if it is full.
func putEvent(e *Event) bool {
	free.mu.Lock()
	if len(free.events) >= free.limit {
		free.mu.Unlock()
		discardedEvents.Add(1)
		return false
	}
	free.events = append(free.events, e)
	free.mu.Unlock()
	return true
}

// pooledEvent is an Event with its initial storage.
type pooledEvent struct {
	Event
	headers [16]Header
	bytes   [512]byte
}
